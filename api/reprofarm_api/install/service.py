"""What the controller serves to install and update agents: the release (built
from the sources, or an operator's folder of wheels), one wheel's path, and the
install script templated with the controller's URL.

The script holds no secret: the admin gives the enrollment token to it through
``$env:REPROFARM_TOKEN`` on the lab machine, never through a URL. So it is served
without a token, and nothing here ever writes a token into it.
"""

from __future__ import annotations

import re
from pathlib import Path

from reprofarm_db.errors import Invalid, NotFound
from reprofarm_db.settings import ControllerSettings
from reprofarm_protocol.release import AgentRelease

from reprofarm_api.install import wheels
from reprofarm_api.install.wheels import ReleaseUnavailableError

SCRIPT_NAME = "install.ps1"
API_URL_PLACEHOLDER = "__REPROFARM_API_URL__"
"""Where the template (agent-windows/install.ps1) takes the controller's URL,
inside a single-quoted PowerShell string."""

_URL = re.compile(
    r"^https?://(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~/-]*)?$",
    re.ASCII,
)


def _source_root(settings: ControllerSettings) -> Path:
    """The repository holding protocol/ and agent-windows/: the setting, else the
    workspace this api runs from (an editable install, as `uv sync` makes it)."""
    if settings.agent_source_dir is not None:
        return settings.agent_source_dir
    return Path(__file__).resolve().parents[3]


def release_folder(settings: ControllerSettings) -> Path:
    if settings.agent_wheels_dir is not None:
        return settings.agent_wheels_dir
    return wheels.build(_source_root(settings), settings.data_dir / "agent-wheels")


def get(settings: ControllerSettings) -> AgentRelease:
    """The release agents install now. Raises ReleaseUnavailableError."""
    return wheels.read_release(release_folder(settings))


def wheel_path(settings: ControllerSettings, *, filename: str) -> Path:
    """A file of the current release; NotFound for any other name (an old
    release's wheel included: only the current one is served)."""
    folder = release_folder(settings)
    release = wheels.read_release(folder)
    if filename not in {f.filename for f in release.files}:
        raise NotFound(f"wheel {filename!r} is not part of release {release.version}")
    return folder / filename


def install_script(settings: ControllerSettings, *, request_url: str) -> str:
    """agent-windows/install.ps1 (or the copy in the operator's wheels folder) with
    the controller's URL: REPROFARM_PUBLIC_URL, else the URL this request came to."""
    url = (settings.public_url or request_url).rstrip("/")
    if not _URL.match(url):
        raise Invalid(
            "Host",
            f"{url[:100]!r} is not a URL a lab machine can be given; set REPROFARM_PUBLIC_URL",
        )
    template = _script_template(settings)
    if template.count(API_URL_PLACEHOLDER) != 1:
        raise ReleaseUnavailableError(
            f"{SCRIPT_NAME}: the template must hold {API_URL_PLACEHOLDER} exactly once"
        )
    return template.replace(API_URL_PLACEHOLDER, url)


def _script_template(settings: ControllerSettings) -> str:
    candidates = [_source_root(settings) / "agent-windows" / SCRIPT_NAME]
    if settings.agent_wheels_dir is not None:
        candidates.insert(0, settings.agent_wheels_dir / SCRIPT_NAME)
    for path in candidates:
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise ReleaseUnavailableError(
        f"{SCRIPT_NAME} not found (looked in {', '.join(str(p) for p in candidates)})"
    )
