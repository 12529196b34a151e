"""The farm's evidence for a signature met outside the farm, and the dumps kept from there.

``POST /triage`` analyses a dump from a CI log or an issue; this module answers "has the
farm seen this, where, and how often": the bucket of hung runs with that signature (or,
when none has it exactly, the bucket whose stuck goroutines overlap it most, whatever its
label: a cut paste often lost the headers a rule needed), its hit rate per
hardware configuration with Wilson 95% intervals, its first and latest runs, and the Go
versions it appeared under and those it never did. A triaged dump is stored only when its
sender asks (``keep``), and the kept ones are the bucket's "seen in CI".

Hit rates: a hardware configuration's runs are its counted runs (``COUNTED_RUN_STATES``,
as everywhere) of the scenarios the signature appeared in; its hangs are those runs that
hung with this signature.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from reprofarm_protocol.analysis import Analysis
from reprofarm_protocol.jobs import COUNTED_RUN_STATES, RunState
from reprofarm_protocol.rates import wilson_interval
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from reprofarm_db.analyses import signature_key
from reprofarm_db.errors import NotFound
from reprofarm_db.models import HardwareConfig, Run, TriagedDump, utcnow
from reprofarm_db.similarity import Similarity, chains_of, similarity

SIMILAR_AT_LEAST = 0.5
"""Overlap of stuck goroutines (``similarity``) from which a bucket is offered as similar:
half of the goroutines of both signatures together are the same."""

_COUNTED = tuple(sorted(COUNTED_RUN_STATES))


@dataclass
class HardwareHits:
    hardware: str  # the fingerprint
    label: str
    runs: int
    hangs: int
    ci95_low: float
    ci95_high: float


@dataclass
class RunMark:
    id: int
    finished_at: datetime | None
    go_version: str
    hardware: str


@dataclass
class FarmBucket:
    key: str
    signature: str
    label: str
    match: str  # "exact" or "similar"
    similarity: float
    reason: str  # why this bucket: the same signature, or the stacks shared and the rule
    hung_runs: int
    by_hardware: list[HardwareHits]
    first_run: RunMark | None
    latest_run: RunMark | None
    go_versions_seen: list[str]
    go_versions_never: list[str]


@dataclass
class SeenInCi:
    key: str
    dumps: int
    first_sent: datetime | None
    last_sent: datetime | None


def farm_bucket(session: Session, *, signature: str) -> FarmBucket | None:
    """The bucket of hung runs for ``signature``: exact, else the one whose stuck
    goroutines overlap it most (``reprofarm_db.similarity``: wait states and labels aside,
    at least ``SIMILAR_AT_LEAST``), else None."""
    # Counted hangs only: a harness problem (reprofarm_db.health) is no evidence of the bug.
    hung = [Run.status == RunState.HUNG, Run.signature_key.is_not(None), Run.discount.is_(None)]
    key = signature_key(signature[:500])  # runs store the first 500 characters
    found = session.scalar(select(Run.signature).where(*hung, Run.signature_key == key).limit(1))
    if found is not None:
        reason = "the same signature"
        return _bucket(session, key=key, signature=found, match="exact", score=1.0, reason=reason)
    if not chains_of(signature):
        return None  # nothing to compare: a crash, a test timeout, no readable stack
    candidates = session.execute(
        select(Run.signature_key, Run.signature, Run.label)
        .where(*hung)
        .group_by(Run.signature_key, Run.signature, Run.label)
    ).all()
    scored = [
        (similarity(signature, str(sig)), str(sig), str(k), str(lab)) for k, sig, lab in candidates
    ]
    # The closest; among equals the first signature in order, so the answer is stable.
    best = min(scored, key=lambda item: (-item[0].score, item[1]), default=None)
    if best is None or best[0].score < SIMILAR_AT_LEAST:
        return None
    near, found, key, label = best
    return _bucket(
        session,
        key=key,
        signature=found,
        match="similar",
        score=near.score,
        reason=_why_similar(near, label),
    )


def _why_similar(near: Similarity, label: str) -> str:
    shown = "; ".join(",".join(theirs) for _ours, theirs in near.shared[:3])
    return (
        f"{len(near.shared)} of the dump's {near.ours} stuck stacks are {len(near.shared)} of"
        f" the bucket's {near.theirs} (the same functions, wait states and labels aside:"
        f" {shown}); the bucket's rule: {label}"
    )


def _bucket(
    session: Session, *, key: str, signature: str, match: str, score: float, reason: str
) -> FarmBucket:
    """Aggregates only: a bucket may hold many thousands of hung runs."""
    ours = [Run.status == RunState.HUNG, Run.signature_key == key, Run.discount.is_(None)]
    scenarios = list(session.scalars(select(Run.scenario).where(*ours).distinct()))
    counted = [Run.status.in_(_COUNTED), Run.scenario.in_(scenarios), Run.discount.is_(None)]
    hardware = {h.id: h for h in session.scalars(select(HardwareConfig))}
    totals = dict(
        session.execute(
            select(Run.hardware_config_id, func.count())
            .where(*counted)
            .group_by(Run.hardware_config_id)
        ).all()
    )
    hangs = dict(
        session.execute(
            select(Run.hardware_config_id, func.count())
            .where(*ours)
            .group_by(Run.hardware_config_id)
        ).all()
    )
    by_hardware = []
    for config_id, n in sorted(totals.items(), key=lambda item: -hangs.get(item[0], 0) / item[1]):
        k = int(hangs.get(config_id, 0))
        low, high = wilson_interval(k, int(n))
        config = hardware.get(config_id) if config_id is not None else None
        by_hardware.append(
            HardwareHits(
                hardware=config.fingerprint if config else "unknown",
                label=config.label if config else "unknown",
                runs=int(n),
                hangs=k,
                ci95_low=round(low, 6),
                ci95_high=round(high, 6),
            )
        )
    order = (Run.finished_at, Run.id)
    first = session.scalars(select(Run).where(*ours).order_by(*order).limit(1)).first()
    latest = session.scalars(
        select(Run).where(*ours).order_by(*(c.desc() for c in order)).limit(1)
    ).first()
    seen = sorted(session.scalars(select(Run.go_version).where(*ours).distinct()))
    tried = session.scalars(select(Run.go_version).where(*counted).distinct()).all()
    return FarmBucket(
        key=key,
        signature=signature,
        label=(first.label or "") if first else "",
        match=match,
        similarity=round(score, 3),
        reason=reason,
        hung_runs=int(sum(hangs.values())),
        by_hardware=by_hardware,
        first_run=_mark(first, hardware) if first else None,
        latest_run=_mark(latest, hardware) if latest else None,
        go_versions_seen=seen,
        go_versions_never=sorted(set(tried) - set(seen)),
    )


def _mark(run: Run, hardware: dict[int, HardwareConfig]) -> RunMark:
    config = hardware.get(run.hardware_config_id) if run.hardware_config_id else None
    return RunMark(
        id=run.id,
        finished_at=run.finished_at,
        go_version=run.go_version,
        hardware=config.fingerprint if config else "unknown",
    )


def seen_in_ci(session: Session, *, key: str) -> SeenInCi:
    """Kept triaged dumps with this signature key: how many, first and last sent."""
    n, first, last = session.execute(
        select(func.count(), func.min(TriagedDump.sent_at), func.max(TriagedDump.sent_at)).where(
            TriagedDump.signature_key == key
        )
    ).one()
    return SeenInCi(key=key, dumps=int(n), first_sent=first, last_sent=last)


def kept_counts(session: Session, *, keys: list[str]) -> dict[str, int]:
    """Kept triaged dumps per signature key, for the signatures list."""
    if not keys:
        return {}
    rows = session.execute(
        select(TriagedDump.signature_key, func.count())
        .where(TriagedDump.signature_key.in_(keys))
        .group_by(TriagedDump.signature_key)
    ).all()
    return {str(k): int(n) for k, n in rows}


def kept_of_signature(session: Session, *, key: str, limit: int, offset: int) -> list[TriagedDump]:
    """One signature's kept dumps, newest first (the rows' bytes are not needed: a page
    lists them, so ``text_gz`` and ``report`` are left unloaded)."""
    return list(
        session.scalars(
            select(TriagedDump)
            .where(TriagedDump.signature_key == key)
            .order_by(TriagedDump.sent_at.desc(), TriagedDump.id.desc())
            .limit(limit)
            .offset(offset)
            .options(defer(TriagedDump.text_gz), defer(TriagedDump.report))
        )
    )


def delete_kept(session: Session, *, dump_id: int) -> None:
    """Forget a kept dump (an admin's call: sent by mistake, or holding a secret)."""
    row = session.get(TriagedDump, dump_id)
    if row is None:
        raise NotFound(f"kept triaged dump {dump_id} does not exist")
    session.delete(row)
    session.flush()


def keep(
    session: Session, *, analysis: Analysis, data: bytes, sent_by: str, source: str | None
) -> tuple[TriagedDump, bool]:
    """Store a triaged dump its sender asked to keep (gzip-compressed, with its report);
    returns it and whether it is new. The same bytes kept before are not stored again:
    the earlier row is returned (a unique sha256, so two senders racing still make one)."""
    digest = hashlib.sha256(data).hexdigest()
    found = kept_by_sha256(session, sha256=digest)
    if found is not None:
        return found, False
    row = TriagedDump(
        sent_by=sent_by[:100],
        sent_at=utcnow(),
        source=source[:500] if source else None,
        size=len(data),
        text_gz=gzip.compress(data, compresslevel=6),
        sha256=digest,
    )
    relabel(row, analysis)
    try:
        with session.begin_nested():  # a savepoint: the race's loser keeps its transaction
            session.add(row)
    except IntegrityError:
        found = kept_by_sha256(session, sha256=digest)
        if found is None:
            raise
        return found, False
    return row, True


def kept_by_sha256(session: Session, *, sha256: str) -> TriagedDump | None:
    return session.scalar(select(TriagedDump).where(TriagedDump.sha256 == sha256))


def relabel(row: TriagedDump, analysis: Analysis) -> None:
    """Set a kept dump's verdict from its (new) report: at keep and at re-analysis."""
    row.kind = analysis.kind.value
    row.label = analysis.label.value
    row.signature = analysis.signature[:500]
    row.signature_key = signature_key(row.signature)
    row.confidence = analysis.confidence.value
    row.report = analysis.model_dump(mode="json")
    row.rules_version = analysis.rules_version


def outdated(session: Session, *, older_than_rules: Mapping[str, int] | None) -> list[int]:
    """Kept dumps to re-analyse: all (None), or those whose report was made by rules older
    than ``older_than_rules`` gives for their kind (as ``analyses.analysed_artifacts``)."""
    query = select(TriagedDump.id).order_by(TriagedDump.id)
    if older_than_rules is not None:
        query = query.where(
            or_(
                *(
                    (TriagedDump.kind == kind) & (TriagedDump.rules_version < version)
                    for kind, version in older_than_rules.items()
                )
            )
        )
    return list(session.scalars(query))


def as_dict(value: FarmBucket | SeenInCi) -> dict[str, Any]:
    return asdict(value)
