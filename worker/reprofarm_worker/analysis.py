"""Analysing uploaded dumps: the worker's side of the analyzer.

``analyze_artifact`` reads one complete artifact from the store (gzip-compressed
process dumps are expanded to a scratch file first: gdb needs a file), in a child
process within the settings' ``AnalysisLimits`` (a gzip bomb is refused with its
reason as the artifact's error, and the worker goes on), records
the report, or the reason there is none, and relabels the run from all its
reports. ``reanalyze`` does it again for every dump made by older rules (or all
of them): the buckets of old runs follow a rules change, and so do the triaged
dumps kept from outside the farm (``reanalyze_kept``, from their stored bytes).
All are safe to run twice: a report is replaced, never added.
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass
from pathlib import Path

from reprofarm_analyzer.analysis import deciding_report
from reprofarm_analyzer.bounded import analyze_bounded, analyze_bytes_bounded
from reprofarm_analyzer.cores import CORE_RULES_VERSION
from reprofarm_analyzer.errors import AnalyzerError
from reprofarm_analyzer.goroutine_rules import RULES_VERSION
from reprofarm_analyzer.minidump_analysis import MINIDUMP_RULES_VERSION, cross_check
from reprofarm_db import analyses, health, studies, triage
from reprofarm_db.engine import transaction
from reprofarm_db.models import Artifact, HardwareConfig, Run, TriagedDump, utcnow
from reprofarm_protocol.analysis import Analysis, AnalysisLimits, DumpKind
from reprofarm_protocol.hardware import HardwareInfo
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)


def _sidecar(session: Session, artifact: Artifact) -> Path | None:
    """The export tables the agent uploaded with a run's minidumps (kind ``exports``)."""
    if artifact.kind != "minidump":
        return None
    found = session.scalar(
        select(Artifact).where(
            Artifact.run_id == artifact.run_id,
            Artifact.kind == "exports",
            Artifact.complete.is_(True),
        )
    )
    return Path(found.path) if found is not None else None


def _hardware_of(session: Session, run_id: int) -> HardwareInfo | None:
    """The agent's record of the machine that ran the run, to check a dump against."""
    run = session.get(Run, run_id)
    if run is None or run.hardware_config_id is None:
        return None
    config = session.get(HardwareConfig, run.hardware_config_id)
    if config is None:
        return None
    try:
        return HardwareInfo.model_validate({**config.description, "hostname": ""})
    except ValueError:
        return None  # recorded by an older agent: nothing to compare with


def analyze_artifact(
    sessions: sessionmaker[Session],
    artifact_id: int,
    scratch: Path,
    limits: AnalysisLimits | None = None,
) -> str:
    """Analyse one artifact; returns the run's label (or ``pending``). A minidump's
    own system information is checked against the agent's hardware record, and a
    disagreement is kept in the report's ``problems``."""
    with transaction(sessions) as session:
        artifact = session.get(Artifact, artifact_id)
        if artifact is None or not artifact.complete:
            log.warning("artifact %s is missing or incomplete: not analysed", artifact_id)
            return "pending"
        path, name, run_id = Path(artifact.path), artifact.name, artifact.run_id
        sidecar = _sidecar(session, artifact)
        hardware = _hardware_of(session, run_id)
    report: Analysis | None = None
    error: str | None = None
    try:
        report = analyze_bounded(path, sidecar=sidecar, scratch=scratch, limits=limits)
        if report.kind is DumpKind.MINIDUMP and hardware is not None:
            disagreements = cross_check(report, hardware)
            report.problems.extend(f"hardware record disagrees: {d}" for d in disagreements)
    except (AnalyzerError, OSError) as exc:
        error = f"{name}: {exc}"
        log.warning("artifact %s of run %s could not be analysed: %s", artifact_id, run_id, exc)
    with transaction(sessions) as session:
        # The run first: two dumps of one run analysed at once would otherwise each
        # read the reports without the other's (not committed yet) and the later
        # commit would label the run from a partial set; and on Postgres each
        # report's foreign key takes a share lock on the run that the other's
        # label_run (FOR UPDATE) then waits for: a deadlock, and a report lost.
        analyses.lock_run(session, run_id=run_id)
        analyses.record(
            session,
            artifact_id=artifact_id,
            analysis=report,
            error=error,
            rules_version=RULES_VERSION,
        )
        reports = analyses.reports_of_run(session, run_id=run_id)
        best = deciding_report(reports) if reports else None
        run = analyses.label_run(
            session,
            run_id=run_id,
            label=best.label if best else None,
            signature=best.signature if best else None,
            confidence=best.confidence if best else None,
        )
        if run.cell is not None:
            studies.note_run_ended(session, job_id=run.job_id)  # a verify waits on labels
        health.conclude_if_decided(session, run=run, now=utcnow())  # a check waits on them too
        return run.label or "pending"


CURRENT_RULES = {
    DumpKind.GOROUTINES.value: RULES_VERSION,
    DumpKind.MINIDUMP.value: MINIDUMP_RULES_VERSION,
    DumpKind.CORE.value: CORE_RULES_VERSION,
}
"""Each kind of dump's rules, by version: a report older than its own kind's is redone."""


@dataclass(frozen=True)
class Reanalysed:
    """What one re-analysis pass redid: run dumps (artifact ids) and kept triaged dumps."""

    artifacts: list[int]
    triaged: list[int]


def reanalyze(
    sessions: sessionmaker[Session],
    scratch: Path,
    *,
    everything: bool = False,
    limits: AnalysisLimits | None = None,
) -> Reanalysed:
    """Re-analyse dumps made by older rules (or all): the farm's own dumps, whose runs
    move to the new buckets, then the triaged dumps kept from outside the farm, whose
    "seen in CI" follows the same rules."""
    older = None if everything else CURRENT_RULES
    with transaction(sessions) as session:
        todo = analyses.analysed_artifacts(session, older_than_rules=older)
        kept = triage.outdated(session, older_than_rules=older)
    for artifact_id in todo:
        analyze_artifact(sessions, artifact_id, scratch, limits)
    for dump_id in kept:
        reanalyze_kept(sessions, dump_id, scratch, limits)
    log.info("re-analysed %s artifacts and %s kept triaged dumps", len(todo), len(kept))
    return Reanalysed(artifacts=todo, triaged=kept)


def reanalyze_kept(
    sessions: sessionmaker[Session],
    dump_id: int,
    scratch: Path,
    limits: AnalysisLimits | None = None,
) -> str | None:
    """Analyse a kept triaged dump again from its stored bytes (in the bounded child, as
    the api did when it was sent); returns its new label, or None when it is gone or
    could no longer be read. An unreadable one keeps its verdict, with the reason in its
    report's problems, and is marked done for these rules (not retried at every pass)."""
    with transaction(sessions) as session:
        row = session.get(TriagedDump, dump_id)
        if row is None:
            return None  # deleted meanwhile
        data = gzip.decompress(row.text_gz)
    report: Analysis | None = None
    error = ""
    try:
        report = analyze_bytes_bounded(data, scratch=scratch, limits=limits)
    except AnalyzerError as exc:
        error = str(exc)
        log.warning("kept triaged dump %s could not be re-analysed: %s", dump_id, error)
    with transaction(sessions) as session:
        row = session.get(TriagedDump, dump_id, with_for_update=True)
        if row is None:
            return None
        if report is None:
            rules = CURRENT_RULES.get(row.kind, row.rules_version)
            problems = [*row.report.get("problems", []), f"re-analysis (rules {rules}): {error}"]
            row.report = {**row.report, "problems": problems}
            row.rules_version = rules
            return None
        triage.relabel(row, report)
        return row.label
