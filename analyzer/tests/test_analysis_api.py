"""The analyzer's front door: kind detection, dispatch, run folders and a run's verdict."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest
from reprofarm_analyzer.analysis import (
    analyze_bytes,
    analyze_goroutine_dumps,
    analyze_goroutines,
    analyze_path,
    analyze_run_folder,
    combine,
    detect_kind,
)
from reprofarm_analyzer.errors import AnalyzerError, NotADumpError
from reprofarm_protocol.analysis import Analysis, DumpKind, Label

from tests.minidump_writer import known_x64_crash

CORPUS = Path(__file__).parent / "corpus" / "goroutines"
CONTROL = CORPUS / "hangtest-control-deadlock-stall-go1.27-linux.txt"
HEALTHY = CORPUS / "hangtest-pipe-close-race-sigquit-go1.27-linux.txt"


def elf_header(e_type: int) -> bytes:
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)  # 64-bit, little-endian, version 1
    return ident + struct.pack("<HH", e_type, 62) + bytes(44)


def verdict(label: Label, kind: DumpKind = DumpKind.GOROUTINES) -> Analysis:
    return Analysis(
        kind=kind, label=label, signature=f"{label.value}:{kind.value}", rules_version=1
    )


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"MDMP\x93\xa7" + bytes(26), DumpKind.MINIDUMP),
        (elf_header(4), DumpKind.CORE),
        (elf_header(2), None),
        (b"noise\ngoroutine 1 [running]:\nmain.main()\n", DumpKind.GOROUTINES),
        (b'{"event":"start","v":1}\n', None),
        (b"", None),
    ],
)
def test_detect_kind(data: bytes, kind: DumpKind | None) -> None:
    assert detect_kind(data) == kind


def test_goroutine_bytes_are_analysed_as_text() -> None:
    analysis = analyze_bytes(CONTROL.read_bytes(), name=CONTROL.name)
    assert (analysis.kind, analysis.label) == (DumpKind.GOROUTINES, Label.CONTROL_DEADLOCK)


def test_minidump_bytes_go_to_the_minidump_reader() -> None:
    module = pytest.importorskip("reprofarm_analyzer.minidump_analysis")
    data = b"MDMP" + bytes(200)
    assert analyze_bytes(data, name="x.dmp") == module.analyze_minidump(data)


def test_core_files_go_to_the_core_reader_by_path(tmp_path: Path) -> None:
    module = pytest.importorskip("reprofarm_analyzer.cores")
    core = tmp_path / "process-1.4242"
    core.write_bytes(elf_header(4))
    analysis = analyze_path(core)
    assert analysis.kind is DumpKind.CORE
    assert analysis == module.analyze_core(core)


def test_files_of_no_dump_kind_raise_not_a_dump(tmp_path: Path) -> None:
    events = tmp_path / "stdout.jsonl"
    events.write_text('{"event":"start","v":1}\n')
    exe = tmp_path / "hangtest"
    exe.write_bytes(elf_header(2))
    for path in (events, exe):
        with pytest.raises(NotADumpError) as caught:
            analyze_path(path)
        assert caught.value.path == path
        assert caught.value.reason
        assert isinstance(caught.value, AnalyzerError)


def test_text_without_goroutines_is_refused_not_no_hang() -> None:
    """Unreadable text is refused (the CLI's exit 2, the api's 422), never ``no-hang``."""
    for text in ("hello\n", "Close -> CancelIoEx -> waits for ReadFile <- stuck\n", ""):
        with pytest.raises(NotADumpError) as caught:
            analyze_goroutines(text)
        assert "goroutine header" in caught.value.reason, caught.value.reason


def test_several_dumps_in_one_text_give_the_most_specific_label() -> None:
    text = CONTROL.read_text() + "\npanic: boom\n\n" + HEALTHY.read_text()
    assert [a.label for a in analyze_goroutine_dumps(text)] == [
        Label.CONTROL_DEADLOCK,
        Label.NO_HANG,
    ]
    combined = analyze_goroutines(text)
    assert combined.label is Label.CONTROL_DEADLOCK
    assert combined.evidence[0].rule == "dumps"


def test_run_folder_reads_goroutine_dumps_and_skips_the_rest(tmp_path: Path) -> None:
    shutil.copy(CONTROL, tmp_path / "goroutines-22673-1-stall.txt")
    (tmp_path / "stdout.jsonl").write_text('{"event":"stall","v":1}\n')
    (tmp_path / "result.json").write_text("{}")
    (tmp_path / "stderr.txt").write_text("")
    analyses = analyze_run_folder(tmp_path)
    assert [a.label for a in analyses] == [Label.CONTROL_DEADLOCK]


def test_combine_prefers_goroutine_dumps_over_process_dumps() -> None:
    process = verdict(Label.CANCELIOEX_SYNC_IO, DumpKind.MINIDUMP)
    goroutines = verdict(Label.OTHER_HANG)
    assert combine([process, goroutines]) == (Label.OTHER_HANG, "other-hang:goroutines")


def test_combine_uses_process_dumps_without_goroutine_dumps() -> None:
    analyses = [
        verdict(Label.OTHER_HANG, DumpKind.CORE),
        verdict(Label.CANCELIOEX_SYNC_IO, DumpKind.MINIDUMP),
    ]
    assert combine(analyses) == (Label.CANCELIOEX_SYNC_IO, "cancelioex-sync-io:minidump")


def test_combine_takes_the_most_specific_and_then_the_later() -> None:
    first, second = verdict(Label.OTHER_HANG), verdict(Label.OTHER_HANG)
    second = second.model_copy(update={"signature": "other-hang:later"})
    assert combine([first, verdict(Label.NO_HANG), second]) == (
        Label.OTHER_HANG,
        "other-hang:later",
    )


def test_combine_needs_an_analysis() -> None:
    with pytest.raises(ValueError, match="at least one"):
        combine([])


def test_run_folder_hands_a_minidump_its_export_sidecar(tmp_path: Path) -> None:
    module = pytest.importorskip("reprofarm_analyzer.minidump_analysis")
    dump = tmp_path / "process-1.dmp"
    dump.write_bytes(known_x64_crash())
    sidecar = tmp_path / "process-1.dmp.exports.json"
    sidecar.write_text("not a sidecar")
    (analysis,) = analyze_run_folder(tmp_path)
    with_sidecar = module.analyze_minidump(dump.read_bytes(), sidecar=sidecar.read_bytes())
    assert analysis == with_sidecar
    assert analysis != module.analyze_minidump(dump.read_bytes())
