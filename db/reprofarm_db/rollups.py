"""Statistics counters per cell, kept exact in the transaction that changes a run.

A cell is one combination of everything statistics group by: hardware configuration,
scenario, Go version, CPU count, affinity, pool, agent, and the analyzer's label and
signature. Its counters (passed, hung, failed, errors, lost, iterations and seconds of
counted runs) are what a full scan of ``runs`` would sum for it. A run with a
``discount`` (reprofarm_db.health: a harness problem) is in no cell.

How they stay exact: every session made by ``engine.make_sessionmaker`` computes, at
each flush, what each new, changed or deleted run contributed before and contributes
now, and moves the difference into ``run_rollups`` with one upsert per touched cell,
inside the same transaction. No code path (a result, a lost lease, a re-analysis, a
test inserting rows) can forget it. Bulk loads that bypass the ORM (COPY) call
``rebuild``; ``reprofarm db rebuild-rollups`` does the same by hand.

Key columns hold no NULLs (a unique index would let NULL cells repeat): ``0`` means no
hardware, all CPUs or no agent, ``''`` no pool or no label, ``-1`` (``NO_CHANCE``) no
control chance of the run's own (hangtest's default, or a run stored before the chance
was an axis: a real chance is never negative); a hung run the analyzer has
not read yet is ``pending`` in both label and signature_key.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from reprofarm_protocol.analysis import PENDING_LABEL
from reprofarm_protocol.jobs import COUNTED_RUN_STATES, RunState
from sqlalchemy import Connection, delete, event, func, inspect, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from reprofarm_db.models import ROLLUP_COUNTERS as COUNTERS
from reprofarm_db.models import ROLLUP_KEYS as KEY_COLUMNS
from reprofarm_db.models import Base, Run, RunRollup

_TRACKED = (*KEY_COLUMNS, "status", "iterations", "duration_s", "signature", "discount")
CONTRIBUTING = tuple(name for name in _TRACKED if name != "signature")
"""The run's columns ``contribution`` reads."""
_STATUS_COUNTER = {
    RunState.PASSED: "passed",
    RunState.HUNG: "hung",
    RunState.FAILED: "failed",
    RunState.ERROR: "errors",
    RunState.LOST: "lost",
}
_COUNTED = COUNTED_RUN_STATES
NO_CHANCE = -1.0
OUTCOMES = tuple(_STATUS_COUNTER.values())
"""The counters of finished runs by outcome (the rest count iterations and seconds)."""
_KEPT_SQL = ", ".join(f"'{state.value}'" for state in sorted(_STATUS_COUNTER))
_COUNTED_SQL = ", ".join(f"'{state.value}'" for state in sorted(_COUNTED))


@dataclass(frozen=True)
class Contribution:
    key: tuple[Any, ...]
    counts: tuple[float, ...]  # in COUNTERS order


def contribution(values: dict[str, Any]) -> Contribution | None:
    """What a run with these column values adds to its cell (None: nothing). A discounted
    run (a harness problem: reprofarm_db.health) adds nothing at all."""
    counter = _STATUS_COUNTER.get(values["status"])
    if counter is None or values["discount"] is not None:
        return None
    hung = values["status"] == RunState.HUNG
    pending = PENDING_LABEL if hung else ""
    key = (
        values["hardware_config_id"] or 0,
        values["scenario"],
        values["go_version"],
        values["cpus"] or 0,
        values["affinity"],
        values["pool"] or "",
        values["agent_id"] or 0,
        values["label"] or pending,
        values["signature_key"] or pending,
        NO_CHANCE if values["control_chance"] is None else values["control_chance"],
    )
    counted = values["status"] in _COUNTED
    counts = tuple(
        (1 if name == counter else 0)
        if name not in ("iterations", "run_seconds")
        else (values[_source(name)] or 0 if counted else 0)
        for name in COUNTERS
    )
    return Contribution(key, counts)


def _source(counter: str) -> str:
    return "duration_s" if counter == "run_seconds" else counter


def _now_and_before(run: Run) -> tuple[dict[str, Any], dict[str, Any]]:
    state = inspect(run)
    now: dict[str, Any] = {}
    before: dict[str, Any] = {}
    for name in _TRACKED:
        history = state.attrs[name].history
        value = getattr(run, name)
        now[name] = value
        before[name] = history.deleted[0] if history.deleted else value
    return now, before


def _deltas(session: Session) -> dict[tuple[Any, ...], list[float]]:
    moved: dict[tuple[Any, ...], list[float]] = defaultdict(lambda: [0.0] * len(COUNTERS))

    def add(c: Contribution | None, sign: int) -> None:
        if c is not None:
            cell = moved[c.key]
            for i, n in enumerate(c.counts):
                cell[i] += sign * n

    for run in session.new:
        if isinstance(run, Run):
            add(contribution(_now_and_before(run)[0]), +1)
    for run in session.dirty:
        if isinstance(run, Run) and session.is_modified(run):
            now, before = _now_and_before(run)
            add(contribution(before), -1)
            add(contribution(now), +1)
    for run in session.deleted:
        if isinstance(run, Run):
            add(contribution(_now_and_before(run)[1]), -1)
    return {k: v for k, v in moved.items() if any(v)}


@functools.cache
def _upsert_statement(dialect: str) -> Any:
    """Add a cell's counters, or create the cell: built once per dialect (building it
    for every result, ``excluded`` and all, was a tenth of an api process's CPU under
    ingest), its values bound per execution."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(Base.metadata.tables[RunRollup.__tablename__])
    return stmt.on_conflict_do_update(
        index_elements=list(KEY_COLUMNS),
        set_={c: stmt.table.c[c] + stmt.excluded[c] for c in COUNTERS},
    )


def _upsert(session: Session, moved: dict[tuple[Any, ...], list[float]]) -> None:
    rows = [
        {**dict(zip(KEY_COLUMNS, key, strict=True)), **dict(zip(COUNTERS, counts, strict=True))}
        for key, counts in sorted(moved.items(), key=lambda kv: repr(kv[0]))  # one lock order
    ]
    statement = _upsert_statement(session.get_bind().dialect.name)
    connection = session.connection()
    for row in rows:  # one at a time, in that order: an executemany may batch them
        connection.execute(statement, row)


def add_ended(conn: Connection, run: dict[str, Any]) -> None:
    """Count a run that a statement moved from leased to an end (``leases.record_result``):
    a leased run is in no cell, so its new cell gains all it contributes now. ``run``
    holds the ``CONTRIBUTING`` columns as the statement left them."""
    added = contribution(run)
    if added is None:
        return
    row = {
        **dict(zip(KEY_COLUMNS, added.key, strict=True)),
        **dict(zip(COUNTERS, added.counts, strict=True)),
    }
    conn.execute(_upsert_statement(conn.dialect.name), row)


def track(factory: sessionmaker[Session]) -> None:
    """Keep the rollups of every session this factory makes."""

    @event.listens_for(factory, "before_flush")
    def _collect(session: Session, _context: Any, _instances: Any) -> None:
        # What this flush moves, replacing whatever a flush that failed left: its
        # changes were rolled back (a savepoint of a batch of results), and adding its
        # deltas at the next flush counted a refused result.
        session.info[_DELTAS] = _deltas(session)

    @event.listens_for(factory, "after_flush")
    def _apply(session: Session, _context: Any) -> None:
        moved = session.info.pop(_DELTAS, None)
        if moved:
            _upsert(session, moved)

    @event.listens_for(factory, "after_soft_rollback")
    def _forget(session: Session, _previous: Any) -> None:
        session.info.pop(_DELTAS, None)


_DELTAS = "rollup_deltas"


def rebuild(session: Session) -> int:
    """Recompute every cell from the runs table; returns the number of cells."""
    session.execute(delete(RunRollup))
    hung = f"status = '{RunState.HUNG.value}'"
    counted = f"status IN ({_COUNTED_SQL})"
    key_exprs = (
        "COALESCE(hardware_config_id, 0)",
        "scenario",
        "go_version",
        "COALESCE(cpus, 0)",
        "affinity",
        "COALESCE(pool, '')",
        "COALESCE(agent_id, 0)",
        f"COALESCE(label, CASE WHEN {hung} THEN '{PENDING_LABEL}' ELSE '' END)",
        f"COALESCE(signature_key, CASE WHEN {hung} THEN '{PENDING_LABEL}' ELSE '' END)",
        f"COALESCE(control_chance, {NO_CHANCE})",
    )
    state_of = {counter: state.value for state, counter in _STATUS_COUNTER.items()}
    counter_exprs = tuple(
        f"SUM(CASE WHEN status = '{state_of[c]}' THEN 1 ELSE 0 END)"
        if c in state_of
        else f"SUM(CASE WHEN {counted} THEN {_source(c)} ELSE 0 END)"
        for c in COUNTERS
    )
    session.execute(
        text(
            f"INSERT INTO run_rollups ({', '.join((*KEY_COLUMNS, *COUNTERS))}) "  # noqa: S608 - constants only
            f"SELECT {', '.join((*key_exprs, *counter_exprs))} FROM runs "
            f"WHERE status IN ({_KEPT_SQL}) AND discount IS NULL "
            f"GROUP BY {', '.join(key_exprs)}"
        )
    )
    return int(session.execute(text("SELECT count(*) FROM run_rollups")).scalar_one())


def cells(session: Session) -> dict[tuple[Any, ...], tuple[float, ...]]:
    """Every non-empty cell and its counters (rebuild == incremental checks)."""
    found = {}
    for row in session.scalars(select(RunRollup)):
        counts = tuple(float(getattr(row, c)) for c in COUNTERS)
        if any(counts):
            found[tuple(getattr(row, k) for k in KEY_COLUMNS)] = counts
    return found


def totals(session: Session) -> dict[str, float]:
    """Every counter summed over all cells: the farm's finished runs by outcome, read
    from the rollups (one row per cell) instead of a scan of the runs."""
    sums = session.execute(
        select(*(func.coalesce(func.sum(getattr(RunRollup, c)), 0) for c in COUNTERS))
    ).one()
    return {c: float(v) for c, v in zip(COUNTERS, sums, strict=True)}
