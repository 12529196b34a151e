"""Leasing runs to agents, heartbeats, results and the sweep of expired leases.

Every lease carries a secret (``lease_token``) handed out once, with the lease;
heartbeats, uploads and the result must prove it, so an agent's token alone
cannot touch a run, and a stale attempt cannot pass for the current one.

Postgres: candidates are read unlocked, and the one chosen is locked with FOR
UPDATE SKIP LOCKED and re-checked, so concurrent lease requests never wait on each
other, never take the same run, and never skip runs another request only looked at. SQLite: every
write transaction begins IMMEDIATE (see engine.py), one writer at a time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from reprofarm_protocol.jobs import (
    FINAL_STATES,
    BuildRef,
    Heartbeat,
    HeartbeatReply,
    JobState,
    LeasedRun,
    RunReport,
    RunState,
)
from sqlalchemy import ColumnElement, and_, false, or_, select
from sqlalchemy.orm import Session

from reprofarm_db import analyses, builds, jobs, tokens
from reprofarm_db.errors import Conflict, NotFound, Unproven
from reprofarm_db.models import Agent, Build, Run

_CANDIDATES = 20
_PASSES = 3
"""Candidates are read in pages of 20; when other claims held some of them, up to
two more pages past those are read before the agent goes back to waiting."""


def _eligible(agent: Agent) -> list[ColumnElement[bool]]:
    pool_match = Run.pool.in_(agent.pools) if agent.pools else false()
    return [
        Run.status == RunState.READY,
        or_(
            Run.required_agent_id == agent.id,
            and_(Run.required_agent_id.is_(None), or_(Run.pool.is_(None), pool_match)),
        ),
        or_(Run.min_cpus.is_(None), Run.min_cpus <= agent.logical_cpus),
    ]


def note_seen(agent: Agent, *, now: datetime, lease_s: float) -> None:
    """Liveness, written at most once per quarter lease: an idle agent's long-polls
    must not write the agents table on every wake-up. Online means seen within two
    lease periods, so this never makes a live agent look offline."""
    if (now - agent.last_seen).total_seconds() >= min(15.0, lease_s / 4):
        agent.last_seen = now


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
    query = select(Run).where(*_eligible(agent)).order_by(Run.priority.desc(), Run.id)
    postgres = session.get_bind().dialect.name == "postgresql"
    seen: list[int] = []
    for _pass in range(_PASSES):
        page = query.where(Run.id.not_in(seen)) if seen else query
        held_elsewhere = False
        for run in session.scalars(page.limit(_CANDIDATES)):
            seen.append(run.id)
            if not _may_take(agent, run, now=now, avoid_grace_s=avoid_grace_s):
                continue
            if postgres and not _lock_if_still_ready(session, run):
                held_elsewhere = True  # another claim holds or took it
                continue
            claimed = _lease(session, agent=agent, run=run, now=now, lease_s=lease_s)
            if claimed is not None:
                return claimed
        if not held_elsewhere:
            return None  # no candidate was skipped for a lock: no later page can help
    return None


def _may_take(agent: Agent, run: Run, *, now: datetime, avoid_grace_s: float) -> bool:
    if any(str(agent.facts.get(k)) != v for k, v in run.selector.items()):
        return False
    # A retried run gives another agent the first chance.
    return not (
        run.avoid_agent_id == agent.id
        and run.ready_at is not None
        and (now - run.ready_at).total_seconds() < avoid_grace_s
    )


def _lease(
    session: Session, *, agent: Agent, run: Run, now: datetime, lease_s: float
) -> tuple[Run, Build, str] | None:
    build = builds.newest(session, go_version=run.go_version, target=agent.target)
    if build is None:
        # A job that waited for agents did not know this target: build it now.
        builds.request(session, go_version=run.go_version, target=agent.target, now=now)
        return None
    run.status = RunState.LEASED
    run.agent_id = agent.id
    run.hardware_config_id = agent.hardware_config_id
    run.build_id = build.id
    run.leased_at = now
    run.lease_expires_at = now + timedelta(seconds=lease_s)
    secret = tokens.new_secret()
    run.lease_token_hash = tokens.hash_secret(secret)
    agent.current_run_id = run.id
    return run, build, secret


def _lock_if_still_ready(session: Session, run: Run) -> bool:
    """Lock the one run about to be leased, if it is still ready and nobody else
    holds it. Candidates are read unlocked: locking all of them made agents woken
    together skip each other's twenty candidates and go back to waiting while runs
    were ready. FOR UPDATE re-reads the row as committed, so a run leased since
    is not returned."""
    locked = session.scalar(
        select(Run)
        .where(Run.id == run.id, Run.status == RunState.READY)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    return locked is not None


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
    spec = jobs.get_or_raise(session, job_id=run.job_id).spec
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
        control_chance=spec["control_chance"],
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
        query = query.with_for_update()
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
    agent: Agent,
    run_id: int,
    lease_token: str | None,
    beat: Heartbeat,
    now: datetime,
    lease_s: float,
) -> HeartbeatReply:
    run = prove_lease(session, agent_id=agent.id, run_id=run_id, lease_token=lease_token)
    note_seen(agent, now=now, lease_s=lease_s)
    if run.status != RunState.LEASED:
        return HeartbeatReply(cancel=run.cancel_requested, lease_valid=False, lease_expires_at=None)
    run.lease_expires_at = now + timedelta(seconds=lease_s)
    run.iterations = beat.iterations
    run.duration_s = beat.elapsed_s
    return HeartbeatReply(
        cancel=run.cancel_requested, lease_valid=True, lease_expires_at=run.lease_expires_at
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
    """Store an agent's result. Returns (run, counted): a result for a lost
    lease is kept in ``late_result`` and never counted; a repeat is a no-op."""
    run = prove_lease(session, agent_id=agent.id, run_id=run_id, lease_token=lease_token, lock=True)
    payload = report.result.model_dump(mode="json")
    agent.last_seen = now
    if report.result.unkillable:
        agent.needs_reboot = True
    if run.status == RunState.LEASED:
        status = RunState(report.result.status.value)
        if run.cancel_requested and status is not RunState.HUNG:
            status = RunState.CANCELLED  # a hang found while cancelling is still evidence
        run.status = status
        run.result = payload
        run.iterations = report.result.iterations
        run.duration_s = report.result.duration_s
        run.reason = report.result.reason
        run.finished_at = now
        run.lease_expires_at = None
        analyses.label_result(run)
        if agent.current_run_id == run.id:
            agent.current_run_id = None
        jobs.refresh_status(session, job=jobs.get_or_raise(session, job_id=run.job_id))
        return run, True
    if run.status in FINAL_STATES and run.result == payload:
        return run, False
    if run.status == RunState.LOST:
        run.late_result = payload
        if agent.current_run_id == run.id:
            agent.current_run_id = None
        return run, False
    raise Conflict(f"run {run_id} is already {run.status} with a different result")


def sweep(session: Session, *, now: datetime, max_attempts: int) -> list[int]:
    """Runs whose lease expired become ``lost``; each gets a new attempt (up to
    max_attempts), preferably for another agent. Safe to run twice."""
    query = select(Run).where(Run.status == RunState.LEASED, Run.lease_expires_at < now)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    lost: list[int] = []
    for run in session.scalars(query):
        run.status = RunState.LOST
        run.finished_at = now
        run.reason = f"lease expired at {run.lease_expires_at}: agent {run.agent_id} went silent"
        if run.agent_id is not None:
            agent = session.get(Agent, run.agent_id)
            if agent is not None and agent.current_run_id == run.id:
                agent.current_run_id = None
        job = jobs.get_or_raise(session, job_id=run.job_id)
        lost.append(run.id)
        if job.status != JobState.CANCELLED and run.attempt < max_attempts:
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
                    repeat_index=run.repeat_index,
                    pool=run.pool,
                    required_agent_id=run.required_agent_id,
                    selector=run.selector,
                    avoid_agent_id=run.agent_id,
                )
            )
        else:
            session.flush()
            jobs.refresh_status(session, job=job)
    return lost
