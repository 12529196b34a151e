"""Minidump triage: roles, labels, signatures, symbolisation and the hardware cross-check.

Which inputs are real: the public fixtures (shared/fixtures/minidumps) and Wine's real
``ntdll.dll`` (when the trixie Wine root is built here). ``build_minidump``
(tests/minidump_writer.py) makes synthetic dumps for rule tests, and where a synthetic dump
is paired with Wine's ntdll it records that DLL's own TimeDateStamp and SizeOfImage: it
describes a process that loaded that very file.
The export names in the rule tests' sidecars are made up, and said to be.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reprofarm_analyzer.minidump import parse_minidump
from reprofarm_analyzer.minidump_analysis import (
    MINIDUMP_RULES_VERSION,
    analyze_minidump,
    cross_check,
)
from reprofarm_analyzer.pe_exports import read_pe_file
from reprofarm_analyzer.sidecar import (
    ExportEntry,
    ExportSidecar,
    ModuleExports,
    build_sidecar,
    dump_sidecar,
)
from reprofarm_protocol.analysis import Label
from reprofarm_protocol.hardware import CpuInfo, HardwareInfo

from tests.capabilities import WINE_ROOT, public_minidumps, require
from tests.minidump_writer import (
    NTDLL_BASE,
    FakeDump,
    FakeModule,
    amd64_context,
    arm64_context,
    build_minidump,
    known_x64_crash,
    ntdll,
)

FIXTURES = public_minidumps()
WINE_NTDLL = [
    WINE_ROOT / "usr/lib/x86_64-linux-gnu/wine/x86_64-windows/ntdll.dll",
    WINE_ROOT / "usr/lib/x86_64-windows/ntdll.dll",
]


def made_up_sidecar(timestamp: int = 0x1234_5678, size: int = 0x1F8000) -> bytes:
    """An ntdll export table with made-up RVAs, 0x20 apart like x64 syscall stubs."""
    names = [
        "NtCancelIoFileEx",
        "NtReadFile",
        "NtWaitForSingleObject",
        "NtWriteFile",
        "RtlUserThreadStart",
    ]
    exports = [ExportEntry(name=n, rva=0x1000 + 0x20 * i) for i, n in enumerate(names)]
    exports.append(ExportEntry(name="ZwReadFile", rva=0x1020))  # an alias, as in real ntdll
    module = ModuleExports(
        module="ntdll",
        file_name="ntdll.dll",
        machine="amd64",
        file_version="10.0.22631.4460",
        sha256="0" * 64,
        timestamp=timestamp,
        size_of_image=size,
        exports=exports,
    )
    return dump_sidecar(ExportSidecar(modules=[module]))


CANCEL, READ, WAIT, WRITE, THREAD_START = (NTDLL_BASE + 0x1014 + 0x20 * i for i in range(5))


def hang(*tops: int, arch: str = "amd64") -> bytes:
    context = amd64_context if arch == "amd64" else arm64_context
    threads = [(100 * (i + 1), context(ip)) for i, ip in enumerate(tops)]
    return build_minidump(
        FakeDump(arch=9 if arch == "amd64" else 12, modules=[ntdll()], threads=threads)
    )


# --- rules ------------------------------------------------------------------------------


def test_cancel_thread_and_sync_reader_are_the_cancelioex_hang() -> None:
    analysis = analyze_minidump(hang(WAIT, CANCEL, READ), sidecar=made_up_sidecar())
    assert analysis.label is Label.CANCELIOEX_SYNC_IO
    assert analysis.signature == "cancelioex-sync-io:ntdll!NtCancelIoFileEx|ntdll!NtReadFile"
    assert analysis.rules_version == MINIDUMP_RULES_VERSION
    assert [(t.id, t.top, t.role) for t in analysis.threads] == [
        (100, "ntdll!NtWaitForSingleObject+0x14", "wait"),
        (200, "ntdll!NtCancelIoFileEx+0x14", "cancel-io"),
        (300, "ntdll!NtReadFile+0x14", "sync-read"),  # not ZwReadFile: Nt names win
    ]
    assert analysis.evidence[0].threads == [200, 300]
    assert analysis.evidence[0].frames == ["ntdll!NtCancelIoFileEx+0x14", "ntdll!NtReadFile+0x14"]
    assert (analysis.arch, analysis.os_build, analysis.processors) == ("amd64", "10.0.22631", 8)
    assert analysis.modules == ["ntdll"]
    assert analysis.problems == []


def test_a_sync_writer_completes_the_pattern_too_and_the_signature_has_no_ids() -> None:
    first = analyze_minidump(hang(CANCEL, WRITE), sidecar=made_up_sidecar())
    second = analyze_minidump(hang(WAIT, WRITE, WAIT, CANCEL), sidecar=made_up_sidecar())
    assert (
        first.signature
        == second.signature
        == "cancelioex-sync-io:ntdll!NtCancelIoFileEx|ntdll!NtWriteFile"
    )


def test_arm64_dump_is_triaged_from_its_arm64_contexts() -> None:
    analysis = analyze_minidump(hang(CANCEL, READ, arch="arm64"), sidecar=made_up_sidecar())
    assert analysis.arch == "arm64"
    assert analysis.label is Label.CANCELIOEX_SYNC_IO


def test_waiting_threads_alone_are_other_hang_and_say_the_goroutine_dump_decides() -> None:
    analysis = analyze_minidump(hang(WAIT, WAIT, THREAD_START), sidecar=made_up_sidecar())
    assert analysis.label is Label.OTHER_HANG
    assert analysis.signature == "other-hang:ntdll!NtWaitForSingleObject"
    assert analysis.evidence[0].rule == "minidump.waiting"
    assert analysis.evidence[0].threads == [100, 200]
    assert "goroutine dump decides" in analysis.evidence[0].detail
    assert analysis.threads[2].role is None


def test_a_lone_cancel_thread_is_reported_as_half_the_pattern() -> None:
    analysis = analyze_minidump(hang(CANCEL, WAIT), sidecar=made_up_sidecar())
    assert analysis.label is Label.OTHER_HANG
    rules = {e.rule: e for e in analysis.evidence}
    assert rules["minidump.partial-cancelioex"].threads == [100]


def test_an_address_far_past_an_export_gets_no_role() -> None:
    analysis = analyze_minidump(hang(NTDLL_BASE + 0x1020 + 0x400), sidecar=made_up_sidecar())
    assert analysis.threads[0].top == "ntdll!RtlUserThreadStart+0x3a0"
    assert analysis.threads[0].role is None
    assert analysis.signature == "other-hang:unnamed"


def test_crash_dump_is_no_hang_even_with_waiting_threads() -> None:
    threads = [(7, amd64_context(CANCEL)), (8, amd64_context(WAIT))]
    data = build_minidump(
        FakeDump(modules=[ntdll()], threads=threads, exception=(8, 0xC0000005, WAIT))
    )
    analysis = analyze_minidump(data, sidecar=made_up_sidecar())
    assert analysis.label is Label.NO_HANG
    assert analysis.signature == "no-hang:crash:0xc0000005:ntdll!NtWaitForSingleObject"
    assert "access violation" in analysis.evidence[0].detail


def test_a_debugger_break_in_is_not_a_crash() -> None:
    threads = [(7, amd64_context(WAIT))]
    data = build_minidump(
        FakeDump(modules=[ntdll()], threads=threads, exception=(7, 0x80000003, WAIT))
    )
    assert analyze_minidump(data, sidecar=made_up_sidecar()).label is Label.OTHER_HANG


def test_sidecar_of_another_build_is_not_used() -> None:
    analysis = analyze_minidump(hang(CANCEL, READ), sidecar=made_up_sidecar(timestamp=0x1234_5679))
    assert analysis.label is Label.OTHER_HANG
    assert [t.top for t in analysis.threads] == ["ntdll+0x1014", "ntdll+0x1034"]
    assert any("another build" in p for p in analysis.problems)


def test_unreadable_sidecar_is_a_problem_not_a_failure() -> None:
    analysis = analyze_minidump(hang(WAIT), sidecar=b'{"format": 1, "modules": "nope"}')
    assert analysis.threads[0].top == "ntdll+0x1054"
    assert any(p.startswith("export sidecar: modules:") for p in analysis.problems)


def test_unparseable_dump_is_reported_not_raised() -> None:
    analysis = analyze_minidump(b"MDMP" + bytes(10))
    assert analysis.label is Label.OTHER_HANG
    assert analysis.signature == "other-hang:unreadable-minidump"
    assert "header at offset 0x0" in analysis.problems[0]


# --- real fixtures ----------------------------------------------------------------------

needs_fixtures = pytest.mark.needs("public-minidumps")


@needs_fixtures
@pytest.mark.parametrize(
    ("name", "label", "signature"),
    [
        ("breakpad-tiny-exe-fastfail.dmp", Label.NO_HANG, "no-hang:crash:0xc0000409:tiny"),
        ("breakpad-write_av_non_canonical.dmp", Label.NO_HANG, "no-hang:crash:0xc0000005:crash"),
        ("breakpad-thread_name_list.dmp", Label.NO_HANG, "no-hang:crash:0xc0000005:allocer32"),
        ("rust-minidump-invalid-parameter.dmp", Label.NO_HANG, "no-hang:crash:0xc000000d:unknown"),
        ("breakpad-tiny-exe-with-cet-xsave.dmp", Label.OTHER_HANG, "other-hang:unnamed"),
        ("rust-minidump-linux-mini.dmp", Label.NO_HANG, "no-hang:crash:0xb:unknown"),
    ],
)
def test_public_dumps_get_their_label(name: str, label: Label, signature: str) -> None:
    analysis = analyze_minidump((FIXTURES / name).read_bytes())
    assert (analysis.label, analysis.signature) == (label, signature)


def test_a_written_crash_without_export_tables_has_module_offsets_as_tops() -> None:
    analysis = analyze_minidump(known_x64_crash())
    assert (analysis.label, analysis.signature) == (
        Label.NO_HANG,
        "no-hang:crash:0xc000000d:ntdll",  # the fault is in ntdll, which has no export names
    )
    assert [t.top for t in analysis.threads] == [
        "ntdll+0x99f74",
        "ntdll+0x9bc44",
        "ntdll+0x9d844",
        "ntdll+0x9d844",
        "ntdll+0x9d844",
        "ntdll+0x9d844",
    ]
    assert (analysis.arch, analysis.os_build, analysis.processors) == ("amd64", "10.0.17134", 16)
    assert any(p.startswith("ntdll: no export table") for p in analysis.problems)


@needs_fixtures
def test_fixture_tops_without_export_tables_are_module_offsets() -> None:
    analysis = analyze_minidump((FIXTURES / "rust-minidump-invalid-parameter.dmp").read_bytes())
    assert [t.top for t in analysis.threads] == [
        "ntdll+0x99f74",
        "ntdll+0x9bc44",
        "ntdll+0x9d844",
        "ntdll+0x9d844",
        "ntdll+0x9d844",
        "ntdll+0x9d844",
    ]
    assert any(p.startswith("ntdll: no export table") for p in analysis.problems)


@needs_fixtures
def test_fixture_dumps_do_not_hold_any_module_image() -> None:
    """Why export names in these tests come from a sidecar or Wine: the public dumps hold
    stacks and a little code, never a module's headers and export directory."""
    for path in FIXTURES.glob("*.dmp"):
        if "invalid-r" in path.name:
            continue
        dump = parse_minidump(path.read_bytes())
        assert all(dump.memory.read(m.base, 2) is None for m in dump.modules), path.name


def mutation_sources() -> dict[str, bytes]:
    """Dumps written here (always), and the public fixtures where they are present."""
    sources = {"written: known x64 crash": known_x64_crash(), "written: hang": hang(CANCEL, READ)}
    if FIXTURES.is_dir():
        sources |= {p.name: p.read_bytes() for p in sorted(FIXTURES.glob("*.dmp"))}
    return sources


MUTATION_SOURCES = mutation_sources()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(MUTATION_SOURCES)),
    edits=st.lists(st.tuples(st.integers(0, 20_000), st.integers(0, 255)), max_size=12),
)
def test_mutated_dumps_never_make_the_triage_raise(name: str, edits: list[tuple[int, int]]) -> None:
    data = bytearray(MUTATION_SOURCES[name])
    for at, value in edits:
        if at < len(data):
            data[at] = value
    analyze_minidump(bytes(data), sidecar=made_up_sidecar())


# --- Wine's real ntdll ------------------------------------------------------------------


def wine_ntdll() -> Path:
    require("wine-root")
    found = [path for path in WINE_NTDLL if path.is_file()]
    assert found, f"the Wine root has no x64 ntdll.dll at {WINE_NTDLL}"
    return found[0]


def test_sidecar_from_wine_ntdll_names_a_thread_of_a_process_that_loaded_it() -> None:
    path = wine_ntdll()
    pe = read_pe_file(path).image
    exports = {e.name: e.rva for e in pe.exports if e.name}
    module = FakeModule(str(path), NTDLL_BASE, pe.size_of_image, pe.timestamp)
    threads = [
        (1, amd64_context(NTDLL_BASE + exports["NtCancelIoFileEx"] + 0x14)),
        (2, amd64_context(NTDLL_BASE + exports["NtReadFile"] + 0x14)),
    ]
    data = build_minidump(FakeDump(modules=[module], threads=threads))
    analysis = analyze_minidump(data, sidecar=dump_sidecar(build_sidecar([path])))
    assert [t.top for t in analysis.threads] == [
        "ntdll!NtCancelIoFileEx+0x14",
        "ntdll!NtReadFile+0x14",
    ]
    assert analysis.label is Label.CANCELIOEX_SYNC_IO


def test_wine_ntdll_image_inside_a_full_memory_dump_names_threads_without_a_sidecar() -> None:
    path = wine_ntdll()
    pe = read_pe_file(path).image
    raw = path.read_bytes()
    image = bytearray(pe.size_of_image)  # map it the way the loader does: headers, sections
    image[:0x400] = raw[:0x400]
    for s in pe.sections:
        chunk = raw[s.raw_offset : s.raw_offset + min(s.raw_size, s.virtual_size or s.raw_size)]
        image[s.rva : s.rva + len(chunk)] = chunk
    exports = {e.name: e.rva for e in pe.exports if e.name}
    module = FakeModule(str(path), NTDLL_BASE, pe.size_of_image, pe.timestamp)
    wait = NTDLL_BASE + exports["NtWaitForSingleObject"] + 0x14
    data = build_minidump(
        FakeDump(
            modules=[module],
            threads=[(9, amd64_context(wait))],
            memory=[(NTDLL_BASE, bytes(image))],
        )
    )
    analysis = analyze_minidump(data)
    assert analysis.threads[0].top == "ntdll!NtWaitForSingleObject+0x14"
    assert analysis.threads[0].role == "wait"
    assert analysis.problems == []


@needs_fixtures
def test_wine_sidecar_is_not_paired_with_a_fixture_of_another_ntdll_build() -> None:
    sidecar = dump_sidecar(build_sidecar([wine_ntdll()]))
    analysis = analyze_minidump(
        (FIXTURES / "rust-minidump-invalid-parameter.dmp").read_bytes(), sidecar=sidecar
    )
    assert all(t.top.startswith("ntdll+0x") for t in analysis.threads)
    assert any("another build" in p and "0xa5a334d4" in p for p in analysis.problems)


# --- cross-check with the agent's hardware record ---------------------------------------


def hardware(**changes: object) -> HardwareInfo:
    record: dict[str, object] = {
        "os": "windows",
        "os_version": "10.0.22631.4460",
        "os_name": "Windows 11 Pro",
        "arch": "amd64",
        "python_arch": "amd64",
        "cpu_model": "test",
        "logical_cpus": 8,
        "physical_cores": 4,
        "packages": 1,
        "numa_nodes": 1,
        "processor_groups": 1,
        "efficiency_classes": [0],
        "hypervisor": "none",
        "memory_bytes": 1 << 34,
        "cpus": [CpuInfo(index=i, core=i // 2) for i in range(8)],
        "hostname": "lab-1",
        "fingerprint": "f" * 64,
    }
    record.update(changes)
    return HardwareInfo.model_validate(record)


def test_cross_check_agrees_with_a_matching_record() -> None:
    assert cross_check(analyze_minidump(hang(WAIT)), hardware()) == []


def test_cross_check_flags_architecture_processors_and_build() -> None:
    cpus = [CpuInfo(index=i, core=i) for i in range(12)]
    record = hardware(arch="arm64", logical_cpus=12, os_version="10.0.26100.2033", cpus=cpus)
    found = cross_check(analyze_minidump(hang(WAIT)), record)
    assert found == [
        "architecture: the dump says amd64 (the architecture its Python runs as), "
        "the agent's record arm64",
        "processors: the dump says 8, the agent's record 12 logical CPUs",
        "OS build: the dump says 10.0.22631, the agent's record 10.0.26100.2033",
    ]
