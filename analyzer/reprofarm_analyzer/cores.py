"""Triage of a Linux core file (``gcore`` of a stalled hangtest): threads and their top
frames, and what a core alone can say.

Two sources, so that something is always said:
- the ELF notes, read here: one ``NT_PRSTATUS`` per thread (its LWP id and the signal that
  made the core), ``NT_PRPSINFO`` (the command) and ``NT_FILE`` (mapped files, whose first
  is normally the executable). They need no tool and never lie about the thread count;
- gdb, for the frames (``gdb --batch -ex 'thread apply all bt 5'``), given the core's own
  executable when it is on this machine. Without gdb the threads are listed without frames
  and ``problems`` says so.

Rules (``CORE_RULES_VERSION``): a core whose first thread stopped on a fatal signal
(SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS) recorded a crash: ``no-hang``. Anything
else is ``other-hang``: Go's threads parked in ``futex`` and ``epoll_wait`` are how an idle Go
process looks, hung or not, so only the goroutine dump can say which goroutines are stuck.
Signatures name the roles seen (``other-hang:sync-read|wait``), never ids or addresses.

Errors: ``CoreError`` for a file that is not an ELF core or whose headers point outside it.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from reprofarm_protocol.analysis import Analysis, DumpKind, Evidence, Label, ThreadTop

from reprofarm_analyzer.minidump_analysis import (
    SYNC_READ,
    SYNC_WRITE,
    WAIT,
    process_dump_confidence,
    unreadable,
)

CORE_RULES_VERSION = 1
GDB_TIMEOUT_SECONDS = 120
FRAMES = 5

_MACHINES = {62: "amd64", 183: "arm64", 3: "386", 40: "arm"}
_PT_NOTE = 4
_ET_CORE = 4
_NT_PRSTATUS = 1
_NT_PRPSINFO = 3
_NT_FILE = 0x46494C45
_MAX_NOTES = 64 * 1024 * 1024
_FATAL = {4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE", 11: "SIGSEGV", 31: "SIGSYS"}
# elf_prstatus: pr_cursig (short) at 12; pr_pid after pr_sigpend and pr_sighold (longs).
_PID_OFFSET = {64: 32, 32: 24}
# elf_prpsinfo: pr_fname[16] then pr_psargs[80].
_FNAME_OFFSET = {64: 40, 32: 28}

_WAITS = {
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "epollwait", "nanosleep", "clock_nanosleep",
    "usleep", "poll", "ppoll", "select", "pselect", "pselect6", "pause", "sigtimedwait",
    "sigsuspend", "wait4", "waitpid",
}  # fmt: skip
_READS = {"read", "pread64", "readv"}
_WRITES = {"write", "pwrite64", "writev"}
_TRAMPOLINES = re.compile(r"^(raw)?syscall\d*$|^syscall_cancel$|^internal_syscall_cancel$")
_THREAD_LINE = re.compile(r"^Thread \d+ .*?LWP (\d+)")
_SHARED_OBJECT = re.compile(r"\.so(\.|$)")
_FRAME_LINE = re.compile(r"^#\d+\s+(?:(0x[0-9a-fA-F]+) in )?(\S+)")


class CoreError(ValueError):
    """Not an ELF core file, or one whose headers point outside the file."""


@dataclass
class CoreNotes:
    """What the ELF notes say: thread LWP ids in note order (the first is the thread that
    took the signal), that signal, the command name, and the mapped files in order."""

    bits: int
    machine: str
    threads: list[int] = field(default_factory=list)
    signal: int = 0
    command: str = ""
    files: list[str] = field(default_factory=list)


def analyze_core(path: Path, *, executable: Path | None = None, gdb: str | None = None) -> Analysis:
    """Triage one core. ``executable`` overrides the one the core names (useful when the
    binary lives elsewhere on the analysing machine); ``gdb`` defaults to the one on PATH.
    Never raises for bad content: a file whose ELF notes cannot be read is ``other-hang``
    (cores are taken of stalled processes only) with signature ``other-hang:unreadable-core``
    and the ``CoreError`` message as its problem."""
    try:
        notes = read_notes(path)
    except CoreError as exc:
        return unreadable(DumpKind.CORE, CORE_RULES_VERSION, str(exc))
    problems: list[str] = []
    exe = executable or _executable(notes, problems)
    gdb = gdb or shutil.which("gdb")
    stacks: dict[int, list[str]] = {}
    if gdb is None:
        problems.append("gdb not found: thread stacks not read")
    else:
        stacks = _gdb_stacks(gdb, path, exe, problems)
    threads = [
        ThreadTop(
            id=lwp, top=(stacks.get(lwp) or ["unknown"])[0], role=thread_role(stacks.get(lwp))
        )
        for lwp in notes.threads
    ]
    label, signature, evidence = _classify(notes, threads, stacks, bool(stacks))
    return Analysis(
        kind=DumpKind.CORE,
        label=label,
        signature=signature,
        confidence=process_dump_confidence(label, problems, stacks_read=bool(stacks)),
        rules_version=CORE_RULES_VERSION,
        evidence=evidence,
        problems=problems,
        arch=notes.machine,
        threads=threads,
        modules=_modules(notes),
    )


def read_notes(path: Path) -> CoreNotes:
    """The ELF header, program headers and PT_NOTE segments, read without loading the core
    (a core of a Go process maps gigabytes of reserved, sparse arenas)."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            return _notes(f, size)
    except OSError as exc:
        raise CoreError(f"{path}: cannot read: {exc}") from None


def _read(f: BinaryIO, size: int, offset: int, length: int, what: str) -> bytes:
    if offset < 0 or length < 0 or offset + length > size:
        raise CoreError(f"{what}: {length} bytes at offset {offset:#x} run past the file end")
    f.seek(offset)
    return f.read(length)


def _notes(f: BinaryIO, size: int) -> CoreNotes:
    ident = _read(f, size, 0, 16, "ELF identification")
    if ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) or ident[5] != 1:
        raise CoreError("not a little-endian ELF file: no core to read")
    bits = 64 if ident[4] == 2 else 32
    ident = _read(f, size, 0, 64 if bits == 64 else 52, "ELF header")
    kind, machine = struct.unpack_from("<HH", ident, 16)
    if kind != _ET_CORE:
        raise CoreError(f"ELF type {kind}, not a core file (type 4)")
    if bits == 64:
        (phoff,) = struct.unpack_from("<Q", ident, 32)
        phentsize, phnum = struct.unpack_from("<HH", ident, 54)
    else:
        (phoff,) = struct.unpack_from("<I", ident, 28)
        phentsize, phnum = struct.unpack_from("<HH", ident, 42)
    notes = CoreNotes(bits=bits, machine=_MACHINES.get(machine, f"unknown-{machine}"))
    for i in range(phnum):
        header = _read(f, size, phoff + i * phentsize, 56 if bits == 64 else 32, "program header")
        if bits == 64:
            p_type, _, offset, _, _, filesz = struct.unpack_from("<IIQQQQ", header)
        else:
            p_type, offset, _, _, filesz = struct.unpack_from("<IIIII", header)
        if p_type == _PT_NOTE:
            if filesz > _MAX_NOTES:
                raise CoreError(f"note segment of {filesz} bytes at {offset:#x}: implausible")
            _parse_notes(_read(f, size, offset, filesz, "note segment"), notes)
    if not notes.threads:
        raise CoreError("core file without NT_PRSTATUS notes: no threads recorded")
    return notes


def _parse_notes(data: bytes, notes: CoreNotes) -> None:
    at = 0
    while at + 12 <= len(data):
        namesz, descsz, kind = struct.unpack_from("<III", data, at)
        name_end = at + 12 + namesz
        desc_at = at + 12 + (namesz + 3) // 4 * 4
        desc_end = desc_at + descsz
        if desc_end > len(data):
            raise CoreError(f"note at {at:#x} of the note segment runs past its end")
        owner = data[at + 12 : name_end].rstrip(b"\0")
        if owner == b"CORE":
            _note(kind, data[desc_at:desc_end], notes)
        at = desc_at + (descsz + 3) // 4 * 4


def _note(kind: int, desc: bytes, notes: CoreNotes) -> None:
    word = "<Q" if notes.bits == 64 else "<I"
    if kind == _NT_PRSTATUS and len(desc) >= _PID_OFFSET[notes.bits] + 4:
        if not notes.threads:
            (notes.signal,) = struct.unpack_from("<h", desc, 12)
        notes.threads.append(struct.unpack_from("<i", desc, _PID_OFFSET[notes.bits])[0])
    elif kind == _NT_PRPSINFO and len(desc) >= _FNAME_OFFSET[notes.bits] + 16:
        raw = desc[_FNAME_OFFSET[notes.bits] : _FNAME_OFFSET[notes.bits] + 16]
        notes.command = raw.split(b"\0", 1)[0].decode(errors="replace")
    elif kind == _NT_FILE:
        notes.files = _file_names(desc, word)


def _file_names(desc: bytes, word: str) -> list[str]:
    """NT_FILE: count, page size, count (start, end, offset) triples, then count names."""
    width = struct.calcsize(word)
    if len(desc) < 2 * width:
        return []
    (count,) = struct.unpack_from(word, desc, 0)
    names_at = 2 * width + 3 * width * count
    if names_at > len(desc):
        return []
    return [n.decode(errors="replace") for n in desc[names_at:].split(b"\0")[:count] if n]


def _modules(notes: CoreNotes) -> list[str]:
    """Mapped files that are code: the executable and shared objects (not locale files)."""
    names = (Path(f).name for f in notes.files)
    return list(
        dict.fromkeys(
            n
            for n in names
            if _SHARED_OBJECT.search(n) or (notes.command and n.startswith(notes.command))
        )
    )


def _executable(notes: CoreNotes, problems: list[str]) -> Path | None:
    """The mapped file named like the command (the kernel truncates it to 15 bytes)."""
    named = notes.command
    candidates = [f for f in notes.files if named and Path(f).name.startswith(named)]
    if not candidates:
        return None
    path = Path(candidates[0])
    if not path.is_file():
        problems.append(f"the core's executable {path} is not on this machine: frames unnamed")
        return None
    return path


def _gdb_stacks(
    gdb: str, core: Path, exe: Path | None, problems: list[str]
) -> dict[int, list[str]]:
    command = [
        gdb, "--batch", "-nx", "-iex", "set debuginfod enabled off", "-iex", "set auto-load off",
        "-ex", "set pagination off", "-ex", "set width 0",
        "-ex", f"thread apply all bt {FRAMES}", f"--core={core}",
    ]  # fmt: skip
    if exe is not None:
        command.append(str(exe))
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=GDB_TIMEOUT_SECONDS,
            env={**os.environ, "LC_ALL": "C"},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        problems.append(f"gdb could not read the core: {exc}: thread stacks not read")
        return {}
    stacks = parse_gdb_backtraces(done.stdout)
    if not stacks:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        problems.append(f"gdb printed no thread stacks (exit {done.returncode}: {tail[0]})")
    return stacks


def parse_gdb_backtraces(text: str) -> dict[int, list[str]]:
    """``thread apply all bt`` output as LWP id -> frames, innermost first: the function
    name gdb printed, or the address where it printed ``??``."""
    stacks: dict[int, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        thread = _THREAD_LINE.match(line)
        if thread:
            current = stacks.setdefault(int(thread.group(1)), [])
            continue
        frame = _FRAME_LINE.match(line)
        if frame and current is not None:
            address, name = frame.groups()
            current.append(address if name == "??" and address else name)
    return stacks


def _call(name: str) -> str:
    """``__GI___libc_read`` -> ``read``; ``runtime.futex`` -> ``futex``."""
    base = name.rsplit(".", 1)[-1].lstrip("_")
    for prefix in ("GI_", "libc_"):
        base = base.removeprefix(prefix).lstrip("_")
    return base


def thread_role(frames: list[str] | None) -> str | None:
    """The role of a thread from its innermost frames, looking through syscall trampolines
    (Go's ``Syscall6``, glibc's ``syscall_cancel``) to the call they serve."""
    for name in frames or []:
        call = _call(name).lower()
        if _TRAMPOLINES.match(call):
            continue
        if "futex" in call or call in _WAITS:
            return WAIT
        if call in _READS:
            return SYNC_READ
        if call in _WRITES:
            return SYNC_WRITE
        return None
    return None


def _classify(
    notes: CoreNotes, threads: list[ThreadTop], stacks: dict[int, list[str]], read: bool
) -> tuple[Label, str, list[Evidence]]:
    first = threads[0]
    if notes.signal in _FATAL:
        name = _FATAL[notes.signal]
        detail = f"thread {first.id} stopped on {name} at {first.top}: the core records a crash"
        evidence = Evidence(
            rule="core.crash", detail=detail, threads=[first.id], frames=stacks.get(first.id, [])
        )
        top = first.top if read and not first.top.startswith("0x") else "unknown"
        return Label.NO_HANG, f"no-hang:crash:{name}:{top}", [evidence]
    roles = sorted({t.role for t in threads if t.role})
    waiting = [t for t in threads if t.role]
    if not read:
        detail = (
            f"{len(threads)} threads, stacks not read: a core alone cannot say why the "
            f"process stalled; the goroutine dump decides"
        )
        evidence = Evidence(rule="core.unread", detail=detail, threads=[t.id for t in threads])
        return Label.OTHER_HANG, "other-hang:unread", [evidence]
    detail = (
        f"{len(waiting)} of {len(threads)} threads wait or block in system calls "
        f"({', '.join(f'{t.id} in {t.top}' for t in waiting) or 'none'}); Go's idle threads "
        f"sit in futex and epoll_wait in every process, hung or not, so a core alone cannot "
        f"name the stuck goroutines: the goroutine dump decides"
    )
    frames = sorted({t.top for t in waiting})
    evidence = Evidence(
        rule="core.threads", detail=detail, threads=[t.id for t in waiting], frames=frames
    )
    return Label.OTHER_HANG, "other-hang:" + ("|".join(roles) or "running"), [evidence]
