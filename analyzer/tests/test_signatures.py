"""Signatures depend on function names only: the same stacks with other goroutine ids,
addresses, offsets and wait times give the same signature. Shown on the real corpus by
rewriting those numbers programmatically."""

from __future__ import annotations

import random
import re
import tomllib
from pathlib import Path

import pytest
from reprofarm_analyzer.analysis import analyze_goroutines

CORPUS = Path(__file__).parent / "corpus" / "goroutines"
_REFUSED = {
    name
    for name, label in tomllib.loads((CORPUS / "expected.toml").read_text())["labels"].items()
    if label == "refused"
}
DUMPS = sorted(p for p in CORPUS.glob("*.txt") if p.name not in _REFUSED)

_HEADER_ID = re.compile(r"(goroutine |in goroutine )(\d+)")
_HEX = re.compile(r"(?<!Exception )0x[0-9a-fA-F]+")
"""Addresses and offsets; a Windows exception code (``Exception 0xc0000005``) is an NTSTATUS,
the same in every run of one crash, and named in the signature."""
_MINUTES = re.compile(r"(\d+) minutes")
_LINE = re.compile(r"(\.(?:go|s|c)):(\d+)")


def disguise(text: str, seed: int) -> str:
    """Another run of the same hang: new ids (kept distinct), addresses, offsets, minutes
    and source line numbers."""
    rng = random.Random(seed)
    shift = rng.randrange(1, 10_000)
    text = _HEADER_ID.sub(lambda m: f"{m.group(1)}{int(m.group(2)) + shift}", text)
    text = _HEX.sub(lambda m: hex(rng.randrange(1, 2**40)), text)
    text = _MINUTES.sub(lambda m: f"{int(m.group(1)) + rng.randrange(1, 500)} minutes", text)
    return _LINE.sub(lambda m: f"{m.group(1)}:{rng.randrange(1, 5000)}", text)


@pytest.mark.parametrize("path", DUMPS, ids=lambda p: p.name)
@pytest.mark.parametrize("seed", [1, 2])
def test_signature_survives_new_ids_addresses_and_minutes(path: Path, seed: int) -> None:
    text = path.read_text()
    disguised = disguise(text, seed)
    assert disguised != text or "0x" not in text
    before, after = analyze_goroutines(text), analyze_goroutines(disguised)
    assert (after.label, after.signature) == (before.label, before.signature)
    assert [(g.count, g.state, g.frames) for g in after.stuck] == [
        (g.count, g.state, g.frames) for g in before.stuck
    ]


def test_signature_changes_when_a_function_changes() -> None:
    text = (CORPUS / "hangtest-control-deadlock-stall-go1.27-linux.txt").read_text()
    renamed = text.replace("main.lockRightThenLeft", "main.lockRightThenLeftRenamed")
    assert analyze_goroutines(renamed).signature != analyze_goroutines(text).signature


def test_identical_stacks_collapse_into_one_group() -> None:
    text = (CORPUS / "hangtest-control-deadlock-stall-go1.27-linux.txt").read_text()
    groups = analyze_goroutines(text).stuck
    assert [(g.count, g.state) for g in groups] == [
        (10, "sync.Mutex.Lock"),
        (10, "sync.Mutex.Lock"),
    ]
