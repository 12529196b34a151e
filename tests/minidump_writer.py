"""Small, valid Windows minidumps of known content, written by the tests themselves.

Why: the public fixtures (shared/fixtures/minidumps) live outside the checkout, so tests
that must pass on any clone read dumps made here instead; the fixtures stay an extra layer
of evidence where they are present. The layout is that of minidumpapiset.h, stream after
stream behind the header and directory, as MiniDumpWriteDump lays them out; every field
the reader (``reprofarm_analyzer.minidump``) reads can be set, so a test states the truth
and checks that the reader and the triage find it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

AMD64, ARM64, X86 = 9, 12, 0  # SystemInfo ProcessorArchitecture codes
NTDLL_BASE = 0x7FFB_0B13_0000
_HEADER = "<4sIIIIIQ"
_MISC_INFO_4_SIZE = 232 + 520 + 520  # MINIDUMP_MISC_INFO_4: through DbgBldStr


@dataclass
class FakeModule:
    path: str
    base: int
    size: int
    timestamp: int


@dataclass
class FakeThread:
    """A thread with its raw CONTEXT and, optionally, the memory of its stack."""

    id: int
    context: bytes
    stack_start: int = 0
    stack: bytes = b""
    name: str | None = None


@dataclass
class FakeDump:
    arch: int = AMD64
    major: int = 10
    minor: int = 0
    build: int = 22631
    processors: int = 8
    platform: int = 2  # VER_PLATFORM_WIN32_NT
    csd: str = ""
    modules: list[FakeModule] = field(default_factory=list)
    threads: list[tuple[int, bytes] | FakeThread] = field(default_factory=list)
    memory: list[tuple[int, bytes]] = field(default_factory=list)  # Memory64List ranges
    exception: tuple[int, int, int] | None = None  # thread id, code, address
    process_id: int | None = None  # MiscInfo, with the build string below
    build_string: str | None = None


def amd64_context(rip: int, rsp: int = 0xE0_0000_1000) -> bytes:
    """An AMD64 CONTEXT (0x4D0 bytes) with ContextFlags, Rsp, Rbp and Rip set."""
    raw = bytearray(0x4D0)
    struct.pack_into("<I", raw, 0x30, 0x0010_001F)  # CONTEXT_AMD64 | CONTEXT_ALL
    struct.pack_into("<QQ", raw, 0x98, rsp, rsp + 0x80)
    struct.pack_into("<Q", raw, 0xF8, rip)
    return bytes(raw)


def arm64_context(pc: int) -> bytes:
    """ARM64_NT_CONTEXT laid out from winnt.h (see analyzer/tests/test_minidump_contexts.py)."""
    head = struct.pack("<II29QQQQQ", 0x0040_0007, 0, *[0] * 29, 0xE0_1080, 0x10, 0xE0_1000, pc)
    return head + bytes(512) + struct.pack("<II8I8Q2I2Q", *[0] * 22)


def ntdll(timestamp: int = 0x1234_5678, size: int = 0x1F8000) -> FakeModule:
    return FakeModule(r"C:\Windows\System32\ntdll.dll", NTDLL_BASE, size, timestamp)


def _threads(spec: FakeDump) -> list[FakeThread]:
    return [t if isinstance(t, FakeThread) else FakeThread(t[0], t[1]) for t in spec.threads]


def build_minidump(spec: FakeDump) -> bytes:
    """Header, directory, then each stream, laid out the way MiniDumpWriteDump does."""
    out = bytearray(32 + 12 * 8)  # room for every stream this writer makes
    streams: list[tuple[int, int, int]] = []

    def put(blob: bytes) -> int:
        at = len(out)
        out.extend(blob)
        return at

    def string(text: str) -> int:
        raw = text.encode("utf-16-le")
        return put(struct.pack("<I", len(raw)) + raw + b"\0\0")

    def stream(kind: int, blob: bytes) -> None:
        streams.append((kind, len(blob), put(blob)))

    csd = string(spec.csd)
    system = (spec.arch, 6, 0, spec.processors, 1, spec.major, spec.minor, spec.build)
    stream(7, struct.pack("<HHHBBIIIIIHH24x", *system, spec.platform, csd, 0, 0))
    names = [string(m.path) for m in spec.modules]
    body = struct.pack("<I", len(spec.modules))
    for module, name in zip(spec.modules, names, strict=True):
        body += struct.pack(
            "<QIIII13I8x8x16x", module.base, module.size, 0, module.timestamp, name, *[0] * 13
        )
    stream(4, body)
    threads = _threads(spec)
    contexts = [put(t.context) for t in threads]
    stacks = [put(t.stack) if t.stack else 0 for t in threads]
    body = struct.pack("<I", len(threads))
    for thread, context, stack in zip(threads, contexts, stacks, strict=True):
        body += struct.pack(
            "<IIIIQQIIII",
            thread.id,
            0,
            0x20,
            0,
            0,
            thread.stack_start,
            len(thread.stack),
            stack,
            len(thread.context),
            context,
        )
    stream(3, body)
    captured = [(t.stack_start, len(t.stack), at) for t, at in zip(threads, stacks, strict=True)]
    captured = [c for c in captured if c[1]]
    if captured:
        body = struct.pack("<I", len(captured))
        body += b"".join(struct.pack("<QII", start, size, at) for start, size, at in captured)
        stream(5, body)
    named = [(t.id, string(t.name)) for t in threads if t.name is not None]
    if named:
        stream(24, struct.pack("<I", len(named)) + b"".join(struct.pack("<IQ", *n) for n in named))
    if spec.exception:
        tid, code, address = spec.exception
        context = put(threads[0].context)
        exception = (tid, 0, code, 1, 0, address, 0, *[0] * 15, len(threads[0].context), context)
        stream(6, struct.pack("<IIIIQQI4x15QII", *exception))
    if spec.process_id is not None or spec.build_string is not None:
        stream(15, _misc_info(spec.process_id, spec.build_string))
    if spec.memory:
        listing = 16 + 16 * len(spec.memory)
        base = len(out) + listing
        body = struct.pack("<QQ", len(spec.memory), base)
        body += b"".join(struct.pack("<QQ", start, len(data)) for start, data in spec.memory)
        stream(9, body + b"".join(data for _, data in spec.memory))
    struct.pack_into(_HEADER, out, 0, b"MDMP", 0xA793, len(streams), 32, 0, 0x5F00_0000, 0)
    for i, (kind, size, rva) in enumerate(streams):
        struct.pack_into("<III", out, 32 + 12 * i, kind, size, rva)
    return bytes(out)


def _misc_info(process_id: int | None, build_string: str | None) -> bytes:
    """MINIDUMP_MISC_INFO_4 with MISC1_PROCESS_ID and MISC4_BUILDSTRING as given."""
    flags = (0x1 if process_id is not None else 0) | (0x100 if build_string is not None else 0)
    raw = bytearray(_MISC_INFO_4_SIZE)
    struct.pack_into("<III", raw, 0, _MISC_INFO_4_SIZE, flags, process_id or 0)
    if build_string is not None:
        text = build_string.encode("utf-16-le")[:518]
        raw[232 : 232 + len(text)] = text
    return bytes(raw)


# --- one dump of known content, for tests that only need "a real-shaped x64 dump" -------

KNOWN_THREAD_IDS = (5896, 4944, 14112, 11744, 12044, 13188)
KNOWN_OFFSETS = (0x99F74, 0x9BC44, 0x9D844, 0x9D844, 0x9D844, 0x9D844)
KNOWN_STACK = 0xE0_0000_0000
KNOWN_PROCESS_ID = 6256


def known_x64_crash() -> bytes:
    """An x64 process of Windows 10.0.17134 on 16 processors: six threads whose tops are in
    ntdll (no export names: the dump holds no image and has no sidecar), the first with
    0x200 bytes of stack captured, an invalid-parameter exception (0xC000000D) on it, and
    MiscInfo naming process 6256 and its build string. The shape of the public
    ``rust-minidump-invalid-parameter.dmp``, written here."""
    threads = [
        FakeThread(
            tid,
            amd64_context(NTDLL_BASE + offset, rsp=KNOWN_STACK + 0x100),
            stack_start=KNOWN_STACK if i == 0 else 0,
            stack=bytes(range(256)) * 2 if i == 0 else b"",
        )
        for i, (tid, offset) in enumerate(zip(KNOWN_THREAD_IDS, KNOWN_OFFSETS, strict=True))
    ]
    return build_minidump(
        FakeDump(
            build=17134,
            processors=16,
            modules=[
                FakeModule(r"C:\app\crash.exe", 0x7FF6_0000_0000, 0x20000, 0x5B00_0000),
                ntdll(),
            ],
            threads=list(threads),
            exception=(KNOWN_THREAD_IDS[0], 0xC000_000D, NTDLL_BASE + KNOWN_OFFSETS[0]),
            process_id=KNOWN_PROCESS_ID,
            build_string="Windows NT 10.0.17134.254",
        )
    )
