"""Every real dump in corpus/goroutines gets the label a person gave it in expected.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from reprofarm_analyzer.analysis import analyze_path
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


@pytest.mark.parametrize("name", DUMPS)
def test_corpus_dump_gets_its_expected_label(name: str) -> None:
    analysis = analyze_path(CORPUS / name)
    assert analysis.kind is DumpKind.GOROUTINES
    assert analysis.label is Label(EXPECTED[name]), (
        f"{name}: expected {EXPECTED[name]}, got {analysis.label.value} "
        f"({analysis.signature}); evidence: {[e.detail for e in analysis.evidence]}"
    )
