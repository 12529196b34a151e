"""Linux core triage on real cores: each test starts a small process, takes its core with
gcore (as the agent does on Linux) into tmp_path, and reads it back."""

from __future__ import annotations

import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reprofarm_analyzer.cores import analyze_core, parse_gdb_backtraces, read_notes, thread_role
from reprofarm_protocol.analysis import Label

# Two threads blocked in a pipe read and the main thread asleep, then "ready".
THREADED = """
import os, sys, threading, time
r, w = os.pipe()
for _ in range(2):
    threading.Thread(target=os.read, args=(r, 1), daemon=True).start()
time.sleep(0.2)
print("ready", flush=True)
time.sleep(60)
"""

needs_gcore = pytest.mark.needs("gcore")


@pytest.fixture(scope="module")
def threaded_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("core")
    child = subprocess.Popen([sys.executable, "-c", THREADED], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        subprocess.run(
            ["gcore", "-o", str(folder / "core"), str(child.pid)],
            check=True,
            capture_output=True,
            timeout=60,
        )
    finally:
        child.kill()
        child.wait()
    core = folder / f"core.{child.pid}"
    yield core
    core.unlink()  # some 150 MB: do not leave it in pytest's kept temporary folders


@needs_gcore
def test_notes_list_every_thread_and_the_executable(threaded_core: Path) -> None:
    notes = read_notes(threaded_core)
    assert len(notes.threads) == 3
    assert notes.signal == 0  # gcore of a live process: no fatal signal
    assert notes.command.startswith("python")
    assert notes.machine in ("amd64", "arm64")
    assert any(Path(f).name.startswith("python") for f in notes.files)


@needs_gcore
def test_gdb_stacks_give_each_thread_a_top_frame_and_a_role(threaded_core: Path) -> None:
    analysis = analyze_core(threaded_core)
    assert len(analysis.threads) == 3
    assert analysis.problems == []
    roles = sorted(t.role or "" for t in analysis.threads)
    assert roles == ["sync-read", "sync-read", "wait"], [t.top for t in analysis.threads]
    assert all(t.top != "unknown" for t in analysis.threads)
    assert analysis.label is Label.OTHER_HANG
    assert analysis.signature == "other-hang:sync-read|wait"
    assert "goroutine dump decides" in analysis.evidence[0].detail
    assert any(m.startswith("libc.so") for m in analysis.modules)


@needs_gcore
def test_without_gdb_threads_still_come_from_the_notes(
    threaded_core: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no gdb to find
    analysis = analyze_core(threaded_core)
    assert analysis.problems == ["gdb not found: thread stacks not read"]
    assert [t.top for t in analysis.threads] == ["unknown"] * 3
    assert analysis.signature == "other-hang:unread"


def test_a_file_that_is_not_a_core_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "core.1"
    path.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(57))
    analysis = analyze_core(path)
    assert analysis.signature == "other-hang:unreadable-core"
    assert analysis.problems == ["core: ELF type 0, not a core file (type 4)"]


@needs_gcore
def test_truncated_core_is_reported_not_raised(threaded_core: Path, tmp_path: Path) -> None:
    data = threaded_core.read_bytes()
    for cut in (10, 63, 64 + 56 * 2, len(data) // 100):
        path = tmp_path / f"core.{cut}"
        path.write_bytes(data[:cut])
        analysis = analyze_core(path)
        assert analysis.signature == "other-hang:unreadable-core", cut


def test_gdb_output_of_go_threads_parses_with_roles_through_syscall_frames() -> None:
    text = """
Thread 3 (LWP 4243):
#0  runtime.futex () at /go/src/runtime/sys_linux_amd64.s:557
#1  0x0000000000438b50 in runtime.futexsleep (addr=0x5a1b28, val=0, ns=-1) at os_linux.go:69

Thread 2 (LWP 4242):
#0  internal/runtime/syscall.Syscall6 () at /go/src/internal/runtime/syscall/asm_linux_amd64.s:36
#1  0x0000000000401c33 in syscall.Syscall (trap=0, a1=3, a2=8, a3=2) at syscall_linux.go:73
#2  0x0000000000401a6a in syscall.read (fd=3, p=...) at /go/src/syscall/zsyscall_linux_amd64.go:736

Thread 1 (Thread 0x7f3c1a5fe6c0 (LWP 4241) "hangtest"):
#0  0x00007f3c1a6e2d4c in ?? () from /lib/x86_64-linux-gnu/libc.so.6
"""
    stacks = parse_gdb_backtraces(text)
    assert stacks[4243][:2] == ["runtime.futex", "runtime.futexsleep"]
    assert stacks[4242][2] == "syscall.read"
    assert stacks[4241] == ["0x00007f3c1a6e2d4c"]
    assert [thread_role(stacks[lwp]) for lwp in (4243, 4242, 4241)] == ["wait", "sync-read", None]


def test_go_netpoller_thread_waits_through_its_syscall_trampoline() -> None:
    # Seen in a gcore of a Go 1.27 program: the netpoller's thread (Go's own pipe reads
    # park goroutines, not threads, on Linux).
    frames = ["internal/runtime/syscall/linux.Syscall6", "internal/runtime/syscall/linux.EpollWait"]
    assert thread_role(frames) == "wait"
    assert thread_role(["__GI___libc_read", "main"]) == "sync-read"
    assert thread_role(["__GI___libc_write"]) == "sync-write"
    assert thread_role(["main.spin"]) is None


def compact_core(core: Path) -> bytes:
    """The core's ELF header and note segment alone, the notes moved right after a single
    PT_NOTE program header: a ~30 KB file with the real notes, small enough to mutate."""
    with core.open("rb") as f:
        header = bytearray(f.read(64))
        phoff, phentsize, phnum = (
            struct.unpack_from("<Q", header, 32)[0],
            *struct.unpack_from("<HH", header, 54),
        )
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            p_type, _, offset, _, _, size = struct.unpack("<IIQQQQ", f.read(40))
            if p_type == 4:  # PT_NOTE
                f.seek(offset)
                notes = f.read(size)
                break
    struct.pack_into("<Q", header, 32, 64)
    struct.pack_into("<HH", header, 54, 56, 1)
    note_header = struct.pack("<IIQQQQQQ", 4, 4, 64 + 56, 0, 0, len(notes), 0, 1)
    return bytes(header) + note_header + notes


@needs_gcore
def test_compacted_core_keeps_its_threads(threaded_core: Path, tmp_path: Path) -> None:
    path = tmp_path / "compact"
    path.write_bytes(compact_core(threaded_core))
    assert read_notes(path).threads == read_notes(threaded_core).threads


@needs_gcore
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=10),
    cut=st.one_of(st.none(), st.integers(0, 1 << 16)),
)
def test_mutated_cores_are_reported_never_raised(
    threaded_core: Path, edits: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(_compact(threaded_core))
    for at, value in edits:
        data[at % len(data)] = value
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "core"
        path.write_bytes(bytes(data[:cut]))
        analyze_core(path, gdb="/nonexistent/gdb")


_COMPACT: dict[Path, bytes] = {}


def _compact(core: Path) -> bytes:
    if core not in _COMPACT:
        _COMPACT[core] = compact_core(core)
    return _COMPACT[core]
