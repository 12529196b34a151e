"""What the controller serves to install and update agents: the signed release
(built from the sources, or an operator's folder of wheels), one wheel's path,
and the install script templated with the controller's URL and release key.

The script holds no secret: the admin gives the enrollment token to it through
``$env:REPROFARM_TOKEN`` on the lab machine, never through a URL. So it is served
without a token, and nothing here ever writes a token into it.

The release is made once per version (``Releases``): agents ask for it after
every run, and making it hashes every source file and wheel and signs the
result. Each request only stats the sources (or the operator's folder); a
change there makes the next request hash, build if needed, and sign again.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from reprofarm_db.errors import Invalid, NotFound
from reprofarm_db.settings import ControllerSettings
from reprofarm_protocol.release import AgentRelease

from reprofarm_api.install import signing, wheels
from reprofarm_api.install.wheels import ReleaseUnavailableError

SCRIPT_NAME = "install.ps1"
API_URL_PLACEHOLDER = "__REPROFARM_API_URL__"
"""Where the template (agent-windows/install.ps1) takes the controller's URL,
inside a single-quoted PowerShell string."""
RELEASE_KEY_PLACEHOLDER = "__REPROFARM_RELEASE_KEY__"
"""Where it takes the release public key (base64), written into agent.env."""

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
    """The folder of the current release's wheels: the operator's, else the
    sources' build (made now if it is not there yet)."""
    if settings.agent_wheels_dir is not None:
        return settings.agent_wheels_dir.resolve()
    return wheels.build(_source_root(settings), settings.data_dir / "agent-wheels")


@dataclass(frozen=True)
class ServedRelease:
    folder: Path
    release: AgentRelease  # signed


class Releases:
    """The signed release of one api process, made once per version and kept
    (``app.state.releases``). Thread-safe: the first request after a change
    makes it under a lock while the others wait for it, so it is built once.
    ``made`` counts the releases made (read, hashed and signed)."""

    def __init__(self, settings: ControllerSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._key: Ed25519PrivateKey | None = None
        self._stamp: tuple[tuple[str, int, int], ...] | None = None
        self._served: ServedRelease | None = None
        self.made = 0

    def key(self) -> Ed25519PrivateKey:
        with self._lock:
            if self._key is None:
                self._key = signing.load_or_create(self._settings)
            return self._key

    def public_key(self) -> str:
        return signing.public_key_text(self.key())

    def current(self) -> ServedRelease:
        """The release agents install now. Raises ReleaseUnavailableError."""
        settings = self._settings
        operator_folder = settings.agent_wheels_dir
        try:
            if operator_folder is not None:
                stamp = wheels.folder_stamp(operator_folder)
            else:
                stamp = wheels.sources_stamp(_source_root(settings))
        except OSError as exc:  # a file went away between the walk and its stat
            raise ReleaseUnavailableError(f"agent release: {exc}") from None
        key = self.key()
        with self._lock:
            if self._served is not None and stamp == self._stamp:
                return self._served
            folder = release_folder(settings)
            if operator_folder is not None or self._served is None or self._served.folder != folder:
                # Another version (the sources' folder is named by their version), or an
                # operator's folder whose files changed: read, hash and sign it.
                release = signing.sign(wheels.read_release(folder), key)
                self._served = ServedRelease(folder, release)
                self.made += 1
            self._stamp = stamp
            return self._served

    def wheel_path(self, *, filename: str) -> Path:
        """A file of the current release; NotFound for any other name (an old
        release's wheel included: only the current one is served)."""
        served = self.current()
        if filename not in {f.filename for f in served.release.files}:
            raise NotFound(f"wheel {filename!r} is not part of release {served.release.version}")
        return served.folder / filename


class PublicUrlUnsetError(Exception):
    """No REPROFARM_PUBLIC_URL, and the request's Host is not trusted: the script
    is not served (the message says which setting to set)."""


def trusted_host(host: str, settings: ControllerSettings) -> bool:
    """Loopback (the admin on the controller itself, or a tunnel to it) or a name
    the operator listed in REPROFARM_TRUSTED_HOSTS. The Host header is the
    client's to choose: anything else could be a name an attacker controls."""
    host = host.lower().strip("[]")
    if host == "localhost" or host in {h.lower() for h in settings.trusted_hosts}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def install_script(settings: ControllerSettings, *, request_url: str, release_key: str) -> str:
    """agent-windows/install.ps1 (or the copy in the operator's wheels folder) with
    the controller's URL and the public key agents will check releases with.

    The URL is REPROFARM_PUBLIC_URL; without it, the URL this request came to, but
    only for a trusted Host (``trusted_host``): the script sends each machine's
    enrollment token to that URL, so a forged Host must not choose it."""
    if not settings.public_url:
        host = urlsplit(request_url).hostname or ""
        if not trusted_host(host, settings):
            raise PublicUrlUnsetError(
                f"install.ps1 is not served to Host {host[:100]!r}: set REPROFARM_PUBLIC_URL to "
                "the URL lab machines reach this controller at (https://...), or add the host "
                "to REPROFARM_TRUSTED_HOSTS"
            )
    url = (settings.public_url or request_url).rstrip("/")
    if not _URL.match(url):
        raise Invalid(
            "Host",
            f"{url[:100]!r} is not a URL a lab machine can be given; set REPROFARM_PUBLIC_URL",
        )
    template = _script_template(settings)
    for placeholder in (API_URL_PLACEHOLDER, RELEASE_KEY_PLACEHOLDER):
        if template.count(placeholder) != 1:
            raise ReleaseUnavailableError(
                f"{SCRIPT_NAME}: the template must hold {placeholder} exactly once"
            )
    return template.replace(API_URL_PLACEHOLDER, url).replace(RELEASE_KEY_PLACEHOLDER, release_key)


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
