"""Leasing runs to agents, heartbeats, results and the sweep of expired leases.

Every lease carries a secret (``lease_token``) handed out once, with the lease;
heartbeats, uploads and the result must prove it, so an agent's token alone
cannot touch a run, and a stale attempt cannot pass for the current one.

Claiming a ready run is ``claims`` (the lease long-poll's hot path, as statements).
Postgres: candidates are read unlocked, and the one chosen is locked with FOR
UPDATE SKIP LOCKED and re-checked, so concurrent lease requests never wait on each
other, never take the same run, and never skip runs another request only looked at.
SQLite: every write transaction begins IMMEDIATE (see engine.py), one writer at a time.

Every status change is a step of the state machine: ``states.move_run`` on an object, or
a conditional UPDATE whose step ``states.may_move`` allows (a result ending a leased run,
checked at import); a heartbeat
writes only while the run is still leased (one conditional UPDATE), so a heartbeat that
crosses the result never overwrites the result's numbers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from reprofarm_protocol.jobs import (
    FINAL_STATES,
    FINISHED_JOB_STATES,
    Heartbeat,
    HeartbeatReply,
    RunReport,
    RunState,
)
from reprofarm_protocol.runs import RunStatus
from sqlalchemy import Update, bindparam, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from reprofarm_db import analyses, health, jobs, rollups, studies, tokens
from reprofarm_db.engine import forget_cached
from reprofarm_db.errors import Conflict, NotFound, Unproven
from reprofarm_db.models import Agent, Base, Run
from reprofarm_db.states import locked_runs, may_move, move_run

_STOPPING_JOB_STATES = FINISHED_JOB_STATES
"""A static job finishes only once no run is open, so for it this means cancelled; a
study finishes when it decides, and its runs still out stop at their next heartbeat."""


def prove_lease(
    session: Session, *, agent_id: int, run_id: int, lease_token: str | None, lock: bool = False
) -> Run:
    """The run, once the caller proved it holds (or held) its lease: the run is
    leased to the calling agent, and ``lease_token`` is that lease's secret.
    A lost attempt's token still proves it, so its late result is kept.

    Raises NotFound, Conflict (another agent's run) or Unproven."""
    query = select(Run).where(Run.id == run_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    run = session.scalar(query)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    _prove(run, agent_id=agent_id, lease_token=lease_token)
    return run


class _Leased(Protocol):
    """What proving a lease reads of its run (a ``Run``, or a result's row)."""

    @property
    def id(self) -> int: ...
    @property
    def agent_id(self) -> int | None: ...
    @property
    def lease_token_hash(self) -> str | None: ...


def _prove(run: _Leased, *, agent_id: int, lease_token: str | None) -> None:
    """Raises Conflict (another agent's run) or Unproven (not the lease's secret)."""
    if run.agent_id != agent_id:
        raise Conflict(f"run {run.id} is not leased to this agent")
    if not tokens.matches(lease_token, run.lease_token_hash):
        raise Unproven(f"X-Lease-Token: missing or not the secret of run {run.id}'s lease")


_runs = Base.metadata.tables["runs"]
_jobs = Base.metadata.tables["jobs"]
_JOB_STATUS = select(_jobs.c.status).where(_jobs.c.id == _runs.c.job_id)
_EXTEND = (
    update(_runs)
    .where(
        _runs.c.id == bindparam("run_id"),
        _runs.c.status == RunState.LEASED,
        _runs.c.agent_id == bindparam("holder"),
        _runs.c.lease_token_hash == bindparam("token_hash"),
    )
    .values(
        lease_expires_at=bindparam("expires", type_=_runs.c.lease_expires_at.type),
        iterations=bindparam("progress", type_=_runs.c.iterations.type),
        duration_s=bindparam("elapsed_s", type_=_runs.c.duration_s.type),
    )
    .returning(_runs.c.cancel_requested, _JOB_STATUS.scalar_subquery())
)
"""Built once: only its values are bound per heartbeat (the hot path, claims.py)."""


def heartbeat(
    session: Session,
    *,
    agent_id: int,
    run_id: int,
    lease_token: str | None,
    beat: Heartbeat,
    now: datetime,
    lease_s: float,
) -> HeartbeatReply:
    """Extend the lease and record progress, only while the run is still leased to this
    attempt. One statement when it is: a conditional UPDATE ... RETURNING that proves
    the lease (the run, the agent, the lease secret's hash, status leased), extends it
    and reads the cancellation; so a heartbeat that crosses the result (or the sweep)
    changes nothing. ``cancel`` is the run's flag or its job's cancellation. Only when
    it matched nothing is the run read, to tell a lapsed lease (``lease_valid`` false)
    from one never held (NotFound, Conflict, Unproven, as ``prove_lease``). The agent's
    ``last_seen`` is the caller's to note (the api coalesces it)."""
    expires = now + timedelta(seconds=lease_s)
    extended = None
    if lease_token is not None:
        extended = (
            session.connection()
            .execute(
                _EXTEND,
                {
                    "run_id": run_id,
                    "holder": agent_id,
                    "token_hash": tokens.hash_secret(lease_token),
                    "expires": expires,
                    "progress": beat.iterations,
                    "elapsed_s": beat.elapsed_s,
                },
            )
            .first()
        )
    if extended is None:
        run = prove_lease(session, agent_id=agent_id, run_id=run_id, lease_token=lease_token)
        cancelled = run.cancel_requested or _job_cancelled(session, job_id=run.job_id)
        return HeartbeatReply(cancel=cancelled, lease_valid=False, lease_expires_at=None)
    flag, status = extended
    return HeartbeatReply(
        cancel=bool(flag) or status in _STOPPING_JOB_STATES,
        lease_valid=True,
        lease_expires_at=expires,
    )


def _job_cancelled(session: Session, *, job_id: int) -> bool:
    """Whether the run's job wants its runs stopped: cancelled, or finished with runs
    still out (a study that decided: its open runs are no longer needed)."""
    status = session.connection().scalar(_JOB_STATUS_OF, {"job": job_id})
    return status in _STOPPING_JOB_STATES


_JOB_STATUS_OF = select(_jobs.c.status).where(_jobs.c.id == bindparam("job"))
"""Built once: asked at every result (an ORM select of it was 9% of ingest's api CPU).
Jobs change status only by conditional UPDATEs (states.move_job), so no pending change
of a job waits in the session for a flush."""


_agents = Base.metadata.tables["agents"]
_RELEASE = (
    update(_agents)
    .where(_agents.c.id == bindparam("agent"), _agents.c.current_run_id == bindparam("run"))
    .values(current_run_id=None)
)


def lock_runs_of(session: Session, *, agent_id: int, run_ids: list[int]) -> None:
    """Lock the runs of a batch of results that are this agent's, in id order, before
    the batch writes anything else (its agent's row above all). Taken one by one as
    each result comes, a batch held its agent's row (the first result's release of its
    agent) while it waited for a later run that the sweep held, and the sweep waited for
    that agent's row to release it: a cycle. SQLite has one writer at a time: nothing to do."""
    if session.get_bind().dialect.name != "postgresql" or not run_ids:
        return
    session.connection().execute(
        select(_runs.c.id)
        .where(_runs.c.id.in_(sorted(set(run_ids))), _runs.c.agent_id == agent_id)
        .order_by(_runs.c.id)
        .with_for_update()
    )


def release_agent(session: Session, *, agent_id: int, run_id: int) -> None:
    """Clear the agent's current run if it still names this one: a claim of its next run
    that committed meanwhile is not undone."""
    session.connection().execute(_RELEASE, {"agent": agent_id, "run": run_id})


@dataclass(frozen=True)
class Recorded:
    """What storing a result left of its run: what the routes answer with."""

    id: int
    status: RunState
    cell: int | None
    discount: str | None
    late_result: dict[str, Any] | None


@dataclass(frozen=True)
class _Held:
    """The run a result is for, as read under its lock: what proving the lease and
    choosing the result's status need."""

    id: int
    agent_id: int | None
    lease_token_hash: str | None
    status: str
    cancel_requested: bool
    job_id: int
    job_status: str | None
    scenario: str
    required_agent_id: int | None
    cell: int | None


_HELD = (
    select(
        _runs.c.id,
        _runs.c.agent_id,
        _runs.c.lease_token_hash,
        _runs.c.status,
        _runs.c.cancel_requested,
        _runs.c.job_id,
        _JOB_STATUS.scalar_subquery().label("job_status"),
        _runs.c.scenario,
        _runs.c.required_agent_id,
        _runs.c.cell,
    )
    .where(_runs.c.id == bindparam("run"))
    .with_for_update(of=_runs)
)
"""Built once: the run under its lock (a batch took it already), with its job's status."""


@functools.cache
def _finish(names: tuple[str, ...]) -> Update:
    """The state machine's leased -> ended step, as one conditional UPDATE of these
    columns returning what the run's statistics cell needs; built once per set of
    columns (two: with the labels or without), its values bound per result."""
    return (
        update(_runs)
        .where(_runs.c.id == bindparam("run"), _runs.c.status == RunState.LEASED.value)
        .values({name: bindparam(f"v_{name}", type_=_runs.c[name].type) for name in names})
        .returning(*(_runs.c[name] for name in rollups.CONTRIBUTING))
    )


_ENDED = {RunState(status.value) for status in RunStatus} | {RunState.CANCELLED}
if not all(may_move(RunState.LEASED, to) for to in _ENDED):  # pragma: no cover
    raise ImportError("the state machine no longer lets a leased run end by its result")


def record_result(
    session: Session,
    *,
    agent: Agent,
    run_id: int,
    lease_token: str | None,
    report: RunReport,
    now: datetime,
) -> tuple[Recorded, bool]:
    """Store an agent's result. Returns (what the run became, counted): a result for a
    lost lease is kept in ``late_result`` (the first one; a different second one is a
    Conflict) and never counted; a repeat is a no-op. A result that did not hang, for a
    run whose job was cancelled meanwhile, is stored ``cancelled`` (its payload kept).

    The usual case, a leased run ending, is statements: the run read under its lock
    with its job's status, one conditional ``UPDATE ... RETURNING`` (leased -> ended),
    the agent's release, then its statistics cell's upsert computed from the returned
    row (``rollups.add_ended``). The rare ones (a repeat, a late result) go through the
    ORM. The agent's ``last_seen`` is the caller's to note (the api coalesces it)."""
    session.flush()  # statements below do not autoflush the caller's pending objects
    conn = session.connection()
    row = conn.execute(_HELD, {"run": run_id}).one_or_none()
    if row is None:
        raise NotFound(f"run {run_id} does not exist")
    held = _Held(**row._asdict())
    _prove(held, agent_id=agent.id, lease_token=lease_token)
    payload = report.result.model_dump(mode="json")
    if report.result.unkillable:
        agent.needs_reboot = True
        session.flush()  # the agent's row now, before any statistics cell (lock order)
    if held.status != RunState.LEASED:
        return _record_again(session, agent=agent, held=held, payload=payload)
    ended = _end_leased(session, agent=agent, held=held, report=report, payload=payload, now=now)
    return ended, True


def _end_leased(
    session: Session,
    *,
    agent: Agent,
    held: _Held,
    report: RunReport,
    payload: dict[str, Any],
    now: datetime,
) -> Recorded:
    """The leased run ends with this result: its status (``cancelled`` for a result that
    did not hang in a job that stops), its discount and labels, written as one step."""
    conn = session.connection()
    run_id = held.id
    cancelled = held.cancel_requested or held.job_status in _STOPPING_JOB_STATES
    status = RunState(report.result.status.value)
    if cancelled and status is not RunState.HUNG:
        status = RunState.CANCELLED  # a hang found while cancelling is still evidence
    discount = health.discount_for(session, agent=agent, run=held, status=status)
    labels = analyses.result_labels(status)
    discounted = discount.value if discount else None
    values: dict[str, Any] = {
        "status": status.value,
        "result": payload,
        "iterations": report.result.iterations,
        "duration_s": report.result.duration_s,
        "reason": report.result.reason,
        "finished_at": now,
        "lease_expires_at": None,
        "cancel_requested": cancelled,
        "discount": discounted,
        **labels,
    }
    # Locks: the run (held since _HELD), then the agent, then the statistics cell, in
    # the sweep's order (docs/architecture.md); a cell before the agent made a cycle.
    release_agent(session, agent_id=agent.id, run_id=run_id)
    ended = conn.execute(
        _finish(tuple(values)), {"run": run_id, **{f"v_{k}": v for k, v in values.items()}}
    ).one_or_none()
    if ended is None:  # pragma: no cover - the run's lock is held since _HELD
        raise StaleDataError(f"run {run_id} changed under its lock")
    rollups.add_ended(conn, ended._asdict())
    forget_cached(session, Run, run_id)
    _run_ended(session, job_id=held.job_id, cell=held.cell)
    if health.may_be_check(held):
        run = session.get(Run, run_id, populate_existing=True)
        assert run is not None  # just ended above
        health.conclude_if_decided(session, run=run, now=now)
    return Recorded(id=run_id, status=status, cell=held.cell, discount=discounted, late_result=None)


def _record_again(
    session: Session, *, agent: Agent, held: _Held, payload: dict[str, Any]
) -> tuple[Recorded, bool]:
    """A result for a run that is no longer leased: a repeat (nothing changes), or a late
    result for a lost lease (kept once, never counted)."""
    run = session.get(Run, held.id, populate_existing=True)
    assert run is not None  # read under its lock above
    if run.status in FINAL_STATES and run.result == payload:
        return _recorded(run), False
    if run.status == RunState.LOST:
        if run.late_result is None:
            run.late_result = payload
        elif run.late_result != payload:
            raise Conflict(
                f"run {run.id} was lost and keeps the first late result it was sent; "
                f"this one differs"
            )
        release_agent(session, agent_id=agent.id, run_id=run.id)
        return _recorded(run), False
    raise Conflict(f"run {run.id} is already {run.status} with a different result")


def _recorded(run: Run) -> Recorded:
    return Recorded(
        id=run.id,
        status=RunState(run.status),
        cell=run.cell,
        discount=run.discount,
        late_result=run.late_result,
    )


def sweep(session: Session, *, now: datetime, max_attempts: int) -> list[int]:
    """Runs whose lease expired become ``lost``; each gets a new attempt (up to
    max_attempts), preferably for another agent. Safe to run twice, and beside
    heartbeats: a lease extended meanwhile is no longer expired once its lock is ours."""
    lost: list[int] = []
    expired = locked_runs(
        session, Run.status == RunState.LEASED, Run.lease_expires_at < now, skip_locked=True
    )
    for run in expired:
        went_silent = f"lease expired at {run.lease_expires_at}: agent {run.agent_id} went silent"
        if not move_run(run, RunState.LOST, finished_at=now, reason=went_silent):
            continue
        if run.agent_id is not None:
            release_agent(session, agent_id=run.agent_id, run_id=run.id)
        lost.append(run.id)
        # A study's lost run is not retried here: its next step replaces it if the study
        # still needs it, within its budget and only for a cell still undecided.
        retry = run.cell is None and run.attempt < max_attempts
        if retry and not _job_cancelled(session, job_id=run.job_id):
            session.add(
                Run(
                    job_id=run.job_id,
                    attempt=run.attempt + 1,
                    retry_of=run.id,
                    status=RunState.READY,
                    ready_at=now,
                    priority=run.priority,
                    scenario=run.scenario,
                    go_version=run.go_version,
                    cpus=run.cpus,
                    min_cpus=run.min_cpus,
                    affinity=run.affinity,
                    control_chance=run.control_chance,
                    repeat_index=run.repeat_index,
                    pool=run.pool,
                    required_agent_id=run.required_agent_id,
                    selector=run.selector,
                    avoid_agent_id=run.agent_id,
                )
            )
        else:
            session.flush()
            _run_ended(session, job_id=run.job_id, cell=run.cell)
    return lost


def _run_ended(session: Session, *, job_id: int, cell: int | None) -> None:
    """A study takes a step after each run that ends; a static job is finished once its
    last run ended."""
    if cell is not None:
        studies.note_run_ended(session, job_id=job_id)
    else:
        jobs.refresh_status(session, job_id=job_id)
