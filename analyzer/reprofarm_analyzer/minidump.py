"""A bounds-checked reader of Windows minidump files (``MDMP``), in pure Python.

Why our own reader: dumps come from lab machines that may be hung, out of disk or half
written, and the worker must triage every one of them without crashing. The PyPI
``minidump`` package raises assorted exceptions on malformed input and has no ARM64 thread
context, while ARM64 is where the hang was first seen. So every read here is checked
against the file's length, and anything malformed raises one error type, ``MinidumpError``,
whose message says what was being read and at which file offset.

What a caller may rely on: ``parse_minidump`` returns a ``Minidump`` or raises
``MinidumpError`` (never ``IndexError`` or ``struct.error``). Thread contexts are kept raw;
``contexts.decode_context`` turns them into registers.

Layouts are those of minidumpapiset.h (MINIDUMP_HEADER, MINIDUMP_DIRECTORY, ...), which
breakpad's Linux and macOS writers reuse with their own stream types and platform ids.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass
from typing import Any

SIGNATURE = b"MDMP"
_VERSION = 0xA793  # MINIDUMP_VERSION, the low 16 bits of the header's Version

# MINIDUMP_STREAM_TYPE values this reader understands.
THREAD_LIST = 3
MODULE_LIST = 4
MEMORY_LIST = 5
EXCEPTION = 6
SYSTEM_INFO = 7
MEMORY64_LIST = 9
MISC_INFO = 15
THREAD_NAME_LIST = 24

ARCHITECTURES = {0: "386", 5: "arm", 6: "ia64", 9: "amd64", 12: "arm64"}
"""SystemInfo ProcessorArchitecture codes, named as the hardware record names machines."""

_WINDOWS_PLATFORMS = {0, 1, 2}  # VER_PLATFORM_WIN32s, _WIN32_WINDOWS, _WIN32_NT

_U32 = struct.Struct("<I")
_HEADER = struct.Struct("<4sIIIIIQ")
_DIRECTORY = struct.Struct("<III")
_SYSTEM_INFO = struct.Struct("<HHHBBIIIIIHH24x")
# MINIDUMP_MODULE: base, size, checksum, timestamp, name rva, VS_FIXEDFILEINFO (13 dwords),
# CvRecord, MiscRecord, two reserved quadwords. Packed to 4, 108 bytes.
_MODULE = struct.Struct("<QIIII13I8x8x16x")
# MINIDUMP_THREAD: id, suspend count, priority class, priority, TEB, stack descriptor,
# context location. 48 bytes.
_THREAD = struct.Struct("<IIIIQQIIII")
_MEMORY = struct.Struct("<QII")
_MEMORY64 = struct.Struct("<QQ")
_THREAD_NAME = struct.Struct("<IQ")
_MISC = struct.Struct("<III")
# MINIDUMP_EXCEPTION_STREAM: thread id, alignment, MINIDUMP_EXCEPTION (code, flags, record,
# address, parameter count, alignment, 15 parameters), context location. 168 bytes.
_EXCEPTION = struct.Struct("<II II QQ I4x 15Q II")
_MISC_BUILD_STRING_OFFSET = 232  # MINIDUMP_MISC_INFO_4.BuildString: 260 WCHARs
_MISC1_PROCESS_ID = 0x1
_MISC4_BUILDSTRING = 0x100
_FIXED_FILE_INFO_SIGNATURE = 0xFEEF04BD
_MAX_STRING_BYTES = 64 * 1024


class MinidumpError(ValueError):
    """The bytes are not a minidump this reader can trust; the message says what was being
    read and at which file offset."""


@dataclass(frozen=True, slots=True)
class SystemInfo:
    """MINIDUMP_SYSTEM_INFO: the machine the dump was written on."""

    processor_architecture: int
    processor_level: int
    processor_revision: int
    processors: int
    product_type: int
    major_version: int
    minor_version: int
    build_number: int
    platform_id: int
    csd_version: str

    @property
    def arch(self) -> str:
        """``amd64``, ``arm64``, ``386``, ``arm``, ``ia64`` or ``unknown-N``."""
        code = self.processor_architecture
        return ARCHITECTURES.get(code, f"unknown-{code}")

    @property
    def os_build(self) -> str:
        """``major.minor.build``, the shape of the hardware record's ``os_version``."""
        return f"{self.major_version}.{self.minor_version}.{self.build_number}"

    @property
    def is_windows(self) -> bool:
        """False for breakpad's Linux/macOS dumps, which reuse the format."""
        return self.platform_id in _WINDOWS_PLATFORMS


def module_short_name(path: str) -> str:
    """A module's name the way debuggers print it: ``C:\\Windows\\System32\\ntdll.dll`` is
    ``ntdll``. Lower case, since Windows file names are case-insensitive."""
    leaf = path.replace("\\", "/").rsplit("/", 1)[-1].lower()
    stem, dot, _ = leaf.rpartition(".")
    return stem if dot and stem else leaf


@dataclass(frozen=True, slots=True)
class Module:
    """One loaded image (MINIDUMP_MODULE). ``file_version`` comes from its
    VS_FIXEDFILEINFO, or is None when the writer left it empty."""

    base: int
    size: int
    checksum: int
    timestamp: int
    path: str
    file_version: str | None

    @property
    def name(self) -> str:
        return module_short_name(self.path)

    def contains(self, address: int) -> bool:
        return self.base <= address < self.base + self.size


@dataclass(frozen=True, slots=True)
class Thread:
    """One thread (MINIDUMP_THREAD). ``context`` is the raw CONTEXT record of the
    thread's architecture; ``name`` comes from the ThreadNames stream when present."""

    id: int
    suspend_count: int
    priority_class: int
    priority: int
    teb: int
    stack_start: int
    stack_size: int
    context: bytes
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ExceptionInfo:
    """The Exception stream: which thread faulted, how, and its context at the fault."""

    thread_id: int
    code: int
    flags: int
    address: int
    parameters: tuple[int, ...]
    context: bytes


@dataclass(frozen=True, slots=True)
class MiscInfo:
    """The parts of MINIDUMP_MISC_INFO(_N) worth showing; None where the flags say absent."""

    process_id: int | None
    build_string: str | None


class MemoryMap:
    """Captured memory by virtual address: sorted, non-overlapping ranges, each
    (start address, size, file offset of its first byte)."""

    def __init__(self, data: bytes, ranges: list[tuple[int, int, int]]) -> None:
        self._data = memoryview(data)
        self.ranges = tuple(ranges)
        self._starts = [start for start, _, _ in ranges]

    def read(self, address: int, size: int) -> bytes | None:
        """Exactly ``size`` bytes at ``address``, stitched across adjacent ranges (an image's
        sections are captured as separate regions), or None if any byte was not captured."""
        if size < 0 or address < 0:
            return None
        out = bytearray()
        at = address
        while len(out) < size:
            i = bisect.bisect_right(self._starts, at) - 1
            if i < 0:
                return None
            start, length, offset = self.ranges[i]
            if at >= start + length:
                return None
            take = min(size - len(out), start + length - at)
            out += self._data[offset + at - start : offset + at - start + take]
            at += take
        return bytes(out)

    def __len__(self) -> int:
        return len(self.ranges)


@dataclass(frozen=True, slots=True)
class Minidump:
    """A parsed dump. Absent streams are None or empty: a breakpad dump has no Memory64List,
    a MiniDumpWriteDump dump may lack an Exception stream."""

    version: int
    flags: int
    timestamp: int
    stream_types: tuple[int, ...]
    system_info: SystemInfo | None
    modules: tuple[Module, ...]
    threads: tuple[Thread, ...]
    memory: MemoryMap
    exception: ExceptionInfo | None
    misc: MiscInfo | None

    def module_at(self, address: int) -> Module | None:
        return next((m for m in self.modules if m.contains(address)), None)


class _File:
    """The dump's bytes with reads that check bounds and say where they failed."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def unpack(self, fmt: struct.Struct, offset: int, what: str) -> tuple[Any, ...]:
        if offset < 0 or offset + fmt.size > len(self.data):
            raise MinidumpError(
                f"{what} at offset {offset:#x} needs {fmt.size} bytes, "
                f"the file has {len(self.data)}"
            )
        return fmt.unpack_from(self.data, offset)

    def check(self, offset: int, size: int, what: str) -> None:
        if offset < 0 or size < 0 or offset + size > len(self.data):
            raise MinidumpError(
                f"{what}: {size} bytes at offset {offset:#x} run past the end of the file "
                f"({len(self.data)} bytes)"
            )

    def span(self, offset: int, size: int, what: str) -> bytes:
        self.check(offset, size, what)
        return self.data[offset : offset + size]

    def string(self, rva: int, what: str) -> str:
        """A MINIDUMP_STRING: a byte length, then UTF-16LE without the terminator."""
        (length,) = self.unpack(_U32, rva, what)
        if length > _MAX_STRING_BYTES or length % 2:
            raise MinidumpError(f"{what} at offset {rva:#x}: implausible length {length}")
        return self.span(rva + 4, length, what).decode("utf-16-le", errors="replace")

    def records(self, stream: tuple[int, int], entry: struct.Struct, what: str) -> list[int]:
        """Offsets of a list stream's entries after its 32-bit count. Some writers pad the
        count to 8 bytes; rust-minidump accepts that too, so do we."""
        size, rva = stream
        (count,) = self.unpack(_U32, rva, f"{what} count")
        first = rva + 4
        if size == 8 + count * entry.size:
            first += 4
        elif size < 4 + count * entry.size:
            raise MinidumpError(
                f"{what} at offset {rva:#x}: {count} entries of {entry.size} bytes need "
                f"{4 + count * entry.size} bytes, the stream has {size}"
            )
        return [first + i * entry.size for i in range(count)]


def parse_minidump(data: bytes) -> Minidump:
    """Parse a whole dump held in memory. Raises ``MinidumpError`` on anything malformed,
    including a directory entry that points outside the file (a truncated dump)."""
    f = _File(data)
    signature, version, count, directory, _checksum, timestamp, flags = f.unpack(
        _HEADER, 0, "header"
    )
    if signature != SIGNATURE:
        raise MinidumpError(f"not a minidump: signature {signature!r} at offset 0x0, want b'MDMP'")
    if version & 0xFFFF != _VERSION:
        raise MinidumpError(f"header at offset 0x0: unknown format version {version & 0xFFFF:#x}")
    streams: dict[int, tuple[int, int]] = {}
    types: list[int] = []
    for i in range(count):
        at = directory + i * _DIRECTORY.size
        kind, size, rva = f.unpack(_DIRECTORY, at, f"stream directory entry {i}")
        f.check(rva, size, f"stream {i} (type {kind:#x}) listed at offset {at:#x}")
        types.append(kind)
        streams.setdefault(kind, (size, rva))  # the first of duplicates, as dbghelp does
    names = _thread_names(f, streams.get(THREAD_NAME_LIST))
    return Minidump(
        version=version,
        flags=flags,
        timestamp=timestamp,
        stream_types=tuple(types),
        system_info=_system_info(f, streams.get(SYSTEM_INFO)),
        modules=_modules(f, streams.get(MODULE_LIST)),
        threads=_threads(f, streams.get(THREAD_LIST), names),
        memory=_memory(f, streams.get(MEMORY_LIST), streams.get(MEMORY64_LIST)),
        exception=_exception(f, streams.get(EXCEPTION)),
        misc=_misc(f, streams.get(MISC_INFO)),
    )


def _system_info(f: _File, stream: tuple[int, int] | None) -> SystemInfo | None:
    if stream is None:
        return None
    size, rva = stream
    if size < _SYSTEM_INFO.size:
        raise MinidumpError(f"SystemInfo stream at offset {rva:#x} is {size} bytes, want 56")
    (arch, level, revision, cpus, product, major, minor, build, platform, csd_rva, _, _) = f.unpack(
        _SYSTEM_INFO, rva, "SystemInfo stream"
    )
    return SystemInfo(
        processor_architecture=arch,
        processor_level=level,
        processor_revision=revision,
        processors=cpus,
        product_type=product,
        major_version=major,
        minor_version=minor,
        build_number=build,
        platform_id=platform,
        csd_version=f.string(csd_rva, "SystemInfo CSD version") if csd_rva else "",
    )


def _version(fixed: tuple[int, ...]) -> str | None:
    signature, _, ms, ls = fixed[:4]
    if signature != _FIXED_FILE_INFO_SIGNATURE:
        return None
    return f"{ms >> 16}.{ms & 0xFFFF}.{ls >> 16}.{ls & 0xFFFF}"


def _modules(f: _File, stream: tuple[int, int] | None) -> tuple[Module, ...]:
    if stream is None:
        return ()
    modules = []
    for at in f.records(stream, _MODULE, "ModuleList stream"):
        base, size, checksum, timestamp, name_rva, *fixed = f.unpack(_MODULE, at, "module")
        modules.append(
            Module(
                base=base,
                size=size,
                checksum=checksum,
                timestamp=timestamp,
                path=f.string(name_rva, f"name of the module at {at:#x}"),
                file_version=_version(tuple(fixed)),
            )
        )
    return tuple(modules)


def _threads(f: _File, stream: tuple[int, int] | None, names: dict[int, str]) -> tuple[Thread, ...]:
    if stream is None:
        return ()
    threads = []
    for at in f.records(stream, _THREAD, "ThreadList stream"):
        tid, suspend, pclass, prio, teb, start, _ssize, _srva, csize, crva = f.unpack(
            _THREAD, at, "thread"
        )
        threads.append(
            Thread(
                id=tid,
                suspend_count=suspend,
                priority_class=pclass,
                priority=prio,
                teb=teb,
                stack_start=start,
                stack_size=_ssize,
                context=f.span(crva, csize, f"context of thread {tid}"),
                name=names.get(tid),
            )
        )
    return tuple(threads)


def _thread_names(f: _File, stream: tuple[int, int] | None) -> dict[int, str]:
    if stream is None:
        return {}
    names = {}
    for at in f.records(stream, _THREAD_NAME, "ThreadNames stream"):
        tid, rva = f.unpack(_THREAD_NAME, at, "thread name")
        names[tid] = f.string(rva, f"name of thread {tid}")
    return names


def _memory(f: _File, small: tuple[int, int] | None, full: tuple[int, int] | None) -> MemoryMap:
    ranges: list[tuple[int, int, int]] = []
    if small is not None:
        for at in f.records(small, _MEMORY, "MemoryList stream"):
            start, size, rva = f.unpack(_MEMORY, at, "memory range")
            f.check(rva, size, f"memory at {start:#x} (descriptor at {at:#x})")
            ranges.append((start, size, rva))
    if full is not None:
        ranges += _memory64(f, full)
    ranges.sort()
    kept: list[tuple[int, int, int]] = []
    for r in ranges:  # overlapping ranges: keep the first, so reads stay unambiguous
        if r[1] and (not kept or r[0] >= kept[-1][0] + kept[-1][1]):
            kept.append(r)
    return MemoryMap(f.data, kept)


def _memory64(f: _File, stream: tuple[int, int]) -> list[tuple[int, int, int]]:
    """Memory64List: a count, one base RVA, then (start, size) pairs whose bytes follow one
    another from that base: how full-memory dumps (MiniDumpWithFullMemory) store memory."""
    size, rva = stream
    count, offset = f.unpack(_MEMORY64, rva, "Memory64List header")
    if 16 + count * _MEMORY64.size > size:
        raise MinidumpError(
            f"Memory64List at offset {rva:#x}: {count} ranges need "
            f"{16 + count * _MEMORY64.size} bytes, the stream has {size}"
        )
    ranges = []
    for i in range(count):
        start, length = f.unpack(_MEMORY64, rva + 16 + i * 16, "Memory64List range")
        f.check(offset, length, f"memory at {start:#x} (Memory64List range {i})")
        ranges.append((start, length, offset))
        offset += length
    return ranges


def _exception(f: _File, stream: tuple[int, int] | None) -> ExceptionInfo | None:
    if stream is None:
        return None
    _, rva = stream
    tid, _, code, flags, _, address, count, *rest = f.unpack(_EXCEPTION, rva, "Exception stream")
    params, (csize, crva) = rest[:15], rest[15:]
    return ExceptionInfo(
        thread_id=tid,
        code=code,
        flags=flags,
        address=address,
        parameters=tuple(params[: min(count, 15)]),
        context=f.span(crva, csize, "exception context"),
    )


def _misc(f: _File, stream: tuple[int, int] | None) -> MiscInfo | None:
    if stream is None:
        return None
    size, rva = stream
    declared, flags, pid = f.unpack(_MISC, rva, "MiscInfo stream")
    build = None
    end = _MISC_BUILD_STRING_OFFSET + 520
    if flags & _MISC4_BUILDSTRING and min(size, declared) >= end:
        raw = f.span(rva + _MISC_BUILD_STRING_OFFSET, 520, "MiscInfo build string")
        build = raw.decode("utf-16-le", errors="replace").split("\0", 1)[0] or None
    return MiscInfo(process_id=pid if flags & _MISC1_PROCESS_ID else None, build_string=build)
