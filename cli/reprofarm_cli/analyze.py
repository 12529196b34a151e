"""``reprofarm analyze``: triage dumps on this machine, no farm needed.

Each FILE may be a goroutine dump (Go's text), a Windows minidump, a Linux core
(gzip-compressed or not), or a run folder written by ``reprofarm run``. ``--json``
prints one object per file (a list for several), with ``kind``, ``label``,
``signature``, ``confidence`` and ``evidence`` (and for minidumps ``arch``,
``os_build`` and ``threads``). Exit code 0 when every file was read, whatever it
shows; 2 when one is not a dump at all (the message on stderr names what was
looked for, and stdout stays empty when no file could be read), cannot be read,
or is refused by the analysis limits (``REPROFARM_ANALYSIS_*``, as in the
worker: a gzip bomb is named, not expanded).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from reprofarm_analyzer.analysis import run_folder_dumps
from reprofarm_analyzer.bounded import analyze_bounded
from reprofarm_analyzer.errors import AnalyzerError
from reprofarm_db.settings import ControllerSettings
from reprofarm_protocol.analysis import Analysis, AnalysisLimits
from rich.console import Console

_stderr = Console(stderr=True)


def _analyze_file(path: Path, limits: AnalysisLimits) -> list[Analysis]:
    """Each dump in its own bounded child process (``reprofarm_analyzer.bounded``)."""
    dumps = run_folder_dumps(path) if path.is_dir() else [(path, None)]
    return [analyze_bounded(dump, sidecar=sidecar, limits=limits) for dump, sidecar in dumps]


def print_report(analysis: Analysis, console: Console) -> None:
    """The human-readable report of one analysis, label and confidence first."""
    console.print(f"  label      {analysis.label.value} ({analysis.confidence.value} confidence)")
    console.print(f"  signature  {analysis.signature}", highlight=False)
    if analysis.arch or analysis.os_build:
        console.print(f"  system     {analysis.arch} {analysis.os_build}", highlight=False)
    for group in analysis.stuck:
        frames = " <- ".join(group.frames[:4])
        console.print(
            f"  stuck      {group.count} x [{group.state}] {frames}", highlight=False, markup=False
        )
    for thread in analysis.threads:
        if thread.role:
            console.print(f"  thread     {thread.id} {thread.role}: {thread.top}", highlight=False)
    for fact in analysis.evidence:
        console.print(f"  evidence   {fact.rule}: {fact.detail}", highlight=False, markup=False)
    for problem in analysis.problems:
        console.print(f"  unread     {problem}", highlight=False, markup=False, style="yellow")


def _print(path: Path, analysis: Analysis, console: Console) -> None:
    console.print(f"[bold]{path}[/bold]: {analysis.kind.value}")
    print_report(analysis, console)


def analyze(
    files: Annotated[list[Path], typer.Argument(help="dumps or run folders", exists=True)],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable report")] = False,
) -> None:
    """Triage dumps: which hang each shows (label), its signature and the evidence."""
    limits = ControllerSettings().analysis_limits()
    results: list[tuple[Path, Analysis]] = []
    failed = False
    for path in files:
        try:
            results.extend((path, a) for a in _analyze_file(path, limits))
        except (AnalyzerError, OSError) as exc:
            _stderr.print(f"error: {exc}", highlight=False, markup=False)
            failed = True
    if as_json and results:
        reports = [a.model_dump(mode="json") for _, a in results]
        single = len(files) == 1 and not files[0].is_dir() and len(reports) == 1
        print(json.dumps(reports[0] if single else reports, indent=2))
    else:
        console = Console()
        for path, analysis in results:
            _print(path, analysis, console)
    if failed:
        raise typer.Exit(2)
