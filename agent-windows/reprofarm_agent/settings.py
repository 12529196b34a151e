"""The agent's configuration: one pydantic-settings class, read once at the edge
(the CLI) and passed down. Every field can be set as ``REPROFARM_<NAME>``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "reprofarm"


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REPROFARM_", extra="ignore")

    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="Go toolchains and content-addressed hangtest builds",
    )
    procdump_path: Path | None = Field(
        None, description="Windows: take minidumps with ProcDump instead of MiniDumpWriteDump"
    )
    process_dumps: int = Field(2, ge=0, le=5, description="process dumps per hang")
    dump_interval_s: float = Field(
        3.0, ge=0, description="seconds between the process dumps, to show what did not move"
    )
    kill_timeout_s: float = Field(10.0, gt=0, description="how long a killed tree may take to go")
    api: str = Field("", description="the controller's URL, for `reprofarm agent`")
    token: str = Field("", description="enrollment token (role agent) for `reprofarm agent`")
    agent_name: str = Field("", description="default: the host name")
    pools: list[str] = Field(default_factory=list, description="pools this agent serves")
    work_dir: Path = Field(
        default_factory=lambda: _default_cache_dir() / "agent",
        description="the agent's state folder (state.py): identity, runs in flight, run "
        "folders and spooled results, what must survive a crash",
    )
    reboot_when_needed: bool = Field(
        False,
        description="reboot this machine when a run's process cannot be killed (after its "
        "evidence is delivered); off unless an admin allows it",
    )
    reboot_command: list[str] = Field(
        default_factory=list,
        description="the command that reboots (default: shutdown /r on Windows, systemctl "
        "reboot on Linux)",
    )
    install_root: Path | None = Field(
        None,
        description="the managed install this agent runs from (its supervisor sets it); only "
        "such an agent updates itself from the controller's release",
    )
    release_public_key: str = Field(
        "",
        description="the controller's release key (Ed25519, base64), fixed when install.ps1 "
        "installed this machine: a self-update installs only a release it signed",
    )
    update_check_s: float = Field(
        600.0, gt=0, description="a managed agent with no runs checks for a new release this often"
    )
    silence_factor: float = Field(
        3.0,
        gt=1,
        description="outer watchdog: no event for this many stall timeouts means hangtest is stuck",
    )
