"""Every real dump in corpus/goroutines gets the label a person gave it in expected.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from reprofarm_analyzer.analysis import analyze_path
from reprofarm_analyzer.errors import NotADumpError
from reprofarm_protocol.analysis import DumpKind, Label

CORPUS = Path(__file__).parent / "corpus" / "goroutines"
EXPECTED: dict[str, str] = tomllib.loads((CORPUS / "expected.toml").read_text())["labels"]
DUMPS = sorted(p.name for p in CORPUS.glob("*.txt"))


def test_every_dump_has_an_expected_label_and_a_source() -> None:
    sources = (CORPUS / "SOURCES.md").read_text()
    assert set(DUMPS) == set(EXPECTED), "expected.toml and the dump files disagree"
    missing = [name for name in DUMPS if f"`{name}`" not in sources]
    assert missing == [], f"no SOURCES.md row for {missing}"


def test_corpus_has_at_least_twelve_dumps() -> None:
    assert len(DUMPS) >= 12


REFUSED = "refused"
"""The expected "label" of text that is no goroutine dump: refused, never no-hang."""


@pytest.mark.parametrize("name", [n for n in DUMPS if EXPECTED[n] != REFUSED])
def test_corpus_dump_gets_its_expected_label(name: str) -> None:
    analysis = analyze_path(CORPUS / name)
    assert analysis.kind is DumpKind.GOROUTINES
    assert analysis.label is Label(EXPECTED[name]), (
        f"{name}: expected {EXPECTED[name]}, got {analysis.label.value} "
        f"({analysis.signature}); evidence: {[e.detail for e in analysis.evidence]}"
    )


@pytest.mark.parametrize("name", [n for n in DUMPS if EXPECTED[n] == REFUSED])
def test_corpus_text_that_is_no_dump_is_refused(name: str) -> None:
    with pytest.raises(NotADumpError) as caught:
        analyze_path(CORPUS / name)
    assert "goroutine header" in caught.value.reason


def test_corpus_pprof_debug1_is_refused_with_a_pointer_to_debug2() -> None:
    with pytest.raises(NotADumpError) as caught:
        analyze_path(CORPUS / "testground-686-pprof-debug1-windows-readfile.txt")
    assert caught.value.reason.startswith("a pprof goroutine profile with debug=1")
    assert "/debug/pprof/goroutine?debug=2" in caught.value.reason


CRASH_KINDS = {
    "golang-go-11710-windows-cgo-exception.txt": "exception-0xc0000005",
    "go-wrk-28-windows-thread-limit.txt": "thread-limit",
    "golang-go-38382-test2json-goroutine-panic.txt": "panic",
    "golang-go-16069-reported-stuck-was-fault.txt": "fault",
    "kyleterry-tenyks-39-panic-idle-75179-minutes.txt": "panic",
    "btcsim-94-markdown-indented-panic.txt": "panic",
    "devto-reading-stack-traces-br-in-frame.txt": "panic",
}


@pytest.mark.parametrize("name", sorted(CRASH_KINDS))
def test_corpus_crash_names_its_kind(name: str) -> None:
    """A crash is no hang whatever its goroutines wait on, and says which crash it is."""
    analysis = analyze_path(CORPUS / name)
    assert analysis.signature == f"no-hang:crash:{CRASH_KINDS[name]}"
    assert analysis.stuck == []


def test_corpus_crash_after_52_idle_days_is_no_hang_and_keeps_its_idle_goroutines() -> None:
    """Goroutines parked for 75179 minutes are bystanders of the panic, not a hang."""
    analysis = analyze_path(CORPUS / "kyleterry-tenyks-39-panic-idle-75179-minutes.txt")
    assert (analysis.label, analysis.stuck) == (Label.NO_HANG, [])
    assert analysis.goroutines == 4


@pytest.mark.parametrize(
    ("name", "frames_before_header"),
    [
        ("alkasir-58-cut-top-connection-deadlock.txt", 9),
        ("golang-go-10698-cut-top-unindented-mutex-306-minutes.txt", 6),
    ],
)
def test_corpus_cut_top_reads_the_frames_before_the_first_header(
    name: str, frames_before_header: int
) -> None:
    analysis = analyze_path(CORPUS / name)
    assert analysis.problems[0].startswith(f"{frames_before_header} frames before the first")
    assert any(g.state == "unknown" for g in analysis.stuck), analysis.stuck
    assert analysis.confidence.value == "partial"


def test_corpus_br_inside_a_frame_splits_its_two_lines() -> None:
    """A web page's `<br/>` between a frame's function and its source line."""
    analysis = analyze_path(CORPUS / "devto-reading-stack-traces-br-in-frame.txt")
    assert analysis.problems == ["`<br>` read as line breaks (a page's source)"]


def test_corpus_wrapped_paste_keeps_the_frames_after_a_blank_line() -> None:
    analysis = analyze_path(CORPUS / "golang-go-15009-windows-wrapped-paste.txt")
    stuck = {g.state: g.frames for g in analysis.stuck}
    assert "network.(*Connection).serveLoop" in " ".join(stuck["semacquire"])
    assert any("wrapped onto two lines" in p for p in analysis.problems)
    assert analysis.confidence.value == "partial"


def test_the_add_command_copies_a_dump_with_its_label_and_source(tmp_path) -> None:
    """The one documented command, run on a copy of the corpus folder."""
    import shutil
    import subprocess
    import sys

    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS.parent, corpus, ignore=shutil.ignore_patterns("__pycache__"))
    dump = tmp_path / "goroutines-1.txt"
    dump.write_bytes((CORPUS / "hangtest-control-deadlock-stall-go1.27-linux.txt").read_bytes())
    args = ["--name", "farm-run-7-control", "--label", "control-deadlock", "--source", "run 7"]
    done = subprocess.run(
        [sys.executable, str(corpus / "add.py"), str(dump), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "the analyzer says control-deadlock" in done.stdout
    added = corpus / "goroutines"
    assert (added / "farm-run-7-control.txt").read_bytes() == dump.read_bytes()
    labels = tomllib.loads((added / "expected.toml").read_text())["labels"]
    assert labels["farm-run-7-control.txt"] == "control-deadlock"
    assert "`farm-run-7-control.txt` | run 7" in (added / "SOURCES.md").read_text()
