"""The minidump reader against dumps of known content written here (tests/minidump_writer.py),
against real public dumps (shared/fixtures/minidumps, from breakpad and rust-minidump; see its
README) where they are present, and against random and mutated bytes."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reprofarm_analyzer.contexts import decode_context
from reprofarm_analyzer.minidump import MinidumpError, parse_minidump

from tests.capabilities import public_minidumps
from tests.minidump_writer import (
    KNOWN_PROCESS_ID,
    KNOWN_STACK,
    KNOWN_THREAD_IDS,
    FakeDump,
    FakeThread,
    amd64_context,
    build_minidump,
    known_x64_crash,
    ntdll,
)

FIXTURES = public_minidumps()
WRITTEN = "written: known x64 crash"
needs_fixtures = pytest.mark.needs("public-minidumps")


def fixture(name: str) -> bytes:
    if name == WRITTEN:
        return known_x64_crash()
    return (FIXTURES / name).read_bytes()


def tops(name: str) -> list[tuple[int, str | None]]:
    """Each thread's id and the module its instruction pointer is in."""
    dump = parse_minidump(fixture(name))
    arch = dump.system_info.arch if dump.system_info else None
    placed = []
    for thread in dump.threads:
        module = dump.module_at(decode_context(thread.context, arch).ip)
        placed.append((thread.id, module.name if module else None))
    return placed


def test_a_written_dump_reads_back_as_written() -> None:
    dump = parse_minidump(known_x64_crash())
    assert dump.system_info is not None
    assert (dump.system_info.arch, dump.system_info.os_build) == ("amd64", "10.0.17134")
    assert dump.system_info.processors == 16
    assert dump.system_info.is_windows
    assert [m.name for m in dump.modules] == ["crash", "ntdll"]
    assert tops(WRITTEN) == [(tid, "ntdll") for tid in KNOWN_THREAD_IDS]
    assert dump.exception is not None
    assert (dump.exception.thread_id, dump.exception.code) == (KNOWN_THREAD_IDS[0], 0xC000000D)
    assert dump.misc is not None
    assert (dump.misc.process_id, dump.misc.build_string) == (
        KNOWN_PROCESS_ID,
        "Windows NT 10.0.17134.254",
    )


def test_a_written_stack_is_readable_by_address_and_not_past_its_end() -> None:
    dump = parse_minidump(known_x64_crash())
    thread = dump.threads[0]
    assert (thread.stack_start, thread.stack_size) == (KNOWN_STACK, 0x200)
    assert dump.memory.read(KNOWN_STACK + 0xFE, 4) == bytes([0xFE, 0xFF, 0x00, 0x01])
    assert dump.memory.read(KNOWN_STACK + 0x200 - 4, 8) is None


def test_written_thread_names_are_read() -> None:
    threads = [
        FakeThread(7, amd64_context(0x1000), name="main thread"),
        FakeThread(8, amd64_context(0x1000)),
    ]
    dump = parse_minidump(build_minidump(FakeDump(modules=[ntdll()], threads=list(threads))))
    assert {t.id: t.name for t in dump.threads} == {7: "main thread", 8: None}


def test_a_written_thread_count_larger_than_its_stream_is_named() -> None:
    data = bytearray(known_x64_crash())
    dump = parse_minidump(bytes(data))
    at = _stream_rva(bytes(data), 3)
    struct.pack_into("<I", data, at, 1000)
    with pytest.raises(
        MinidumpError,
        match=rf"ThreadList stream at offset {at:#x}: 1000 entries of 48 bytes need 48004 bytes, "
        rf"the stream has {4 + 48 * len(dump.threads)}",
    ):
        parse_minidump(bytes(data))


def test_a_truncated_written_dump_raises_a_minidump_error() -> None:
    data = known_x64_crash()
    with pytest.raises(MinidumpError, match="past the end of the file"):
        parse_minidump(data[: len(data) // 2])


def _stream_rva(data: bytes, kind: int) -> int:
    count, directory = struct.unpack_from("<II", data, 8)
    for i in range(count):
        found, _, rva = struct.unpack_from("<III", data, directory + 12 * i)
        if found == kind:
            return int(rva)
    raise AssertionError(f"no stream of type {kind}")


@needs_fixtures
def test_invalid_parameter_dump_has_six_threads_all_in_ntdll() -> None:
    dump = parse_minidump(fixture("rust-minidump-invalid-parameter.dmp"))
    assert dump.system_info is not None
    assert (dump.system_info.arch, dump.system_info.os_build) == ("amd64", "10.0.17134")
    assert dump.system_info.processors == 16
    assert len(dump.modules) == 31
    assert dump.modules[1].name == "ntdll"
    assert dump.modules[1].file_version == "6.2.17134.254"
    assert tops("rust-minidump-invalid-parameter.dmp") == [
        (5896, "ntdll"),
        (4944, "ntdll"),
        (14112, "ntdll"),
        (11744, "ntdll"),
        (12044, "ntdll"),
        (13188, "ntdll"),
    ]
    assert dump.exception is not None
    assert (dump.exception.thread_id, dump.exception.code) == (5896, 0xC000000D)
    assert dump.misc is not None
    assert dump.misc.process_id == 6256


@needs_fixtures
def test_cet_xsave_dump_reads_its_one_thread_and_25_modules() -> None:
    dump = parse_minidump(fixture("breakpad-tiny-exe-with-cet-xsave.dmp"))
    assert dump.system_info is not None
    assert (dump.system_info.arch, dump.system_info.os_build) == ("amd64", "10.0.22000")
    assert len(dump.modules) == 25
    # An XSTATE context is longer than a plain CONTEXT: the reader keeps it whole.
    assert len(dump.threads[0].context) > 0x4D0
    assert tops("breakpad-tiny-exe-with-cet-xsave.dmp") == [(1468, "ntdll")]
    assert dump.exception is None
    assert dump.misc is not None
    assert dump.misc.build_string == "Windows NT 10.0.22000.282"


@needs_fixtures
def test_fastfail_dump_places_three_pool_threads_at_one_ntdll_address() -> None:
    dump = parse_minidump(fixture("breakpad-tiny-exe-fastfail.dmp"))
    ips = [decode_context(t.context, "amd64").ip for t in dump.threads]
    assert tops("breakpad-tiny-exe-fastfail.dmp") == [
        (24440, "tiny"),
        (36104, "ntdll"),
        (26620, "ntdll"),
        (34828, "ntdll"),
    ]
    assert len(set(ips[1:])) == 1
    assert dump.exception is not None
    assert dump.exception.code == 0xC0000409
    assert ips[0] == dump.exception.address


@needs_fixtures
def test_write_av_dump_has_two_threads_in_ntdll_and_an_access_violation() -> None:
    dump = parse_minidump(fixture("breakpad-write_av_non_canonical.dmp"))
    assert dump.system_info is not None
    assert dump.system_info.os_build == "10.0.19042"
    assert [m for _, m in tops("breakpad-write_av_non_canonical.dmp")] == ["ntdll", "ntdll"]
    assert dump.exception is not None
    assert dump.exception.code == 0xC0000005


@needs_fixtures
def test_thread_names_are_read_and_decoy_modules_do_not_capture_ntdll_threads() -> None:
    dump = parse_minidump(fixture("breakpad-thread_name_list.dmp"))
    assert dump.system_info is not None
    assert dump.system_info.arch == "386"
    assert dump.system_info.build_number == 17763
    names = {t.id: t.name for t in dump.threads}
    assert names[6564] == "main thread"
    assert names[8820] == "sleep thread"
    assert names[10976] == "overflow thread"
    assert names[3296] is None
    module_names = [m.name for m in dump.modules]
    assert "ntd1l" in module_names  # the decoy is there...
    # ...yet every thread sits in the real ntdll, found by address, not by name.
    assert {m for _, m in tops("breakpad-thread_name_list.dmp")} == {"ntdll"}


@needs_fixtures
def test_linux_breakpad_dump_parses_but_is_not_windows() -> None:
    dump = parse_minidump(fixture("rust-minidump-linux-mini.dmp"))
    assert dump.system_info is not None
    assert not dump.system_info.is_windows
    assert dump.system_info.csd_version.startswith("Linux 4.9.60")
    assert tops("rust-minidump-linux-mini.dmp") == [(1304, "crash")]


@needs_fixtures
def test_captured_stack_memory_is_readable_by_address() -> None:
    dump = parse_minidump(fixture("rust-minidump-invalid-parameter.dmp"))
    thread = dump.threads[0]
    stack = dump.memory.read(thread.stack_start, thread.stack_size)
    assert stack is not None
    assert len(stack) == thread.stack_size
    assert dump.memory.read(thread.stack_start + thread.stack_size - 4, 8) is None


@needs_fixtures
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("rust-minidump-invalid-range.dmp", r"stream 0 \(type 0xa793504d\).*past the end"),
        ("rust-minidump-invalid-record-count.dmp", r"stream 0 .*past the end of the file"),
    ],
)
def test_malformed_public_dumps_raise_a_minidump_error_naming_the_offset(
    name: str, expected: str
) -> None:
    with pytest.raises(MinidumpError, match=expected):
        parse_minidump(fixture(name))


@needs_fixtures
def test_thread_count_larger_than_its_stream_is_named() -> None:
    data = bytearray(fixture("rust-minidump-invalid-parameter.dmp"))
    struct.pack_into("<I", data, 1788, 1000)  # the ThreadList stream's count (6 threads)
    with pytest.raises(
        MinidumpError,
        match=r"ThreadList stream at offset 0x6fc: 1000 entries of 48 bytes need 48004 bytes, "
        r"the stream has 292",
    ):
        parse_minidump(bytes(data))


@needs_fixtures
def test_truncated_dump_raises_a_minidump_error() -> None:
    data = fixture("rust-minidump-invalid-parameter.dmp")
    with pytest.raises(MinidumpError, match="past the end of the file"):
        parse_minidump(data[: len(data) // 2])


def test_wrong_signature_is_named() -> None:
    with pytest.raises(MinidumpError, match="not a minidump: signature b'PK"):
        parse_minidump(b"PK\x03\x04" + bytes(60))


ALL = [WRITTEN, *sorted(p.name for p in FIXTURES.glob("*.dmp"))]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_parse_or_raise_minidump_error(data: bytes) -> None:
    with contextlib.suppress(MinidumpError):
        parse_minidump(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(ALL),
    edits=st.lists(st.tuples(st.integers(0, 20_000), st.integers(0, 255)), max_size=12),
    cut=st.one_of(st.none(), st.integers(0, 100_000)),
)
def test_mutated_dumps_parse_or_raise_minidump_error(
    name: str, edits: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(fixture(name))
    for at, value in edits:  # the directory and most stream headers are in the first 20 KB
        if at < len(data):
            data[at] = value
    with contextlib.suppress(MinidumpError):
        parse_minidump(bytes(data[:cut]))
