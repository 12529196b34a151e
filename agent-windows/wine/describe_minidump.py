"""Print what a minidump holds, to check that it looks sane (standard library only).

Reads the MDMP header and stream directory, then the thread list (each
thread's RIP and RSP from its AMD64 CONTEXT, the module RIP falls in, whether
RSP lies in the stack range saved with it), the module list, the system info
and the memory lists. Not an analyzer: it answers "is this dump usable?".

    python3 describe_minidump.py FILE.dmp...

Layout: the Win32 docs of MINIDUMP_HEADER, MINIDUMP_DIRECTORY,
MINIDUMP_THREAD, MINIDUMP_MODULE, MINIDUMP_SYSTEM_INFO, MINIDUMP_MEMORY64_LIST
and CONTEXT (x64: Rsp at 0x98, Rip at 0xF8).
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass
from pathlib import Path

SIGNATURE = b"MDMP"
STREAM_NAMES = {
    3: "ThreadList",
    4: "ModuleList",
    5: "MemoryList",
    6: "Exception",
    7: "SystemInfo",
    9: "Memory64List",
    12: "HandleData",
    14: "UnloadedModuleList",
    15: "MiscInfo",
    16: "MemoryInfoList",
    17: "ThreadInfoList",
    21: "SystemMemoryInfo",
    22: "ProcessVmCounters",
    24: "ThreadNames",
    0xFFF0: "WineElfModuleList",
}
_AMD64 = 9  # PROCESSOR_ARCHITECTURE_AMD64
_CONTEXT_RSP, _CONTEXT_RIP = 0x98, 0xF8


@dataclass(frozen=True)
class Module:
    base: int
    size: int
    name: str


class MinidumpError(Exception):
    """The file is not a minidump this reader understands."""


class Minidump:
    def __init__(self, data: bytes) -> None:
        if data[:4] != SIGNATURE:
            raise MinidumpError(f"signature {data[:4]!r}, want {SIGNATURE!r}")
        self.data = data
        version, count, rva = struct.unpack_from("<III", data, 4)
        self.version = version & 0xFFFF
        self.streams: dict[int, tuple[int, int]] = {}
        for i in range(count):
            kind, size, at = struct.unpack_from("<III", data, rva + 12 * i)
            if kind and at + size > len(data):
                raise MinidumpError(f"stream {kind} runs past the end of the file")
            self.streams.setdefault(kind, (at, size))

    def _u32(self, at: int) -> int:
        return int(struct.unpack_from("<I", self.data, at)[0])

    def _string(self, rva: int) -> str:
        length = self._u32(rva)
        return self.data[rva + 4 : rva + 4 + length].decode("utf-16-le", errors="replace")

    def modules(self) -> list[Module]:
        if 4 not in self.streams:
            return []
        at, _ = self.streams[4]
        out = []
        for i in range(self._u32(at)):
            base, size, _sum, _stamp, name_rva = struct.unpack_from(
                "<QIIII", self.data, at + 4 + 108 * i
            )
            out.append(Module(base, size, self._string(name_rva)))
        return out

    def system(self) -> str:
        if 7 not in self.streams:
            return "no SystemInfo stream"
        at, _ = self.streams[7]
        arch, _level, _rev, cpus, _product = struct.unpack_from("<HHHBB", self.data, at)
        major, minor, build = struct.unpack_from("<III", self.data, at + 8)
        name = "amd64" if arch == _AMD64 else f"architecture {arch}"
        return f"{name}, {cpus} processors, Windows {major}.{minor}.{build}"

    def threads(self, modules: list[Module]) -> list[str]:
        if 3 not in self.streams:
            return []
        at, _ = self.streams[3]
        lines = []
        for i in range(self._u32(at)):
            (
                tid,
                suspend,
                _cls,
                _prio,
                _teb,
                stack_start,
                stack_size,
                _stack_rva,
                ctx_size,
                ctx_rva,
            ) = struct.unpack_from("<IIIIQQIIII", self.data, at + 4 + 48 * i)
            rsp = struct.unpack_from("<Q", self.data, ctx_rva + _CONTEXT_RSP)[0]
            rip = struct.unpack_from("<Q", self.data, ctx_rva + _CONTEXT_RIP)[0]
            where = next(
                (m.name.rsplit("\\", 1)[-1] for m in modules if m.base <= rip < m.base + m.size),
                "?",
            )
            in_stack = stack_start <= rsp < stack_start + stack_size
            stack = f"{'in' if in_stack else 'OUTSIDE'} its {stack_size}-byte stack"
            lines.append(
                f"tid {tid:#06x} suspend {suspend} rip {rip:#x} in {where}, "
                f"rsp {rsp:#x} {stack} (context {ctx_size} bytes)"
            )
        return lines

    def memory(self) -> str:
        parts = []
        if 5 in self.streams:
            at, _ = self.streams[5]
            n = self._u32(at)
            total = sum(self._u32(at + 4 + 16 * i + 8) for i in range(n))
            parts.append(f"MemoryList {n} ranges, {total} bytes")
        if 9 in self.streams:
            at, _ = self.streams[9]
            n, _base = struct.unpack_from("<QQ", self.data, at)
            total = sum(
                struct.unpack_from("<Q", self.data, at + 16 + 16 * i + 8)[0] for i in range(n)
            )
            parts.append(f"Memory64List {n} ranges, {total} bytes")
        return "; ".join(parts) or "no memory stream"


def describe(path: Path) -> str:
    dump = Minidump(path.read_bytes())
    modules = dump.modules()
    names = ", ".join(f"{STREAM_NAMES.get(k, k)}" for k in sorted(dump.streams) if k)
    threads = dump.threads(modules)
    lines = [
        f"{path} ({path.stat().st_size} bytes): MDMP version {dump.version:#x}",
        f"  streams: {names}",
        f"  system: {dump.system()}",
        f"  memory: {dump.memory()}",
        f"  {len(modules)} modules: " + ", ".join(m.name.rsplit("\\", 1)[-1] for m in modules),
        f"  {len(threads)} threads:",
        *(f"    {t}" for t in threads),
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for arg in argv:
        try:
            print(describe(Path(arg)))
        except (OSError, MinidumpError, struct.error) as exc:
            print(f"{arg}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
