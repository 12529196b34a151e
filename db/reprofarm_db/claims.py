"""Leasing a ready run to an agent: the lease long-poll's hot path, as SQL statements.

Why statements and not ORM objects: at 2,000 simulated agents, py-spy put the claim at
a third of an api process's CPU, most of it loading the agent and the run as objects
and building the candidates' query anew for every request (docs/operations.md,
"Sizing"). Here the statements are built once per shape (dialect, and whether the
agent is unhealthy) and only their values are bound per claim; rows are tuples.

The guarantees are the ones ``leases`` documents. Postgres: candidates are read
unlocked, and the one chosen is taken by one conditional UPDATE whose row is locked
with FOR UPDATE SKIP LOCKED and re-checked ready, so concurrent claims never wait on
each other, never take the same run, and never skip runs another claim only looked
at. SQLite: every write transaction begins IMMEDIATE (engine.py), one writer at a
time. The step is the state machine's (``states.may_move``: ready -> leased), written
as ``WHERE status = 'ready'``: a run that left ``ready`` since it was read is not
taken. Leasing contributes to no statistics cell (rollups count finished runs), so
these UPDATEs need no rollup bookkeeping.

Liveness (``agents.last_seen``) is not written here: the api coalesces it
(reprofarm_api.agents.liveness), because an idle agent's every long-poll wrote it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from reprofarm_protocol.controls import AgentHealth
from reprofarm_protocol.jobs import BuildRef, JobState, LeasedRun, RunState
from sqlalchemy import (
    ColumnElement,
    Connection,
    FromClause,
    Select,
    String,
    Subquery,
    Update,
    and_,
    bindparam,
    cast,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from reprofarm_db import builds, jobs, tokens
from reprofarm_db.errors import NotFound
from reprofarm_db.models import Agent, Base, Build, Run
from reprofarm_db.states import may_move

CANDIDATES = 20
"""Candidates read per page."""
PASSES = 3
"""When other claims held some candidates of a page, up to two more pages past them are
read before the agent goes back to waiting."""
_LIVE_JOB_STATES = (JobState.QUEUED, JobState.RUNNING)

_runs = Base.metadata.tables["runs"]
_agents = Base.metadata.tables["agents"]
_jobs = Base.metadata.tables["jobs"]
_builds = Base.metadata.tables["builds"]
_checks = Base.metadata.tables["health_checks"]

if not may_move(RunState.READY, RunState.LEASED):  # pragma: no cover - a broken protocol
    raise RuntimeError("the state machine no longer lets a ready run be leased")


def _is_ready(runs: FromClause) -> ColumnElement[bool]:
    """The run is ready, written into the SQL, not bound: see ``_IS_READY``."""
    return runs.c.status == literal_column(f"'{RunState.READY.value}'")


_IS_READY = _is_ready(_runs)
"""Written into the SQL, not bound: psycopg prepares a statement run often, and
Postgres's generic plan for ``status = $1`` cannot use the partial index of ready runs
(``ix_runs_ready_queue``, ``WHERE status = 'ready'``), so every claim read and sorted
all the ready runs (two thirds of Postgres's CPU under ingest)."""


@dataclass(frozen=True)
class Claimant:
    """The agent's columns a claim reads: a tuple's worth, not an ORM object."""

    id: int
    pools: list[str]
    logical_cpus: int
    facts: dict[str, Any]
    target: str
    health: str
    needs_reboot: bool
    hardware_config_id: int


@dataclass(frozen=True)
class Claimed:
    """A run just leased: what the lease reply and the callers need."""

    run_id: int
    job_id: int
    build_id: int
    secret: str
    """The lease's secret in plain text: seen only here (its hash is stored)."""
    lease_expires_at: datetime


_CLAIMANT = select(
    _agents.c.id,
    _agents.c.pools,
    _agents.c.logical_cpus,
    _agents.c.facts,
    _agents.c.target,
    _agents.c.health,
    _agents.c.needs_reboot,
    _agents.c.hardware_config_id,
).where(_agents.c.id == bindparam("agent_id"))


def claimant(conn: Connection, *, agent_id: int) -> Claimant | None:
    row = conn.execute(_CLAIMANT, {"agent_id": agent_id}).first()
    return None if row is None else Claimant(*row)


WINDOW = 200
"""How many ready runs, from the head of the queue, a claim looks at first."""


def _queue_head() -> Subquery:
    """The WINDOW most urgent ready runs (the columns eligibility reads): a walk of the
    partial index ``ix_runs_ready_queue`` that stops there.

    Why a claim starts here: with every test in one query over ``runs``, Postgres
    joined all the ready runs to their jobs and builds and sorted them (its statistics
    of a queue table are always behind: at 1,700 ready runs, 7.7 ms a claim, two thirds
    of its CPU under ingest). A subquery with a LIMIT is planned on its own, so the
    tests run on at most WINDOW runs. Any eligible run past the head is less urgent than
    every run in it: a candidate found there is the one the whole queue would give, and
    the whole queue is read only when the head is full and holds nothing for this
    agent."""
    return (
        select(
            _runs.c.id,
            _runs.c.status,
            _runs.c.priority,
            _runs.c.job_id,
            _runs.c.go_version,
            _runs.c.required_agent_id,
            _runs.c.pool,
            _runs.c.min_cpus,
            _runs.c.selector,
            _runs.c.avoid_agent_id,
            _runs.c.ready_at,
        )
        .where(_IS_READY)
        .order_by(_runs.c.priority.desc(), _runs.c.id)
        .limit(WINDOW)
        .subquery("head")
    )


_IN_HEAD = select(func.count()).select_from(
    select(_runs.c.id).where(_IS_READY).limit(WINDOW).subquery()
)
"""How many runs the head holds: WINDOW means more may wait past it."""


def _eligible(runs: FromClause, dialect: str, *, unhealthy: bool) -> list[ColumnElement[bool]]:
    """Everything that makes a ready run of ``runs`` (the table, or the queue's head)
    this agent's to take, with the agent's values as bound parameters: ``agent_id``,
    ``pools``, ``cpus``, ``facts``, ``avoid_before``."""
    ready = _is_ready(runs)
    if unhealthy:
        # An unhealthy agent's runs would not count: it takes only its next check.
        checking = select(_checks.c.job_id).where(
            _checks.c.agent_id == bindparam("agent_id"), _checks.c.finished_at.is_(None)
        )
        return [ready, runs.c.job_id.in_(checking)]
    return [
        ready,
        or_(
            runs.c.required_agent_id == bindparam("agent_id"),
            and_(
                runs.c.required_agent_id.is_(None),
                or_(runs.c.pool.is_(None), runs.c.pool.in_(bindparam("pools", expanding=True))),
            ),
        ),
        or_(runs.c.min_cpus.is_(None), runs.c.min_cpus <= bindparam("cpus")),
        _selector_matches(runs, dialect),
        # Never a run of a finished job: a lost run's retry can be committed just after its
        # job was cancelled (the sweep then ends it).
        select(_jobs.c.id)
        .where(_jobs.c.id == runs.c.job_id, _jobs.c.status.in_(_LIVE_JOB_STATES))
        .exists(),
        # A retried run gives another agent the first chance.
        or_(
            runs.c.avoid_agent_id.is_(None),
            runs.c.avoid_agent_id != bindparam("agent_id"),
            runs.c.ready_at.is_(None),
            runs.c.ready_at <= bindparam("avoid_before", type_=_runs.c.ready_at.type),
        ),
    ]


def _selector_matches(runs: FromClause, dialect: str) -> ColumnElement[bool]:
    """Every key of the run's selector names one of the agent's facts (bound as
    ``facts``, values as text, the way selectors are written) with that value."""
    if dialect == "postgresql":
        contained: ColumnElement[bool] = cast(runs.c.selector, JSONB).contained_by(
            bindparam("facts", type_=JSONB)
        )
        return contained
    wanted = func.json_each(runs.c.selector).table_valued("key", "value").alias("wanted")
    fact = func.json_each(bindparam("facts", type_=String)).table_valued("key", "value")
    fact = fact.alias("fact")
    differs = wanted.c.value.is_not(
        select(fact.c.value).where(fact.c.key == wanted.c.key).scalar_subquery()
    )
    return ~select(1).select_from(wanted).where(differs).exists()


def _built(runs: FromClause) -> ColumnElement[bool]:
    return (
        select(_builds.c.id)
        .where(_builds.c.go_version == runs.c.go_version, _builds.c.target == bindparam("target"))
        .exists()
    )


@functools.cache
def _candidates(dialect: str, *, unhealthy: bool, windowed: bool) -> Select[int]:
    """Ids of a page of the runs this agent could take now, most urgent first, past
    the ``seen`` ones: among the queue's head (windowed), or all. Ids, not rows: only
    the one taken is written."""
    runs = _queue_head() if windowed else _runs
    return (
        select(runs.c.id)
        .where(
            *_eligible(runs, dialect, unhealthy=unhealthy),
            _built(runs),
            runs.c.id.not_in(bindparam("seen", expanding=True)),
        )
        .order_by(runs.c.priority.desc(), runs.c.id)
        .limit(CANDIDATES)
    )


@functools.cache
def _waiting_for_a_build(dialect: str, *, unhealthy: bool, windowed: bool) -> Select[str]:
    """The Go version of a run this agent could take but for a build for its target."""
    runs = _queue_head() if windowed else _runs
    return (
        select(runs.c.go_version)
        .where(*_eligible(runs, dialect, unhealthy=unhealthy), ~_built(runs))
        .limit(1)
    )


@functools.cache
def _take(dialect: str) -> Update:
    """Lease run ``run_id`` if it is still ready (Postgres: and no other claim holds its
    row), with the newest build of its Go version for the agent's target."""
    newest_build = (
        select(_builds.c.id)
        .where(_builds.c.go_version == _runs.c.go_version, _builds.c.target == bindparam("target"))
        .order_by(_builds.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    taken: ColumnElement[bool] = _runs.c.id == bindparam("run_id")
    if dialect == "postgresql":
        locking = _runs.alias("locking")
        taken = _runs.c.id == (
            select(locking.c.id)
            .where(locking.c.id == bindparam("run_id"), locking.c.status == RunState.READY)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
    return (
        update(_runs)
        .where(taken, _IS_READY, newest_build.is_not(None))
        .values(
            status=RunState.LEASED,
            agent_id=bindparam("leased_to"),
            hardware_config_id=bindparam("hardware"),
            build_id=newest_build,
            leased_at=bindparam("now", type_=_runs.c.leased_at.type),
            lease_expires_at=bindparam("expires", type_=_runs.c.lease_expires_at.type),
            lease_token_hash=bindparam("token_hash"),
        )
        .returning(_runs.c.job_id, _runs.c.build_id)
    )


_NAME_CURRENT_RUN = (
    update(_agents)
    .where(_agents.c.id == bindparam("agent_id"))
    .values(current_run_id=bindparam("run_id"))
)


def claim(
    session: Session,
    *,
    agent: Claimant,
    now: datetime,
    lease_s: float,
    avoid_grace_s: float,
) -> Claimed | None:
    """Lease the most urgent ready run this agent can do, or None (then, if a run
    waits only for a build of its Go version for this agent's target, ask for it)."""
    if agent.needs_reboot:
        return None
    conn = session.connection()
    dialect = conn.dialect.name
    unhealthy = agent.health == AgentHealth.UNHEALTHY
    params: dict[str, Any] = {
        "agent_id": agent.id,
        "pools": list(agent.pools or []),
        "cpus": agent.logical_cpus,
        "facts": _facts_param(agent.facts, dialect),
        "avoid_before": now - timedelta(seconds=avoid_grace_s),
        "target": agent.target,
    }
    # Where to look: the head of the queue, then (if it is full) the whole queue.
    seen: list[int] = []
    claimed = _claim_in(
        conn,
        _candidates(dialect, unhealthy=unhealthy, windowed=True),
        params,
        agent=agent,
        seen=seen,
        now=now,
        lease_s=lease_s,
    )
    if claimed is not None:
        return claimed
    # Counted after the head was read: if other claims drained it below WINDOW meanwhile,
    # a run that sat past it is not looked at now; the agent's next wake-up (at most the
    # work re-check, 2 s) finds it in the head.
    in_head = conn.scalar(_IN_HEAD) or 0
    if in_head == 0:
        return None  # nothing is ready: nothing to take, no build to ask for
    beyond = in_head >= WINDOW
    if beyond:
        query = _candidates(dialect, unhealthy=unhealthy, windowed=False)
        claimed = _claim_in(conn, query, params, agent=agent, seen=seen, now=now, lease_s=lease_s)
        if claimed is not None:
            return claimed
    # Runs waiting for a build are not candidates at all, so they never hide the runs
    # behind them; the rare one found here gets its build asked for.
    waiting = _waiting_for_a_build(dialect, unhealthy=unhealthy, windowed=not beyond)
    go_version = conn.scalar(waiting, params)
    if go_version is not None:
        builds.request(session, go_version=go_version, target=agent.target, now=now)
    return None


def _claim_in(
    conn: Connection,
    query: Select[int],
    params: dict[str, Any],
    *,
    agent: Claimant,
    seen: list[int],
    now: datetime,
    lease_s: float,
) -> Claimed | None:
    """Take the first candidate of ``query`` no other claim holds, reading up to PASSES
    pages past those held; ``seen`` collects every candidate tried."""
    for _pass in range(PASSES):
        page = list(conn.scalars(query, {**params, "seen": seen}))
        held_elsewhere = False
        for run_id in page:
            seen.append(run_id)
            claimed = _take_one(conn, agent=agent, run_id=run_id, now=now, lease_s=lease_s)
            if claimed is not None:
                return claimed
            held_elsewhere = True  # another claim holds or took it (SQLite: a build went)
        if not held_elsewhere:
            break  # every candidate was this agent's to take: no later page helps
    return None


def _take_one(
    conn: Connection, *, agent: Claimant, run_id: int, now: datetime, lease_s: float
) -> Claimed | None:
    secret = tokens.new_secret()
    expires = now + timedelta(seconds=lease_s)
    row = conn.execute(
        _take(conn.dialect.name),
        {
            "run_id": run_id,
            "leased_to": agent.id,
            "hardware": agent.hardware_config_id,
            "target": agent.target,
            "now": now,
            "expires": expires,
            "token_hash": tokens.hash_secret(secret),
        },
    ).first()
    if row is None:
        return None
    conn.execute(_NAME_CURRENT_RUN, {"agent_id": agent.id, "run_id": run_id})
    job_id, build_id = row
    return Claimed(
        run_id=run_id, job_id=job_id, build_id=build_id, secret=secret, lease_expires_at=expires
    )


def _facts_param(facts: dict[str, Any] | None, dialect: str) -> object:
    as_text = {str(k): str(v) for k, v in (facts or {}).items()}
    return as_text if dialect == "postgresql" else json.dumps(as_text)


_REPLY = select(
    _runs.c.attempt,
    _runs.c.scenario,
    _runs.c.cpus,
    _runs.c.affinity,
    _runs.c.arm,
    _runs.c.control_chance,
    _jobs.c.spec,
    _builds.c.sha256,
    _builds.c.target,
    _builds.c.go_version,
    _builds.c.bytes,
    _builds.c.fix_present,
).where(
    _runs.c.id == bindparam("run_id"),
    _jobs.c.id == _runs.c.job_id,
    _builds.c.id == _runs.c.build_id,
)


def lease_for(
    session: Session,
    *,
    agent_id: int,
    now: datetime,
    lease_s: float,
    avoid_grace_s: float,
) -> LeasedRun | None:
    """One lease request: claim a run and describe it as the agent needs it. Five
    statements when a run is taken first try (the agent, the candidates, the UPDATE,
    the agent's current run, the reply's columns), three when nothing is ready (the
    agent, the candidates, the head's count)."""
    conn = session.connection()
    agent = claimant(conn, agent_id=agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} does not exist")
    claimed = claim(session, agent=agent, now=now, lease_s=lease_s, avoid_grace_s=avoid_grace_s)
    if claimed is None:
        return None
    row = conn.execute(_REPLY, {"run_id": claimed.run_id}).one()
    spec = jobs.spec_of_arm(row.spec, arm=row.arm)
    return LeasedRun(
        run_id=claimed.run_id,
        job_id=claimed.job_id,
        attempt=row.attempt,
        lease_token=claimed.secret,
        lease_expires_at=claimed.lease_expires_at,
        heartbeat_interval_s=lease_s / 4,
        scenario=row.scenario,
        build=BuildRef(
            sha256=row.sha256,
            target=row.target,
            go_version=row.go_version,
            bytes=row.bytes,
            fix_present=row.fix_present,
            url=f"/api/v1/builds/{claimed.build_id}/binary",
        ),
        cpus=row.cpus,
        affinity=row.affinity,
        workers=spec["workers"],
        iterations=spec["iterations"] or 0,
        duration_s=spec["duration_s"],
        stall_timeout_s=spec["stall_timeout_s"],
        control_chance=jobs.chance_of(spec, control_chance=row.control_chance),
        process_dumps=spec["process_dumps"],
    )


def claim_objects(
    session: Session,
    *,
    agent: Agent,
    now: datetime,
    lease_s: float,
    avoid_grace_s: float,
) -> tuple[Run, Build, str] | None:
    """``claim`` for callers that hold ORM objects (the worker's and the tests' set-ups):
    their pending changes are flushed first, and the run, its build and the agent are
    read back as the claim left them."""
    session.flush()
    conn = session.connection()
    found = claimant(conn, agent_id=agent.id)
    if found is None:
        raise NotFound(f"agent {agent.id} does not exist")
    claimed = claim(session, agent=found, now=now, lease_s=lease_s, avoid_grace_s=avoid_grace_s)
    session.expire(agent)
    if claimed is None:
        return None
    run = session.get_one(Run, claimed.run_id, populate_existing=True)
    return run, session.get_one(Build, claimed.build_id), claimed.secret
