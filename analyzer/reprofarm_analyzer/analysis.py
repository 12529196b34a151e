"""The analyzer's front door: what is this file, and what does it show?

``analyze_path`` and ``analyze_bytes`` tell the dump kinds apart by their first bytes and
hand each to its reader: goroutine dumps (text) to ``goroutine_classify`` here, Windows
minidumps to ``minidump_analysis``, Linux cores to ``cores``. The process-dump readers are
imported only when such a file turns up, so reading goroutine dumps needs none of their
dependencies. ``analyze_run_folder`` reads what ``reprofarm run`` leaves in a run folder and
``combine`` turns a run's analyses into the run's one label and signature.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from reprofarm_protocol.analysis import (
    Analysis,
    AnalysisLimits,
    Confidence,
    DumpKind,
    Evidence,
    Label,
)

from reprofarm_analyzer.compressed import size_limit
from reprofarm_analyzer.errors import AnalyzerUnavailableError, DumpLimitError, NotADumpError
from reprofarm_analyzer.goroutine_classify import classify_dump
from reprofarm_analyzer.goroutines import parse_goroutine_dumps
from reprofarm_analyzer.pasted import unwrap

_ELF_CORE = 4  # e_type ET_CORE, elf(5)
_HEADER_BYTES = re.compile(
    rb"goroutine \d+(?: gp=0x[0-9a-fA-F]+)?(?: m=(?:\d+|nil))?(?: mp=0x[0-9a-fA-F]+)?"
    rb" \[[^\]\n]{0,200}\](?: \{[^}\n]{0,200}\})?:"
)
_FRAME_BYTES = re.compile(rb"\)[ \t\r]*\n[ \t]*[^\s]+\.(?:go|s):\d+")
"""A Go frame (``pkg.f(...)`` over ``\tfile.go:12``): a stack pasted without its header."""
_CORE_NAME = re.compile(r"process-\d+\.\d+$")
LOOKED_FOR = (
    "looked for a minidump (MDMP) or ELF core header, a goroutine header"
    " (`goroutine N [state]:`), Go frames (`pkg.fn(...)` over `\\tfile.go:N`), in plain"
    " text, HTML or `go test -json` output; found none"
)
"""What an unreadable text is told: the one message of the CLI (exit 2) and the api (422)."""
_PPROF_DEBUG1 = re.compile(r"^goroutine profile: total \d+\s*$", re.MULTILINE)
"""``/debug/pprof/goroutine?debug=1`` (``runtime/pprof.writeGoroutine``, ``printCountProfile``):
stacks counted by program counter, with neither goroutine ids nor states. Refused, with a
pointer to the form that is a traceback."""
PPROF_DEBUG1 = (
    "a pprof goroutine profile with debug=1 (`goroutine profile: total N`, stacks counted by"
    " program counter, no goroutine states): not a traceback; fetch"
    " /debug/pprof/goroutine?debug=2 instead"
)
SIDECAR_SUFFIX = ".exports.json"
"""Name of a minidump's export sidecar: ``process-1.dmp`` -> ``process-1.dmp.exports.json``."""

SPECIFICITY = (
    Label.CANCELIOEX_SYNC_IO,
    Label.CLOSE_WAITS_SYNC_IO,
    Label.CONTROL_DEADLOCK,
    Label.OTHER_HANG,
    Label.NO_HANG,
)
"""Most specific first: when several dumps of one run disagree, the most specific wins."""


def detect_kind(data: bytes) -> DumpKind | None:
    """``MDMP`` -> minidump; an ELF header with e_type ET_CORE -> core; text holding a
    goroutine header -> goroutines; anything else (an ELF executable, JSON lines) -> None."""
    if data.startswith(b"MDMP"):
        return DumpKind.MINIDUMP
    if data.startswith(b"\x7fELF"):
        return DumpKind.CORE if _elf_type(data) == _ELF_CORE else None
    if _HEADER_BYTES.search(data) or _FRAME_BYTES.search(data):
        return DumpKind.GOROUTINES
    return None


def _elf_type(data: bytes) -> int | None:
    if len(data) < 18:
        return None
    # EI_DATA: 1 little-endian, 2 big-endian.
    return int.from_bytes(data[16:18], "little" if data[5] == 1 else "big")


def analyze_goroutine_dumps(text: str) -> list[Analysis]:
    """One analysis per dump in ``text`` (a log can hold several), in order; a test2json
    or HTML wrapping is taken off first and said in each one's ``problems`` (each package
    of a ``go test -json`` log is read apart: its dumps never merge with another's)."""
    unwrapped = unwrap(text)
    # A dump shows at least one frame: "goroutine 9 [syscall]: Close -> CancelIoEx" is a
    # person's summary of a stack, not a stack, and is refused like any other prose.
    dumps = [
        dump
        for part in unwrapped.parts
        for dump in parse_goroutine_dumps(part)
        if any(g.frames for g in dump.goroutines)
    ]
    analyses = [classify_dump(dump) for dump in dumps]
    if not unwrapped.notes:
        return analyses
    return [_repaired(a, unwrapped.notes) for a in analyses]


def _repaired(analysis: Analysis, notes: list[str]) -> Analysis:
    confidence = analysis.confidence
    if confidence is Confidence.STRONG:
        confidence = Confidence.PARTIAL
    return analysis.model_copy(
        update={"problems": [*notes, *analysis.problems], "confidence": confidence}
    )


def analyze_goroutines(text: str, *, name: str = "<text>") -> Analysis:
    """The analysis of the goroutine dump(s) in ``text``; the most specific one when the
    text holds several (a later dump wins a tie: it shows the hang for longer).

    Raises ``NotADumpError`` when the text holds no goroutine at all: unreadable text is
    refused, never called ``no-hang``."""
    analyses = analyze_goroutine_dumps(text)
    if not analyses:
        pprof = "goroutine profile: " in text and _PPROF_DEBUG1.search(text) is not None
        raise NotADumpError(name, f"{PPROF_DEBUG1}; {LOOKED_FOR}" if pprof else LOOKED_FOR)
    index = _most_specific(analyses)
    chosen = analyses[index]
    if len(analyses) == 1:
        return chosen
    note = Evidence(
        rule="dumps",
        detail=f"the text holds {len(analyses)} dumps; dump {index + 1} gives the label",
    )
    return chosen.model_copy(update={"evidence": [note, *chosen.evidence]})


def _from_utf16(data: bytes) -> bytes:
    """UTF-16 text (with its byte-order mark) as UTF-8: Windows PowerShell 5.1 writes
    `go test > log.txt` so, and its zero bytes would otherwise read as binary."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace").encode("utf-8")
    return data


def analyze_bytes(data: bytes, *, name: str, sidecar: bytes | None = None) -> Analysis:
    """Analyse a file's content; ``name`` is only for messages. ``sidecar`` is the export
    sidecar uploaded beside a minidump (ignored for other kinds).

    Raises ``NotADumpError`` for content of no known kind, and ``AnalyzerUnavailableError``
    when the reader of its kind cannot be imported.
    """
    data = _from_utf16(data)
    kind = detect_kind(data)
    if kind is None and (b"\0" in data[:4096] or data.startswith(b"\x7fELF")):
        raise NotADumpError(name, LOOKED_FOR)  # binary: no wrapping can hide a dump in it
    if kind is DumpKind.GOROUTINES or kind is None:
        return analyze_goroutines(data.decode("utf-8", errors="replace"), name=name)
    if kind is DumpKind.MINIDUMP:
        return _minidump(data, name, sidecar)
    with tempfile.TemporaryDirectory(prefix="reprofarm-core-") as tmp:
        path = Path(tmp) / "core"
        path.write_bytes(data)
        return _core(path, name)


def analyze_path(
    path: Path | str, *, sidecar: Path | None = None, limits: AnalysisLimits | None = None
) -> Analysis:
    """Analyse a file on disk. Cores are handed over by path (they are gigabytes); the
    other kinds are read whole, so a file past its kind's size limit is refused
    (``DumpLimitError``) before it is read. Other errors as for ``analyze_bytes``."""
    path = Path(path)
    limits = limits or AnalysisLimits()
    with path.open("rb") as f:
        head = f.read(64)
    size = path.stat().st_size
    most, what = size_limit(head, limits)
    if size > most:
        raise DumpLimitError(path, f"{size:,} bytes, past the limit of {most:,} for {what}")
    if head.startswith(b"MDMP"):
        side = sidecar.read_bytes() if sidecar is not None else None
        return _minidump(path.read_bytes(), str(path), side)
    if head.startswith(b"\x7fELF"):
        if _elf_type(head) != _ELF_CORE:
            raise NotADumpError(path, "an ELF file that is not a core dump")
        return _core(path, str(path))
    return analyze_bytes(path.read_bytes(), name=str(path))


def analyze_run_folder(folder: Path, *, limits: AnalysisLimits | None = None) -> list[Analysis]:
    """Every dump ``reprofarm run`` left in ``folder`` (``run_folder_dumps``), in order."""
    return [
        analyze_path(dump, sidecar=sidecar, limits=limits)
        for dump, sidecar in run_folder_dumps(folder)
    ]


def run_folder_dumps(folder: Path) -> list[tuple[Path, Path | None]]:
    """The dumps of a ``reprofarm run`` folder with their export sidecars:
    ``goroutines-*.txt`` first, then ``*.dmp`` minidumps (with their ``.exports.json``
    sidecar when present) and ``process-N.<pid>`` cores, each kind in name order.
    Other files (``stdout.jsonl``, ``result.json``, ``stderr.txt``) are not dumps."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    goroutines = [p for p in files if p.name.startswith("goroutines-") and p.suffix == ".txt"]
    processes = [p for p in files if p.suffix == ".dmp" or _CORE_NAME.fullmatch(p.name)]
    return [(p, _sidecar_of(p)) for p in [*goroutines, *processes]]


def _sidecar_of(dump: Path) -> Path | None:
    """The export sidecar the agent uploads beside a minidump: ``<dump>.exports.json``."""
    sidecar = dump.with_name(dump.name + SIDECAR_SUFFIX)
    return sidecar if dump.suffix == ".dmp" and sidecar.is_file() else None


def combine(analyses: Sequence[Analysis]) -> tuple[Label, str]:
    """A run's label and signature: from its goroutine dumps when it has any (they name
    goroutines and frames, the most precise evidence), else from its process dumps. Among
    several, the most specific label wins; a tie goes to the later dump.

    Raises ``ValueError`` for an empty sequence: a run without dumps has no label here.
    """
    best = deciding_report(analyses)
    return best.label, best.signature


def deciding_report(analyses: Sequence[Analysis]) -> Analysis:
    """The report ``combine`` takes a run's label from (its confidence is the run's)."""
    if not analyses:
        raise ValueError("combine needs at least one analysis")
    from_goroutines = [a for a in analyses if a.kind is DumpKind.GOROUTINES]
    pool = from_goroutines or list(analyses)
    return pool[_most_specific(pool)]


def _most_specific(analyses: Sequence[Analysis]) -> int:
    ranks = [SPECIFICITY.index(a.label) for a in analyses]
    best = min(ranks)
    return max(i for i, rank in enumerate(ranks) if rank == best)


def _minidump(data: bytes, name: str, sidecar: bytes | None) -> Analysis:
    try:
        from reprofarm_analyzer.minidump_analysis import analyze_minidump
    except ImportError as e:
        raise AnalyzerUnavailableError(name, "minidump", str(e)) from e
    return analyze_minidump(data, sidecar=sidecar)


def _core(path: Path, name: str) -> Analysis:
    try:
        from reprofarm_analyzer.cores import analyze_core
    except ImportError as e:
        raise AnalyzerUnavailableError(name, "core", str(e)) from e
    return analyze_core(path)
