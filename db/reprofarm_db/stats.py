"""Hit rates per group of runs: the queries (rollups, or a scan of the runs), whose rows
``hit_rates`` turns into the numbers a team acts on (its docstring has the definitions).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from reprofarm_protocol.analysis import PENDING_LABEL
from reprofarm_protocol.jobs import COUNTED_RUN_STATES, RunState
from sqlalchemy import ColumnElement, Float, Subquery, and_, case, cast, func, select, true
from sqlalchemy.orm import Session

from reprofarm_db import agents
from reprofarm_db.analyses import signature_key
from reprofarm_db.errors import Invalid
from reprofarm_db.hit_rates import Counts, GroupRow, Spread
from reprofarm_db.models import Agent, Run, RunRollup
from reprofarm_db.rollups import NO_CHANCE


def _pending_or(column: Any) -> Any:
    """A hung run not analysed yet is ``pending``; runs that did not count have none."""
    return case(
        (column.is_not(None), column),
        (Run.status == RunState.HUNG, PENDING_LABEL),
        else_=None,
    )


LABEL = _pending_or(Run.label)
SIGNATURE = _pending_or(Run.signature)

GROUP_KEYS: dict[str, Any] = {
    "hardware": Run.hardware_config_id,
    "cpus": Run.cpus,
    "affinity": Run.affinity,
    "go_version": Run.go_version,
    "scenario": Run.scenario,
    "pool": Run.pool,
    "agent": Run.agent_id,
    "label": LABEL,
    "signature": SIGNATURE,
    "control_chance": Run.control_chance,
}
COUNTED = tuple(sorted(COUNTED_RUN_STATES))


def _check_keys(group_by: Sequence[str], field: str) -> None:
    for key in group_by:
        if key not in GROUP_KEYS:
            raise Invalid(field, f"{key!r} is not one of {', '.join(GROUP_KEYS)}")


def _label_keys(session: Session, rows: list[GroupRow]) -> None:
    hw_ids = {r.keys["hardware"] for r in rows if r.keys.get("hardware") is not None}
    # One label per configuration, not per row: a pair map has 30,000 rows.
    labels = agents.hardware_names(session, ids=hw_ids)
    agent_ids = {r.keys["agent"] for r in rows if r.keys.get("agent") is not None}
    names = dict(session.execute(select(Agent.id, Agent.name).where(Agent.id.in_(agent_ids))).all())
    for r in rows:
        if "hardware" in r.keys:
            r.keys["hardware"], r.keys["hardware_label"] = labels.get(
                r.keys["hardware"], (None, None)
            )
        if "agent" in r.keys:
            r.keys["agent"] = names.get(r.keys["agent"])


def group_runs(
    session: Session,
    *,
    group_by: Sequence[str],
    job_id: int | None = None,
    label: str | None = None,
    signature: str | None = None,
    source: str = "auto",
    only: Mapping[str, str] | None = None,
    hardware_ids: Collection[int] | None = None,
) -> list[GroupRow]:
    """One row per combination of the keys: counts, plus per-agent counts for the
    disagreement test.

    ``only`` keeps the runs whose ``scenario`` / ``go_version`` is the one given
    (a filter in the query itself, so a filtered dashboard map reads a fraction
    of the rollups); ``hardware_ids`` keeps the runs of those configurations (a
    page of the map).

    ``label`` / ``signature`` narrow what counts as a hang (the hit rate of *this*
    bug): other hangs still count as runs, as runs where this bug did not show.
    ``source``: ``rollups`` sums the counters of reprofarm_db.rollups (fast at
    millions of runs), ``scan`` aggregates the runs table (needed to filter by
    job), ``auto`` picks rollups unless a job is named. Both give the same rows."""
    _check_keys(group_by, "group_by")
    only = dict(only or {})
    for key in only:
        if key not in FILTER_KEYS:
            raise Invalid(key, f"only {', '.join(FILTER_KEYS)} filter this way")
    if source == "rollups" or (source == "auto" and job_id is None):
        if job_id is not None:
            raise Invalid("job_id", "the rollups have no job: use the scan")
        return _from_rollups(
            session,
            group_by=group_by,
            label=label,
            signature=signature,
            only=only,
            hardware_ids=hardware_ids,
        )
    return _scan(
        session,
        group_by=group_by,
        job_id=job_id,
        label=label,
        signature=signature,
        only=only,
        hardware_ids=hardware_ids,
    )


FILTER_KEYS = ("scenario", "go_version")


_ROLLUP_COLUMNS: dict[str, Any] = {
    "hardware": RunRollup.hardware_config_id,
    "cpus": RunRollup.cpus,
    "affinity": RunRollup.affinity,
    "go_version": RunRollup.go_version,
    "scenario": RunRollup.scenario,
    "pool": RunRollup.pool,
    "agent": RunRollup.agent_id,
    "label": RunRollup.label,
    "signature": RunRollup.signature_key,
    "control_chance": RunRollup.control_chance,
}
_NONE_SENTINEL: dict[str, Any] = {
    "hardware": 0,
    "cpus": 0,
    "pool": "",
    "agent": 0,
    "label": "",
    "control_chance": NO_CHANCE,
}


def _integer_sum(column: Any) -> Any:
    """A sum of 64-bit counters as a double: Postgres sums bigints as ``numeric``,
    which doubled the time of a five-key grouping; a double holds every integer
    up to 2^53 exactly, far beyond any counter here."""
    return func.sum(cast(column, Float))


def _from_rollups(
    session: Session,
    *,
    group_by: Sequence[str],
    label: str | None,
    signature: str | None,
    only: Mapping[str, str],
    hardware_ids: Collection[int] | None,
) -> list[GroupRow]:
    r = RunRollup
    this_hang: ColumnElement[bool] = true()
    if label is not None:
        this_hang = and_(this_hang, r.label == label)
    if signature is not None:
        key = signature if signature == PENDING_LABEL else signature_key(signature)
        this_hang = and_(this_hang, r.signature_key == key)
    cols = [_ROLLUP_COLUMNS[k].label(k) for k in group_by]
    per_agent = (
        select(
            *cols,
            _integer_sum(case((this_hang, r.hung), else_=0)).label("_hangs"),
            _integer_sum(r.passed + r.hung + r.failed).label("_runs"),
            _integer_sum(r.failed).label("_failed"),
            _integer_sum(r.passed).label("_passed"),
            _integer_sum(r.errors).label("_errors"),
            _integer_sum(r.lost).label("_lost"),
            _integer_sum(r.iterations).label("_iterations"),
            func.sum(r.run_seconds).label("_seconds"),
        )
        .where(*(_ROLLUP_COLUMNS[k] == v for k, v in only.items()))
        .where(*([] if hardware_ids is None else [r.hardware_config_id.in_(hardware_ids)]))
        .group_by(*cols, r.agent_id)
        .subquery()
    )
    result = _groups(session, per_agent, group_by)
    for row in result:
        for k, none in _NONE_SENTINEL.items():
            if row.keys.get(k, None) == none and k in row.keys:
                row.keys[k] = None
    if "signature" in group_by:
        _signature_texts(session, result)
    _label_keys(session, result)
    return result


def _groups(session: Session, per_agent: Subquery, group_by: Sequence[str]) -> list[GroupRow]:
    """Fold per-(group, agent) counts into one row per group inside the database,
    with the sums ``Spread`` needs: Python then sees hundreds of rows, not the
    tens of thousands a grouping by five keys and agent makes at a million runs."""
    c = per_agent.c
    keys = [c[k] for k in group_by]
    counted = c._runs > 0
    query = select(
        *keys,
        func.sum(c._hangs),
        func.sum(c._runs),
        func.sum(c._failed),
        func.sum(c._passed),
        func.sum(c._errors),
        func.sum(c._lost),
        func.sum(c._iterations),
        func.sum(c._seconds),
        func.sum(case((counted, 1), else_=0)),
        func.sum(case((counted, cast(c._hangs, Float) * c._hangs / c._runs), else_=0.0)),
        func.sum(case((counted, 1.0 / cast(c._runs, Float)), else_=0.0)),
    ).group_by(*keys)
    rows = []
    for rec in session.execute(query):
        hangs, runs, failed, passed, errors, lost, iterations, seconds = rec[len(keys) : -3]
        agents, hangs_sq_per_run, inverse_runs = rec[-3:]
        counts = Counts(
            runs=int(runs or 0),
            hangs=int(hangs or 0),
            failed=int(failed or 0),
            passed=int(passed or 0),
            errors=int(errors or 0),
            lost=int(lost or 0),
            iterations=int(iterations or 0),
            run_seconds=float(seconds or 0.0),
        )
        if not (counts.runs or counts.errors or counts.lost):
            continue
        spread = Spread(int(agents or 0), float(hangs_sq_per_run or 0), float(inverse_runs or 0))
        rows.append(GroupRow(dict(zip(group_by, rec[: len(keys)], strict=True)), counts, spread))
    return rows


def _signature_texts(session: Session, rows: list[GroupRow]) -> None:
    """Rollups key signatures by their short hash; rows show the signature itself."""
    keys = {r.keys["signature"] for r in rows} - {"", PENDING_LABEL}
    texts = dict(
        session.execute(
            select(Run.signature_key, Run.signature).where(Run.signature_key.in_(keys)).distinct()
        ).all()
    )
    for r in rows:
        key = r.keys["signature"]
        r.keys["signature"] = None if key == "" else texts.get(key, key)


def _scan(
    session: Session,
    *,
    group_by: Sequence[str],
    job_id: int | None,
    label: str | None,
    signature: str | None,
    only: Mapping[str, str],
    hardware_ids: Collection[int] | None,
) -> list[GroupRow]:
    cols = [GROUP_KEYS[k].label(k) for k in group_by]
    is_hang: ColumnElement[bool] = Run.status == RunState.HUNG
    if label is not None:
        is_hang = and_(is_hang, LABEL == label)  # noqa: SIM300 - a column, not a constant
    if signature is not None:
        is_hang = and_(is_hang, SIGNATURE == signature)  # noqa: SIM300

    def n(condition: ColumnElement[bool]) -> Any:
        return func.sum(case((condition, 1), else_=0))

    counted = Run.status.in_(COUNTED)
    where: list[ColumnElement[bool]] = [
        Run.status.in_((*COUNTED, RunState.ERROR, RunState.LOST)),
        Run.discount.is_(None),  # harness problems are flagged apart (health.harness_problems)
    ]
    if job_id is not None:
        where.append(Run.job_id == job_id)
    where.extend(GROUP_KEYS[k] == v for k, v in only.items())
    if hardware_ids is not None:
        where.append(Run.hardware_config_id.in_(hardware_ids))
    per_agent = (
        select(
            *cols,
            n(is_hang).label("_hangs"),
            n(counted).label("_runs"),
            n(Run.status == RunState.FAILED).label("_failed"),
            n(Run.status == RunState.PASSED).label("_passed"),
            n(Run.status == RunState.ERROR).label("_errors"),
            n(Run.status == RunState.LOST).label("_lost"),
            _integer_sum(case((counted, Run.iterations), else_=0)).label("_iterations"),
            func.sum(case((counted, Run.duration_s), else_=0.0)).label("_seconds"),
        )
        .where(*where)
        .group_by(*cols, Run.agent_id)
        .subquery()
    )
    result = _groups(session, per_agent, group_by)
    _label_keys(session, result)
    return result
