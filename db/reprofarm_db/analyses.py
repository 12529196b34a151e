"""The analyzer's reports, each run's label and signature, and signature buckets.

The worker analyses a dump when its upload completes (an outbox task queued in the
upload's own transaction) and records the report here; it then sets the run's
label from all of the run's reports (``label_run``). A run that passed or failed is
``no-hang`` from its result on; a hung run stays unlabelled (``pending`` in the
statistics) until a report exists. Buckets are computed from the runs table, so a
re-analysis moves runs between buckets by rewriting their label and signature.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reprofarm_protocol.analysis import Analysis, Confidence, Label
from reprofarm_protocol.jobs import RunState
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from reprofarm_db.errors import NotFound
from reprofarm_db.models import Artifact, ArtifactAnalysis, HardwareConfig, Run, utcnow

ANALYSED_KINDS = ("goroutines", "minidump", "core")
"""Artifact kinds the analyzer reads (stdout and sidecars are not dumps)."""

UNREADABLE = "other-hang:unreadable-dumps"
"""The signature of a hung run none of whose dumps could be read."""


def signature_key(signature: str) -> str:
    """A short, stable id for a signature, for URLs and indexes."""
    return hashlib.sha256(signature.encode()).hexdigest()[:16]


def record(
    session: Session,
    *,
    artifact_id: int,
    analysis: Analysis | None,
    error: str | None,
    rules_version: int,
) -> ArtifactAnalysis:
    """Store (or replace) the report of one artifact. ``error`` says why there is
    none: an unreadable dump never fails its run or its upload."""
    artifact = session.get(Artifact, artifact_id)
    if artifact is None:
        raise NotFound(f"artifact {artifact_id} does not exist")
    row = session.scalar(
        select(ArtifactAnalysis).where(ArtifactAnalysis.artifact_id == artifact_id)
    )
    if row is None:
        row = ArtifactAnalysis(artifact_id=artifact_id, run_id=artifact.run_id)
        session.add(row)
    row.kind = analysis.kind.value if analysis else artifact.kind
    row.label = analysis.label.value if analysis else None
    row.signature = analysis.signature[:500] if analysis else None
    row.rules_version = analysis.rules_version if analysis else rules_version
    row.report = analysis.model_dump(mode="json") if analysis else None
    row.error = error[:2000] if error else None
    row.analyzed_at = utcnow()
    session.flush()
    return row


def for_artifact(session: Session, *, artifact_id: int) -> ArtifactAnalysis | None:
    return session.scalar(
        select(ArtifactAnalysis).where(ArtifactAnalysis.artifact_id == artifact_id)
    )


def reports_of_run(session: Session, *, run_id: int) -> list[Analysis]:
    """The readable reports of a run's dumps, oldest artifact first."""
    rows = session.scalars(
        select(ArtifactAnalysis)
        .where(ArtifactAnalysis.run_id == run_id, ArtifactAnalysis.label.is_not(None))
        .order_by(ArtifactAnalysis.artifact_id)
    )
    return [Analysis.model_validate(r.report) for r in rows]


def lock_run(session: Session, *, run_id: int) -> Run:
    """Lock a run (``SELECT ... FOR UPDATE``) before recording one of its reports and
    reading them all: analyses of its dumps then take turns, and each reads every
    report committed before it, so the last one labels the run from all of them."""
    run = session.scalar(
        select(Run)
        .where(Run.id == run_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    return run


def label_run(
    session: Session,
    *,
    run_id: int,
    label: Label | None,
    signature: str | None,
    confidence: Confidence | None = None,
) -> Run:
    """Set a run's verdict (the worker combines its reports) and the confidence of the
    report it came from; None with no report at all means every dump was unreadable
    (``weak``: nothing was read)."""
    run = session.get(Run, run_id, with_for_update=True)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    if label is None:
        label, signature, confidence = Label.OTHER_HANG, UNREADABLE, Confidence.WEAK
    assert signature is not None
    run.label_confidence = confidence.value if confidence else None
    run.label = label.value
    run.signature = signature[:500]
    run.signature_key = signature_key(run.signature)
    return run


def result_labels(status: RunState) -> dict[str, str]:
    """What a result of this status sets of the run's label: a run that did not hang is
    ``no-hang``; a hang waits for its dumps (unless they were analysed before the result
    arrived), and an error or a cancelled run has none."""
    if status not in (RunState.PASSED, RunState.FAILED):
        return {}
    return {
        "label": Label.NO_HANG.value,
        "label_confidence": Confidence.STRONG.value,  # the run finished: no dump needed
        "signature": Label.NO_HANG.value,
        "signature_key": signature_key(Label.NO_HANG.value),
    }


def analysed_artifacts(
    session: Session, *, older_than_rules: Mapping[str, int] | None = None
) -> list[int]:
    """Complete dumps to (re-)analyse: all of them, or those whose report was made by
    rules older than ``older_than_rules`` gives for the report's kind (each kind has its
    own rules and version: comparing a minidump's with the goroutine rules' version
    re-analysed every minidump at every pass), plus any never analysed."""
    query = (
        select(Artifact.id)
        .outerjoin(ArtifactAnalysis, ArtifactAnalysis.artifact_id == Artifact.id)
        .where(Artifact.complete.is_(True), Artifact.kind.in_(ANALYSED_KINDS))
        .order_by(Artifact.id)
    )
    if older_than_rules is not None:
        outdated = [
            (ArtifactAnalysis.kind == kind) & (ArtifactAnalysis.rules_version < version)
            for kind, version in older_than_rules.items()
        ]
        query = query.where(ArtifactAnalysis.id.is_(None) | or_(*outdated))
    return list(session.scalars(query))


@dataclass
class Bucket:
    """Runs that share a signature: where and when it was seen."""

    key: str
    signature: str
    label: str
    runs: int
    first_seen: datetime | None
    last_seen: datetime | None
    by_hardware: dict[str, int] = field(default_factory=dict)
    by_go_version: dict[str, int] = field(default_factory=dict)
    by_cpus: dict[str, int] = field(default_factory=dict)
    example_runs: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "signature": self.signature,
            "label": self.label,
            "runs": self.runs,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "by_hardware": self.by_hardware,
            "by_go_version": self.by_go_version,
            "by_cpus": self.by_cpus,
            "example_runs": self.example_runs,
        }


def buckets(
    session: Session, *, label: str | None = None, key: str | None = None, examples: int = 5
) -> list[Bucket]:
    """Signature buckets of counted hung runs, most frequent first (a harness problem,
    ``runs.discount``, is in none: reprofarm_db.health)."""
    where = [Run.status == RunState.HUNG, Run.signature_key.is_not(None), Run.discount.is_(None)]
    if label is not None:
        where.append(Run.label == label)
    if key is not None:
        where.append(Run.signature_key == key)
    found: dict[str, Bucket] = {}
    for sig_key, signature, run_label, n, first, last in session.execute(
        select(
            Run.signature_key,
            Run.signature,
            Run.label,
            func.count(),
            func.min(Run.finished_at),
            func.max(Run.finished_at),
        )
        .where(*where)
        .group_by(Run.signature_key, Run.signature, Run.label)
    ):
        found[str(sig_key)] = Bucket(
            str(sig_key), str(signature), str(run_label), int(n), first, last
        )
    fingerprints = dict(
        session.execute(select(HardwareConfig.id, HardwareConfig.fingerprint)).all()
    )
    for axis, column in (
        ("by_hardware", Run.hardware_config_id),
        ("by_go_version", Run.go_version),
        ("by_cpus", Run.cpus),
    ):
        for sig_key, value, n in session.execute(
            select(Run.signature_key, column, func.count())
            .where(*where)
            .group_by(Run.signature_key, column)
        ):
            shown: object = value
            if axis == "by_hardware":
                shown = fingerprints.get(int(value), "unknown") if value is not None else "unknown"
            elif axis == "by_cpus":
                shown = "all" if value is None else value
            getattr(found[str(sig_key)], axis)[str(shown)] = n
    # The newest few runs of every bucket in one query (not one per bucket).
    newest = (
        select(
            Run.signature_key.label("key"),
            Run.id.label("run_id"),
            func.row_number()
            .over(partition_by=Run.signature_key, order_by=Run.id.desc())
            .label("n"),
        )
        .where(*where)
        .subquery()
    )
    for sig_key, run_id in session.execute(
        select(newest.c.key, newest.c.run_id)
        .where(newest.c.n <= examples)
        .order_by(newest.c.key, newest.c.run_id.desc())
    ):
        found[str(sig_key)].example_runs.append(int(run_id))
    return sorted(found.values(), key=lambda b: (-b.runs, b.signature))


def runs_of_signature(session: Session, *, key: str, limit: int, offset: int) -> list[Run]:
    return list(
        session.scalars(
            select(Run)
            .where(Run.signature_key == key)
            .order_by(Run.id.desc())
            .limit(limit)
            .offset(offset)
        )
    )
