"""The folder of a managed install, as install.ps1 creates it and the self-updater
and the supervisor keep it. Everything that must survive a restart or a reboot
is here, in small files written atomically (a temporary file, then a rename)::

    <root>/                 %ProgramData%\\reprofarm on Windows
      agent.env             the config (REPROFARM_API, REPROFARM_TOKEN, ...), KEY=VALUE lines;
                            readable by SYSTEM and Administrators only (it holds the token)
      venvs/<version>/      one virtual environment per installed version, side by side;
                            ``.ready`` inside marks one that passed its start check,
                            ``.registered`` one whose agent the api accepted
      current               the version the supervisor starts (one line)
      known-good            the last version that stayed up: the boot wrapper (run-agent.ps1)
                            runs the supervisor from it, so a broken new version can never
                            keep the supervisor itself from starting
      update.json           the switch on trial (new version, previous one, when) and the
                            versions refused (failed their start check or crashed on trial)
      downloads/<version>/  the wheels, as downloaded and verified
      tools/                a virtual environment holding uv, which makes the others
      work/ cache/ logs/    the agent's spool and identity, toolchains and builds, logs

Paths of executables differ by OS (``Scripts\\x.exe`` or ``bin/x``); that is the
only OS-specific part, in ``_script``.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from pathlib import Path

from pydantic import BaseModel, Field
from reprofarm_protocol.release import VERSION_PATTERN

_VERSION = re.compile(VERSION_PATTERN, re.ASCII)
_READY = ".ready"
_REGISTERED = ".registered"


class Trial(BaseModel):
    version: str
    previous: str
    switched_at: float = Field(description="wall clock (time.time()) of the switch")


class UpdateState(BaseModel):
    trial: Trial | None = None
    refused: dict[str, str] = Field(
        default_factory=dict, description="version -> why it is never installed again"
    )


def _script(venv: Path, name: str) -> Path:
    """An executable a virtual environment installed (an entry point, python)."""
    if os.name == "nt":
        return venv / "Scripts" / f"{name}.exe"
    return venv / "bin" / name


def check_version(version: str) -> str:
    """A version is a folder name here: refuse anything but a wheel's version."""
    if not _VERSION.match(version):
        raise ValueError(f"version: {version[:80]!r} is not a release version")
    return version


def write_atomically(path: Path, text: str) -> None:
    """Readers see the old or the new content, never a part (a rename replaces
    a file atomically on Windows and POSIX alike)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


class InstallLayout:
    def __init__(self, root: Path) -> None:
        self.root = root

    # -- places ------------------------------------------------------------

    @property
    def venvs(self) -> Path:
        return self.root / "venvs"

    def venv(self, version: str) -> Path:
        return self.venvs / check_version(version)

    def agent_exe(self, version: str) -> Path:
        return _script(self.venv(version), "reprofarm-agent")

    def python(self, version: str) -> Path:
        return _script(self.venv(version), "python")

    def downloads(self, version: str) -> Path:
        return self.root / "downloads" / check_version(version)

    @property
    def tools_uv(self) -> Path:
        return _script(self.root / "tools", "uv")

    @property
    def config(self) -> Path:
        return self.root / "agent.env"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def state_path(self) -> Path:
        return self.root / "update.json"

    # -- installed versions ------------------------------------------------

    def is_ready(self, version: str) -> bool:
        return (self.venv(version) / _READY).is_file()

    def mark_ready(self, version: str) -> None:
        (self.venv(version) / _READY).write_text(version, encoding="utf-8")

    def mark_registered(self, version: str) -> None:
        """The agent of ``version`` registered with the api: it works (the
        supervisor confirms a version on trial only after this)."""
        (self.venv(version) / _REGISTERED).write_text(version, encoding="utf-8")

    def has_registered(self, version: str) -> bool:
        return (self.venv(version) / _REGISTERED).is_file()

    def installed(self) -> list[str]:
        if not self.venvs.is_dir():
            return []
        return sorted(p.name for p in self.venvs.iterdir() if _VERSION.match(p.name))

    def runs_from(self, version: str) -> bool:
        """This interpreter is the one of ``venvs/<version>``: the agent was started
        from this managed install, not from a checkout or another environment."""
        try:
            return Path(sys.prefix).resolve() == self.venv(version).resolve()
        except ValueError:
            return False

    # -- pointers ----------------------------------------------------------

    def read_pointer(self, name: str) -> str | None:
        """``current`` or ``known-good``: a version, or None when unset."""
        path = self.root / name
        if not path.is_file():
            return None
        # utf-8-sig: PowerShell 5.1 may write a byte-order mark.
        return check_version(path.read_text(encoding="utf-8-sig").strip())

    def write_pointer(self, name: str, version: str) -> None:
        write_atomically(self.root / name, check_version(version) + "\n")

    # -- update state ------------------------------------------------------

    def load_state(self) -> UpdateState:
        if not self.state_path.is_file():
            return UpdateState()
        return UpdateState.model_validate_json(self.state_path.read_text(encoding="utf-8"))

    def save_state(self, state: UpdateState) -> None:
        write_atomically(self.state_path, state.model_dump_json(indent=2))

    # -- config ------------------------------------------------------------

    def config_env(self) -> dict[str, str]:
        """agent.env as a mapping: ``KEY=VALUE`` lines; blank lines and ``#``
        comments are skipped; the value is everything after the first ``=``."""
        if not self.config.is_file():
            return {}
        env: dict[str, str] = {}
        for raw in self.config.read_text(encoding="utf-8-sig").splitlines():
            line = raw.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
        return env
