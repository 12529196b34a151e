"""The one interface between the agent and the operating system.

Everything OS-specific sits behind ``Platform``: a Linux implementation that
the whole test suite exercises here, and a Windows one whose pure logic
(topology parsing, masks, machine codes) is unit-tested everywhere.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from reprofarm_protocol.runs import ArtifactKind

from reprofarm_agent.hardware import ProbedFacts
from reprofarm_agent.placement import CpuPlacement


@dataclass
class Spawned:
    """A started child: the Popen plus whatever the OS needs to kill its tree
    (a job object handle on Windows, the process group id on Linux)."""

    popen: subprocess.Popen[bytes]
    tree_handle: int

    @property
    def pid(self) -> int:
        return self.popen.pid


@dataclass(frozen=True)
class KillOutcome:
    gone: bool
    detail: str


class Platform(Protocol):
    name: str
    process_dump_kind: ArtifactKind

    def probe(self) -> ProbedFacts:
        """Read the machine's facts and the CPUs this process may use."""
        ...

    def spawn_on_cpus(
        self,
        argv: Sequence[str],
        placement: CpuPlacement,
        env: Mapping[str, str],
        stderr: IO[bytes],
    ) -> Spawned:
        """Start argv in its own process group/job, on the placement's CPUs from
        its first instruction, with stdout as a pipe."""
        ...

    def request_goroutine_dump(self, child: Spawned) -> None:
        """Ask hangtest for an on-demand goroutine dump (SIGQUIT / Ctrl+Break)."""
        ...

    def dump_process(self, child: Spawned, path: Path) -> Path:
        """Write a full process dump from outside the process; return its path.
        Raises CaptureError when the dump could not be taken."""
        ...

    def kill_tree(self, child: Spawned, timeout_s: float) -> KillOutcome:
        """Kill the child and everything it started, then verify they are gone."""
        ...

    def process_identity(self, pid: int) -> str | None:
        """What tells the living process ``pid`` from a later one given the same pid
        (its start time), or None when no process has this pid. An agent records
        it at spawn, so after a restart it kills only the hangtest it started."""
        ...

    def kill_leftover(self, pid: int, identity: str, timeout_s: float) -> KillOutcome | None:
        """Kill, with everything it started, a process an earlier agent process
        spawned (its Spawned died with that agent), if ``pid`` still has
        ``identity``; then verify it is gone. None when it is not running."""
        ...

    def system_dlls(self) -> list[Path]:
        """The DLLs whose export tables name a minidump's frames (none off Windows)."""
        ...

    def boot_time(self) -> float:
        """When the OS last booted (Unix seconds): tells a real reboot from a restart."""
        ...
