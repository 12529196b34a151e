"""Linux: sched_setaffinity placement, process groups, gcore dumps."""

from __future__ import annotations

import sys

# Tells mypy (and a reader) that nothing below runs elsewhere; mypy --platform
# win32 then skips this module instead of flagging Linux-only calls.
assert sys.platform == "linux"

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from reprofarm_protocol.runs import ArtifactKind

from reprofarm_agent.errors import CaptureError, PlacementError, ProbeError
from reprofarm_agent.hardware import ProbedFacts
from reprofarm_agent.placement import CpuPlacement
from reprofarm_agent.platform import linux_probe
from reprofarm_agent.platform.base import KillOutcome, Spawned

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "armv7l": "arm"}

# Affinity set on the spawning thread is inherited by the forked child, so
# concurrent spawns from different threads must not interleave.
_SPAWN_LOCK = threading.Lock()


class LinuxPlatform:
    name = "linux"
    process_dump_kind = ArtifactKind.CORE

    def __init__(self, root: Path = Path("/"), gcore: str | None = None) -> None:
        self._root = root
        self._gcore = gcore or shutil.which("gcore")

    def probe(self) -> ProbedFacts:
        os_name, release = linux_probe.os_identity(self._root)
        machine = os.uname().machine
        return ProbedFacts(
            os="linux",
            os_version=release,
            os_name=os_name,
            arch=_ARCH.get(machine, machine),
            python_arch=_ARCH.get(sysconfig.get_platform().rsplit("-", 1)[-1], "unknown"),
            cpu_model=linux_probe.cpu_model(self._root),
            hypervisor=linux_probe.hypervisor(self._root),
            memory_bytes=linux_probe.memory_bytes(self._root),
            hostname=socket.gethostname(),
            cpus=linux_probe.topology(self._root, os.sched_getaffinity(0)),
        )

    def spawn_on_cpus(
        self,
        argv: Sequence[str],
        placement: CpuPlacement,
        env: Mapping[str, str],
        stderr: IO[bytes],
    ) -> Spawned:
        # The child must run on its CPUs from its first instruction, and
        # preexec_fn is unsafe with threads. sched_setaffinity(0) acts on the
        # calling thread only, and fork copies the calling thread's mask: so
        # pin this thread, fork+exec, and restore it.
        wanted = set(placement.cpus)
        with _SPAWN_LOCK:
            before = os.sched_getaffinity(0)
            try:
                os.sched_setaffinity(0, wanted)
            except OSError as exc:
                raise PlacementError(f"cpus: cannot run on {sorted(wanted)}: {exc}") from None
            try:
                popen = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    env=dict(env),
                    process_group=0,
                )
            finally:
                os.sched_setaffinity(0, before)
        return Spawned(popen=popen, tree_handle=popen.pid)

    def request_goroutine_dump(self, child: Spawned) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGQUIT)

    def dump_process(self, child: Spawned, path: Path) -> Path:
        if not self._gcore:
            raise CaptureError("gcore not found: install gdb to take core dumps")
        # gcore appends ".<pid>" to the name given with -o.
        try:
            done = subprocess.run(
                [self._gcore, "-o", str(path), str(child.pid)],
                capture_output=True,
                timeout=300,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CaptureError(f"gcore could not run: {exc}") from None
        core = path.with_name(f"{path.name}.{child.pid}")
        if done.returncode != 0 or not core.exists():
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
            raise CaptureError(f"gcore exited {done.returncode}: {' '.join(tail)}")
        punch_zero_holes(core)
        return core

    def kill_tree(self, child: Spawned, timeout_s: float) -> KillOutcome:
        pgid = child.tree_handle
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        try:
            child.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            state = _proc_state(child.pid)
            return KillOutcome(
                gone=False, detail=f"pid {child.pid} survived SIGKILL for {timeout_s}s ({state})"
            )
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return KillOutcome(gone=True, detail="process group gone")
        except PermissionError:
            pass
        return KillOutcome(gone=False, detail=f"process group {pgid} still has members")

    def process_identity(self, pid: int) -> str | None:
        """This boot's id and the process's start time in clock ticks since boot
        (field 22 of /proc/<pid>/stat, proc(5)): a pid reused later, even after a
        reboot, has another. A zombie counts as gone: it runs nothing, and an
        orphan's reaper may never come (a container without an init)."""
        fields = _stat_fields(pid)
        if fields is None or fields[0] == "Z":
            return None
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot_id}:{fields[19]}"

    def kill_leftover(self, pid: int, identity: str, timeout_s: float) -> KillOutcome | None:
        if self.process_identity(pid) != identity:
            return None
        # spawn_on_cpus made it a group leader (process_group=0): its group id is
        # its pid, and Linux hands that pid to no new process while the group
        # has members, so the group is still the one it led.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        # Not our child (its parent was the agent that died): nothing to wait()
        # on, so watch /proc until no living member of the group is left.
        deadline = time.monotonic() + timeout_s
        while members := _group_members(pid):
            if time.monotonic() >= deadline:
                state = _proc_state(members[0])
                return KillOutcome(
                    gone=False,
                    detail=f"leftover pid {members[0]} survived SIGKILL for {timeout_s}s ({state})",
                )
            time.sleep(0.05)
        return KillOutcome(gone=True, detail=f"leftover process group {pid} killed")

    def system_dlls(self) -> list[Path]:
        return []  # cores carry their own symbols; gdb reads them

    def boot_time(self) -> float:
        """``btime`` of /proc/stat (proc(5))."""
        for line in (self._root / "proc" / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
        raise ProbeError("/proc/stat has no btime line")


_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_HOLE_CHUNK = 1 << 20
_ZEROS = bytes(_HOLE_CHUNK)


def punch_zero_holes(path: Path) -> int:
    """Turn all-zero MiB blocks of a file into holes; return the bytes freed.

    gcore writes a Go process's reserved-but-untouched arenas as real zeros
    (about 1.2 GB for hangtest), where the kernel's own core dumps leave holes.
    The file's content and size stay the same; only the disk use shrinks.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    freed = 0
    with path.open("r+b") as f:
        offset = 0
        while chunk := f.read(_HOLE_CHUNK):
            if chunk == _ZEROS[: len(chunk)]:
                mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
                if libc.fallocate(f.fileno(), mode, offset, len(chunk)) != 0:
                    return freed  # the filesystem cannot punch holes: keep it whole
                freed += len(chunk)
            offset += len(chunk)
    return freed


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on; the name before it may hold
    spaces and parentheses, so split after its last ')'. None: no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _group_members(pgid: int) -> list[int]:
    """Living (not zombie) processes of process group ``pgid``: field 5 of stat."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and fields[0] != "Z" and fields[2] == str(pgid):
            members.append(int(entry.name))
    return members


def _proc_state(pid: int) -> str:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "state unknown"
