"""Read-only queries the dashboard's pages make, shaped for one request per page.

Every rate is a ``hit_rates.GroupRow`` (so its interval, per-million and runs-for-95%
come from ``reprofarm_db.stats``, the one definition); what this module adds is
*where* the runs come from:

- ``rates`` answers what ``stats.group_runs`` can (its rollups make it fast) and
  otherwise ``tally``: a filtered aggregation over ``runs`` itself, grouped by
  status, for what the rollups cannot filter (a time range, one hardware
  configuration).
- ``tally`` also gives a job's cells their runs in every state (ready, leased...),
  which statistics leave out.
- ``changes``: a few indexed aggregates that move whenever something a page shows
  does, so an open dashboard asks one cheap question every few seconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reprofarm_protocol.jobs import COUNTED_RUN_STATES, OPEN_RUN_STATES, RunState
from sqlalchemy import ColumnElement, and_, false, func, select
from sqlalchemy.orm import Session

from reprofarm_db import agents, stats
from reprofarm_db.errors import Invalid, NotFound
from reprofarm_db.hit_rates import Counts, GroupRow, Spread
from reprofarm_db.models import Agent, Artifact, ArtifactAnalysis, HardwareConfig, Job, Run

KEYS: dict[str, Any] = {**stats.GROUP_KEYS, "required_agent": Run.required_agent_id}
"""What a tally may group by: the statistics keys, and a job cell's named agent."""

_COUNTED = COUNTED_RUN_STATES


@dataclass(frozen=True)
class RunFilter:
    """Which runs a rate counts. ``submitted_since`` keeps the runs of jobs
    submitted since then, ``submitted_until`` those submitted before then (a job's
    runs are created with it, so this is a range of job ids, on an index);
    ``label``/``signature`` narrow what counts as a hang, as in ``stats.group_runs``;
    ``hardware`` is a fingerprint, ``hardware_in`` several (the configurations on a
    page of the map)."""

    job_id: int | None = None
    scenario: str | None = None
    go_version: str | None = None
    hardware: str | None = None
    submitted_since: datetime | None = None
    submitted_until: datetime | None = None
    label: str | None = None
    signature: str | None = None
    hardware_in: tuple[str, ...] | None = None  # fingerprints: a page of the map

    def pinned(self) -> dict[str, str]:
        """The statistics keys this filter fixes to one value."""
        keys = {"scenario": self.scenario, "go_version": self.go_version}
        return {k: v for k, v in keys.items() if v is not None}


@dataclass
class Tally:
    """One group: its keys, its runs in every state, and the statistics counts."""

    keys: dict[str, Any]
    by_status: dict[str, int] = field(default_factory=dict)
    counts: Counts = field(default_factory=Counts)
    per_agent: dict[int | None, list[int]] = field(default_factory=dict)  # [hangs, runs]

    def row(self) -> GroupRow:
        spread = Spread.of([(h, n) for h, n in self.per_agent.values()])
        return GroupRow(keys=dict(self.keys), counts=self.counts, spread=spread)


def conditions(session: Session, f: RunFilter) -> list[ColumnElement[bool]]:
    """The filter as conditions on ``runs``: one definition for the dashboard's
    tallies and the export (reprofarm_db.export). Discounted runs (harness problems,
    reprofarm_db.health) are never among them."""
    where: list[ColumnElement[bool]] = [Run.discount.is_(None)]
    if f.job_id is not None:
        where.append(Run.job_id == f.job_id)
    if f.scenario is not None:
        where.append(Run.scenario == f.scenario)
    if f.go_version is not None:
        where.append(Run.go_version == f.go_version)
    if f.hardware is not None:
        where.append(Run.hardware_config_id.in_(_hardware_ids(session, [f.hardware])))
    if f.hardware_in is not None:
        where.append(Run.hardware_config_id.in_(_hardware_ids(session, f.hardware_in)))
    if f.submitted_since is not None:
        first = session.scalar(select(func.min(Job.id)).where(Job.created_at >= f.submitted_since))
        where.append(Run.job_id >= first if first is not None else false())
    if f.submitted_until is not None:
        last = session.scalar(select(func.max(Job.id)).where(Job.created_at < f.submitted_until))
        where.append(Run.job_id <= last if last is not None else false())
    return where


def _hardware_ids(session: Session, fingerprints: Sequence[str]) -> list[int]:
    if not fingerprints:
        return []
    return list(
        session.scalars(
            select(HardwareConfig.id).where(HardwareConfig.fingerprint.in_(set(fingerprints)))
        )
    )


def tally(session: Session, *, group_by: Sequence[str], where: RunFilter) -> list[Tally]:
    """Runs per group and state, in one aggregation over ``runs``; groups keep the
    order of their keys' values. Hardware keys become fingerprints with a
    ``hardware_label``, as in ``stats.group_runs``."""
    for key in group_by:
        if key not in KEYS:
            raise Invalid("group_by", f"{key!r} is not one of {', '.join(KEYS)}")
    cols = [KEYS[k].label(k) for k in group_by]
    target = Run.status == RunState.HUNG
    if where.label is not None:
        target = and_(target, stats.LABEL == where.label)  # noqa: SIM300 - a column
    if where.signature is not None:
        target = and_(target, stats.SIGNATURE == where.signature)  # noqa: SIM300
    query = (
        select(
            *cols,
            Run.agent_id,
            Run.status,
            target.label("target"),
            func.count(),
            func.sum(Run.iterations),
            func.sum(Run.duration_s),
        )
        .where(*conditions(session, where))
        .group_by(*cols, Run.agent_id, Run.status, target)
    )
    groups: dict[tuple[Any, ...], Tally] = {}
    for rec in session.execute(query):
        keys = tuple(rec[: len(cols)])
        agent, status, is_hang, n, iterations, seconds = rec[len(cols) :]
        t = groups.get(keys)
        if t is None:
            t = groups[keys] = Tally(keys=dict(zip(group_by, keys, strict=True)))
        t.by_status[status] = t.by_status.get(status, 0) + n
        c = t.counts
        if status in _COUNTED:
            mine = t.per_agent.setdefault(agent, [0, 0])
            mine[1] += n
            c.runs += n
            c.iterations += int(iterations or 0)
            c.run_seconds += float(seconds or 0.0)
            if status == RunState.HUNG and is_hang:
                c.hangs += n
                mine[0] += n
            elif status == RunState.PASSED:
                c.passed += n
            elif status == RunState.FAILED:
                c.failed += n
        elif status == RunState.ERROR:
            c.errors += n
        elif status == RunState.LOST:
            c.lost += n
    found = sorted(groups.values(), key=lambda t: [order_key(v) for v in t.keys.values()])
    _name_hardware(session, found)
    return found


def order_key(value: object) -> tuple[int, str, float]:
    """How key values sort on a page: numbers by value, text by text, None
    (all CPUs, no pool) last."""
    if value is None:
        return (2, "", 0.0)
    if isinstance(value, int | float):
        return (0, "", float(value))
    return (1, str(value), 0.0)


def _name_hardware(session: Session, found: Sequence[Tally]) -> None:
    ids = {t.keys["hardware"] for t in found if t.keys.get("hardware") is not None}
    names = agents.hardware_names(session, ids=ids)
    for t in found:
        if "hardware" in t.keys:
            t.keys["hardware"], t.keys["hardware_label"] = names.get(
                t.keys["hardware"], (None, None)
            )


def rates(session: Session, *, group_by: Sequence[str], where: RunFilter) -> list[GroupRow]:
    """Hit rates per group under a filter. ``stats.group_runs`` answers (from its
    rollups unless a job is named, with the scenario and Go version filters in its
    query) when it can. One hardware configuration (a few thousand
    runs, on an index) or a time range (the rollups have no time) is a ``tally``
    of the runs themselves. Both give the same rows for the same runs
    (db/tests/test_views.py pins it)."""
    if where.submitted_since is None and where.submitted_until is None and where.hardware is None:
        return stats.group_runs(
            session,
            group_by=group_by,
            job_id=where.job_id,
            label=where.label,
            signature=where.signature,
            only=where.pinned(),
            hardware_ids=(
                None if where.hardware_in is None else _hardware_ids(session, where.hardware_in)
            ),
        )
    rows = [t.row() for t in tally(session, group_by=group_by, where=where)]
    return [r for r in rows if r.counts.runs or r.counts.errors or r.counts.lost]


def fold(counts: Iterable[Counts]) -> Counts:
    """The counts of a union of disjoint groups (a map row's total)."""
    total = Counts()
    for c in counts:
        total.add(c)
    return total


def hardware(session: Session, *, fingerprint: str) -> HardwareConfig:
    found = session.scalar(select(HardwareConfig).where(HardwareConfig.fingerprint == fingerprint))
    if found is None:
        raise NotFound(f"no hardware configuration has fingerprint {fingerprint[:64]!r}")
    return found


def hardware_by_fingerprints(session: Session, fingerprints: Sequence[str]) -> list[HardwareConfig]:
    if not fingerprints:
        return []
    return list(
        session.scalars(
            select(HardwareConfig).where(HardwareConfig.fingerprint.in_(set(fingerprints)))
        )
    )


def agents_of(session: Session, *, hardware_id: int) -> list[Agent]:
    """The agents whose current hardware this is."""
    return list(
        session.scalars(
            select(Agent).where(Agent.hardware_config_id == hardware_id).order_by(Agent.name)
        )
    )


def agent_names(session: Session, ids: Sequence[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return dict(session.execute(select(Agent.id, Agent.name).where(Agent.id.in_(wanted))).all())


def jobs_page(
    session: Session, *, limit: int, offset: int, status: str | None = None
) -> tuple[list[tuple[Job, dict[str, int]]], int]:
    """Jobs newest first with their runs by state, in two queries whatever the
    page size; and how many jobs there are."""
    query = select(Job)
    total = select(func.count()).select_from(Job)
    if status is not None:
        query, total = query.where(Job.status == status), total.where(Job.status == status)
    page = list(session.scalars(query.order_by(Job.id.desc()).limit(limit).offset(offset)))
    counts: dict[int, dict[str, int]] = {j.id: {state.value: 0 for state in RunState} for j in page}
    if page:
        for job_id, state, n in session.execute(
            select(Run.job_id, Run.status, func.count())
            .where(Run.job_id.in_(list(counts)))
            .group_by(Run.job_id, Run.status)
        ):
            counts[job_id][state] = n
    return [(j, counts[j.id]) for j in page], int(session.scalar(total) or 0)


RUN_SORTS: dict[str, Any] = {
    "id": Run.id,
    "status": Run.status,
    "go_version": Run.go_version,
    "cpus": Run.cpus,
    "affinity": Run.affinity,
    "agent": Run.agent_id,
    "iterations": Run.iterations,
    "duration_s": Run.duration_s,
    "finished_at": Run.finished_at,
    "label": Run.label,
}
"""How a job's runs may be sorted (the page's column headers)."""


def job_runs(
    session: Session,
    *,
    job_id: int,
    status: str | None,
    sort: str,
    descending: bool,
    limit: int,
    offset: int,
) -> tuple[list[Run], int]:
    """One page of a job's runs, sorted (ties by id), and how many match."""
    if sort not in RUN_SORTS:
        raise Invalid("sort", f"{sort[:40]!r} is not one of {', '.join(RUN_SORTS)}")
    where: list[ColumnElement[bool]] = [Run.job_id == job_id]
    if status is not None:
        where.append(Run.status == status)
    column = RUN_SORTS[sort]
    order = column.desc().nulls_last() if descending else column.asc().nulls_last()
    tie = Run.id.desc() if descending else Run.id.asc()
    runs = list(
        session.scalars(select(Run).where(*where).order_by(order, tie).limit(limit).offset(offset))
    )
    total = session.scalar(select(func.count()).select_from(Run).where(*where))
    return runs, int(total or 0)


def analyses_of_run(session: Session, *, run_id: int) -> dict[int, ArtifactAnalysis]:
    """The analyzer's record per artifact of a run (readable or not)."""
    rows = session.scalars(select(ArtifactAnalysis).where(ArtifactAnalysis.run_id == run_id))
    return {r.artifact_id: r for r in rows}


def changes(session: Session, *, online_since: datetime) -> dict[str, str]:
    """A short token per part of the farm that moves whenever what a page shows of
    it does: ``runs`` (a new run, one leaving the queue, a heartbeat's
    iterations), ``jobs``, ``agents`` (online, busy, reboots, versions, health),
    ``analyses`` (a new report, or one replaced by a re-analysis) and ``artifacts``. Each is an
    aggregate over an index or a small table, whatever the number of runs."""
    open_runs = session.execute(
        select(Run.status, func.count(), func.sum(Run.id))
        .where(Run.status.in_(OPEN_RUN_STATES))
        .group_by(Run.status)
        .order_by(Run.status)
    ).all()
    progress = session.execute(
        select(func.sum(Run.iterations), func.count()).where(Run.status == RunState.LEASED)
    ).one()
    runs = (session.scalar(select(func.max(Run.id))), open_runs, tuple(progress))
    jobs = (
        session.scalar(select(func.max(Job.id))),
        session.execute(
            select(Job.status, func.count()).group_by(Job.status).order_by(Job.status)
        ).all(),
    )
    agents = session.execute(
        select(
            Agent.id,
            Agent.name,
            Agent.last_seen > online_since,
            Agent.needs_reboot,
            Agent.current_run_id,
            Agent.agent_version,
            Agent.reboots,
            Agent.hardware_config_id,
            Agent.health,  # a check's outcome changes what the agents page shows
            Agent.health_detail,
        ).order_by(Agent.id)
    ).all()
    # A first report is a new row (the id moves); a re-analysis rewrites its row in
    # place, with a new analyzed_at (indexed). Both, so that the labels a re-analysis
    # changed are never served from an answer kept from before it.
    analyses = session.execute(
        select(func.max(ArtifactAnalysis.id), func.max(ArtifactAnalysis.analyzed_at))
    ).one()
    artifacts = session.scalar(select(func.max(Artifact.id)))
    return {
        name: _digest(value)
        for name, value in (
            ("runs", runs),
            ("jobs", jobs),
            ("agents", agents),
            ("analyses", analyses),
            ("artifacts", artifacts),
        )
    }


def _digest(value: object) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()[:16]
