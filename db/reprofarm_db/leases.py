"""Leasing runs to agents, heartbeats, results and the sweep of expired leases.

Every lease carries a secret (``lease_token``) handed out once, with the lease;
heartbeats, uploads and the result must prove it, so an agent's token alone
cannot touch a run, and a stale attempt cannot pass for the current one.

Postgres: candidates are read unlocked, and the one chosen is locked with FOR
UPDATE SKIP LOCKED and re-checked, so concurrent lease requests never wait on each
other, never take the same run, and never skip runs another request only looked at. SQLite: every
write transaction begins IMMEDIATE (see engine.py), one writer at a time.

Every status change goes through ``states.move_run`` (the state machine); a heartbeat
writes only while the run is still leased (one conditional UPDATE), so a heartbeat that
crosses the result never overwrites the result's numbers.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from reprofarm_protocol.controls import AgentHealth
from reprofarm_protocol.jobs import (
    FINAL_STATES,
    FINISHED_JOB_STATES,
    BuildRef,
    Heartbeat,
    HeartbeatReply,
    JobState,
    LeasedRun,
    RunReport,
    RunState,
)
from sqlalchemy import ColumnElement, and_, cast, false, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from reprofarm_db import analyses, builds, health, jobs, studies, tokens
from reprofarm_db.errors import Conflict, NotFound, Unproven
from reprofarm_db.models import Agent, Build, HealthCheck, Job, Run
from reprofarm_db.states import locked_runs, move_run

_CANDIDATES = 20
_LIVE_JOB_STATES = (JobState.QUEUED, JobState.RUNNING)
_STOPPING_JOB_STATES = FINISHED_JOB_STATES
"""A static job finishes only once no run is open, so for it this means cancelled; a
study finishes when it decides, and its runs still out stop at their next heartbeat."""
_PASSES = 3
"""Candidates are read in pages of 20; when other claims held some of them, up to
two more pages past those are read before the agent goes back to waiting."""


def _eligible(
    agent: Agent, *, dialect: str, now: datetime, avoid_grace_s: float
) -> list[ColumnElement[bool]]:
    """Everything that makes a ready run this agent's to take, in SQL: a claim that
    matched selectors in Python gave up after a page of runs it could not take, and
    slept while a run it could take waited further down the queue."""
    pool_match = Run.pool.in_(agent.pools) if agent.pools else false()
    if agent.health == AgentHealth.UNHEALTHY:
        # An unhealthy agent's runs would not count: it takes only its next check.
        checking = select(HealthCheck.job_id).where(
            HealthCheck.agent_id == agent.id, HealthCheck.finished_at.is_(None)
        )
        return [Run.status == RunState.READY, Run.job_id.in_(checking)]
    return [
        Run.status == RunState.READY,
        or_(
            Run.required_agent_id == agent.id,
            and_(Run.required_agent_id.is_(None), or_(Run.pool.is_(None), pool_match)),
        ),
        or_(Run.min_cpus.is_(None), Run.min_cpus <= agent.logical_cpus),
        _selector_matches(agent, dialect),
        # Never a run of a finished job: a lost run's retry can be committed just after its
        # job was cancelled (the sweep then ends it).
        select(Job.id).where(Job.id == Run.job_id, Job.status.in_(_LIVE_JOB_STATES)).exists(),
        # A retried run gives another agent the first chance.
        or_(
            Run.avoid_agent_id.is_(None),
            Run.avoid_agent_id != agent.id,
            Run.ready_at.is_(None),
            Run.ready_at <= now - timedelta(seconds=avoid_grace_s),
        ),
    ]


def _selector_matches(agent: Agent, dialect: str) -> ColumnElement[bool]:
    """Every key of the run's selector names one of the agent's facts with that value
    (as text, the way selectors are written)."""
    facts = {str(k): str(v) for k, v in (agent.facts or {}).items()}
    if dialect == "postgresql":
        contained: ColumnElement[bool] = cast(Run.selector, JSONB).contained_by(
            literal(facts, JSONB)
        )
        return contained
    wanted = func.json_each(Run.selector).table_valued("key", "value").alias("wanted")
    fact = func.json_each(json.dumps(facts)).table_valued("key", "value").alias("fact")
    differs = wanted.c.value.is_not(
        select(fact.c.value).where(fact.c.key == wanted.c.key).scalar_subquery()
    )
    return ~select(1).select_from(wanted).where(differs).exists()


def _seen_every(lease_s: float) -> timedelta:
    return timedelta(seconds=min(15.0, lease_s / 4))


def note_seen(agent: Agent, *, now: datetime, lease_s: float) -> None:
    """Liveness, written at most once per quarter lease: an idle agent's long-polls
    must not write the agents table on every wake-up. Online means seen within two
    lease periods, so this never makes a live agent look offline."""
    if now - agent.last_seen >= _seen_every(lease_s):
        agent.last_seen = now


def note_seen_by_id(session: Session, *, agent_id: int, now: datetime, lease_s: float) -> None:
    """``note_seen`` without loading the agent: one conditional UPDATE, which writes
    (and locks) the row only when its last_seen is a quarter lease old."""
    session.execute(
        update(Agent)
        .where(Agent.id == agent_id, Agent.last_seen <= now - _seen_every(lease_s))
        .values(last_seen=now)
        .execution_options(synchronize_session=False)
    )


def claim(
    session: Session,
    *,
    agent: Agent,
    now: datetime,
    lease_s: float,
    avoid_grace_s: float,
) -> tuple[Run, Build, str] | None:
    """Lease the most urgent ready run this agent can do: (run, build, the lease's
    secret in plain text, seen only here), or None."""
    note_seen(agent, now=now, lease_s=lease_s)
    if agent.needs_reboot:
        return None
    dialect = session.get_bind().dialect.name
    eligible = _eligible(agent, dialect=dialect, now=now, avoid_grace_s=avoid_grace_s)
    built = (
        select(Build.id)
        .where(Build.go_version == Run.go_version, Build.target == agent.target)
        .exists()
    )
    # Candidates are ids: a page of twenty Run objects cost more api CPU than the
    # rest of the claim (py-spy, docs/operations.md); only the one taken is loaded.
    query = select(Run.id).where(*eligible, built).order_by(Run.priority.desc(), Run.id)
    claimed = _claim_first(
        session, agent=agent, query=query, dialect=dialect, now=now, lease_s=lease_s
    )
    if claimed is None:
        _ask_for_a_missing_build(
            session, agent=agent, waiting=select(Run.go_version).where(*eligible, ~built), now=now
        )
    return claimed


def _claim_first(
    session: Session,
    *,
    agent: Agent,
    query: Select[Any],
    dialect: str,
    now: datetime,
    lease_s: float,
) -> tuple[Run, Build, str] | None:
    seen: list[int] = []
    for _pass in range(_PASSES):
        page = query.where(Run.id.not_in(seen)) if seen else query
        held_elsewhere = False
        run_ids: list[int] = list(session.scalars(page.limit(_CANDIDATES)))
        for run_id in run_ids:
            seen.append(run_id)
            if dialect == "postgresql":
                run = _lock_if_still_ready(session, run_id)
                if run is None:
                    held_elsewhere = True  # another claim holds or took it
                    continue
            else:  # SQLite: one writer at a time, so the candidate is still ready
                run = session.get_one(Run, run_id)
            claimed = _lease(session, agent=agent, run=run, now=now, lease_s=lease_s)
            if claimed is not None:
                return claimed
        if not held_elsewhere:
            return None  # every candidate was this agent's to take: no later page helps
    return None


def _ask_for_a_missing_build(
    session: Session, *, agent: Agent, waiting: Select[str], now: datetime
) -> None:
    """A run this agent could take but for a build of its Go version for the agent's
    target (a job that waited for agents did not know this target): ask for the build.
    Such runs are not candidates at all, so they never hide the runs behind them."""
    go_version = session.scalar(waiting.limit(1))
    if go_version is not None:
        builds.request(session, go_version=go_version, target=agent.target, now=now)


def _lease(
    session: Session, *, agent: Agent, run: Run, now: datetime, lease_s: float
) -> tuple[Run, Build, str] | None:
    build = builds.newest(session, go_version=run.go_version, target=agent.target)
    if build is None:
        return None  # not a candidate (claim's query asks for a build): gone meanwhile
    secret = tokens.new_secret()
    leased = move_run(
        run,
        RunState.LEASED,
        agent_id=agent.id,
        hardware_config_id=agent.hardware_config_id,
        build_id=build.id,
        leased_at=now,
        lease_expires_at=now + timedelta(seconds=lease_s),
        lease_token_hash=tokens.hash_secret(secret),
    )
    if not leased:
        return None
    agent.current_run_id = run.id
    return run, build, secret


def _lock_if_still_ready(session: Session, run_id: int) -> Run | None:
    """Lock and load the one run about to be leased, if it is still ready and
    nobody else holds it. Candidates are read unlocked: locking all of them made agents woken
    together skip each other's twenty candidates and go back to waiting while runs
    were ready. FOR UPDATE re-reads the row as committed, so a run leased since
    is not returned."""
    return session.scalar(
        select(Run)
        .where(Run.id == run_id, Run.status == RunState.READY)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )


def lease_for(
    session: Session,
    *,
    agent_id: int,
    now: datetime,
    lease_s: float,
    avoid_grace_s: float,
) -> LeasedRun | None:
    """One lease request: claim a run and describe it as the agent needs it."""
    agent = session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} does not exist")
    claimed = claim(session, agent=agent, now=now, lease_s=lease_s, avoid_grace_s=avoid_grace_s)
    if claimed is None:
        return None
    run, build, secret = claimed
    spec = jobs.run_spec(session, run=run)
    assert run.lease_expires_at is not None
    return LeasedRun(
        run_id=run.id,
        job_id=run.job_id,
        attempt=run.attempt,
        lease_token=secret,
        lease_expires_at=run.lease_expires_at,
        heartbeat_interval_s=lease_s / 4,
        scenario=run.scenario,
        build=BuildRef(
            sha256=build.sha256,
            target=build.target,
            go_version=build.go_version,
            bytes=build.bytes,
            fix_present=build.fix_present,
            url=f"/api/v1/builds/{build.id}/binary",
        ),
        cpus=run.cpus,
        affinity=run.affinity,
        workers=spec["workers"],
        iterations=spec["iterations"] or 0,
        duration_s=spec["duration_s"],
        stall_timeout_s=spec["stall_timeout_s"],
        control_chance=jobs.run_chance(spec, run),
        process_dumps=spec["process_dumps"],
    )


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
    if run.agent_id != agent_id:
        raise Conflict(f"run {run_id} is not leased to this agent")
    if not tokens.matches(lease_token, run.lease_token_hash):
        raise Unproven(f"X-Lease-Token: missing or not the secret of run {run_id}'s lease")
    return run


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
    attempt. One round trip when it is: a conditional UPDATE ... RETURNING that proves
    the lease (the run, the agent, the lease secret's hash, status leased), extends it
    and reads the cancellation; so a heartbeat that crosses the result (or the sweep)
    changes nothing. ``cancel`` is the run's flag or its job's cancellation. Only when
    it matched nothing is the run read, to tell a lapsed lease (``lease_valid`` false)
    from one never held (NotFound, Conflict, Unproven, as ``prove_lease``)."""
    expires = now + timedelta(seconds=lease_s)
    job_status = select(Job.status).where(Job.id == Run.job_id).scalar_subquery()
    extended = None
    if lease_token is not None:
        extended = session.execute(
            update(Run)
            .where(
                Run.id == run_id,
                Run.status == RunState.LEASED,
                Run.agent_id == agent_id,
                Run.lease_token_hash == tokens.hash_secret(lease_token),
            )
            .values(lease_expires_at=expires, iterations=beat.iterations, duration_s=beat.elapsed_s)
            .returning(Run.cancel_requested, job_status)
            .execution_options(synchronize_session=False)
        ).first()
    if extended is None:
        run = prove_lease(session, agent_id=agent_id, run_id=run_id, lease_token=lease_token)
        note_seen_by_id(session, agent_id=agent_id, now=now, lease_s=lease_s)
        cancelled = run.cancel_requested or _job_cancelled(session, job_id=run.job_id)
        return HeartbeatReply(cancel=cancelled, lease_valid=False, lease_expires_at=None)
    # The agent's row after the run's, in the order a result and the sweep take them:
    # the other order deadlocked a heartbeat against the result it crossed.
    note_seen_by_id(session, agent_id=agent_id, now=now, lease_s=lease_s)
    flag, status = extended
    return HeartbeatReply(
        cancel=bool(flag) or status in _STOPPING_JOB_STATES,
        lease_valid=True,
        lease_expires_at=expires,
    )


def _job_cancelled(session: Session, *, job_id: int) -> bool:
    """Whether the run's job wants its runs stopped: cancelled, or finished with runs
    still out (a study that decided: its open runs are no longer needed)."""
    return session.scalar(select(Job.status).where(Job.id == job_id)) in _STOPPING_JOB_STATES


def release_agent(session: Session, *, agent_id: int, run_id: int) -> None:
    """Clear the agent's current run if it still names this one: a claim of its next run
    that committed meanwhile is not undone."""
    session.execute(
        update(Agent)
        .where(Agent.id == agent_id, Agent.current_run_id == run_id)
        .values(current_run_id=None)
        .execution_options(synchronize_session=False)
    )


def record_result(
    session: Session,
    *,
    agent: Agent,
    run_id: int,
    lease_token: str | None,
    report: RunReport,
    now: datetime,
) -> tuple[Run, bool]:
    """Store an agent's result. Returns (run, counted): a result for a lost lease is
    kept in ``late_result`` (the first one; a different second one is a Conflict) and
    never counted; a repeat is a no-op. A result that did not hang, for a run whose job
    was cancelled meanwhile, is stored ``cancelled`` (its payload kept)."""
    run = prove_lease(session, agent_id=agent.id, run_id=run_id, lease_token=lease_token, lock=True)
    payload = report.result.model_dump(mode="json")
    agent.last_seen = now
    if report.result.unkillable:
        agent.needs_reboot = True
    if run.status == RunState.LEASED:
        cancelled = run.cancel_requested or _job_cancelled(session, job_id=run.job_id)
        status = RunState(report.result.status.value)
        if cancelled and status is not RunState.HUNG:
            status = RunState.CANCELLED  # a hang found while cancelling is still evidence
        discount = health.discount_for(session, agent=agent, run=run, status=status)
        move_run(
            run,
            status,
            result=payload,
            iterations=report.result.iterations,
            duration_s=report.result.duration_s,
            reason=report.result.reason,
            finished_at=now,
            lease_expires_at=None,
            cancel_requested=cancelled,
            discount=discount.value if discount else None,
        )
        analyses.label_result(run)
        release_agent(session, agent_id=agent.id, run_id=run.id)
        session.flush()
        _run_ended(session, run)
        health.conclude_if_decided(session, run=run, now=now)
        return run, True
    if run.status in FINAL_STATES and run.result == payload:
        return run, False
    if run.status == RunState.LOST:
        if run.late_result is None:
            run.late_result = payload
        elif run.late_result != payload:
            raise Conflict(
                f"run {run_id} was lost and keeps the first late result it was sent; "
                f"this one differs"
            )
        release_agent(session, agent_id=agent.id, run_id=run.id)
        return run, False
    raise Conflict(f"run {run_id} is already {run.status} with a different result")


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
            _run_ended(session, run)
    return lost


def _run_ended(session: Session, run: Run) -> None:
    """A study takes a step after each run that ends; a static job is finished once its
    last run ended."""
    if run.cell is not None:
        studies.note_run_ended(session, job_id=run.job_id)
    else:
        jobs.refresh_status(session, job_id=run.job_id)
