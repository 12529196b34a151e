"""Agents: registration with their hardware, long-poll leases, heartbeats and
results. Agents pull work over HTTPS (ARCHITECTURE: Celery does not support
Windows, and a Redis visibility timeout would run a long hang twice)."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from reprofarm_db import agents, claims, health, leases, registration, tokens
from reprofarm_db.engine import single_statement, transaction
from reprofarm_db.models import Agent, HardwareConfig
from reprofarm_protocol.controls import AgentHealth
from reprofarm_protocol.jobs import (
    AgentRegister,
    AgentRegistered,
    AgentState,
    Heartbeat,
    HeartbeatReply,
    LeasedRun,
    LeaseRequest,
    RunReport,
    RunReports,
)
from reprofarm_protocol.limits import INT64_MAX
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from reprofarm_api.agents import service
from reprofarm_api.agents.liveness import SeenAgents
from reprofarm_api.agents.schemas import (
    AgentCounts,
    AgentPage,
    AgentRead,
    ResultAck,
    ResultsAck,
)
from reprofarm_api.agents.wakeup import WorkSignal
from reprofarm_api.controls.router import made_ready
from reprofarm_api.db_slots import DatabaseSlots
from reprofarm_api.deps import (
    ID_MAX,
    AgentToken,
    CurrentAgentId,
    LeaseToken,
    RunId,
    SessionDep,
    SettingsDep,
    Viewer,
)
from reprofarm_api.responses import AUTHENTICATED, errors

router = APIRouter(prefix="/api/v1", tags=["agents"], responses=AUTHENTICATED)


@router.post(
    "/agents/register",
    response_model=AgentRegistered,
    summary="Register an agent with its hardware",
    responses=errors(409),
)
def register(
    request_body: AgentRegister,
    session: SessionDep,
    settings: SettingsDep,
    caller: AgentToken,
    request: Request,
) -> AgentRegistered:
    """Needs an enrollment, agent or admin token. Returns the agent's own token;
    registering again under the same name revokes the earlier one.

    A name is bound to the machine that first registered it by `machine_secret`:
    registering it again needs the same secret (or an admin token), and an
    agent's own token registers only that agent (409 or 403 otherwise). When a pool
    of the agent asks for the capture canary, its check is queued first."""
    agent, token = registration.register(session, request=request_body, caller=caller)
    request.state.tokens_revoked = tokens.revoked_in(session)  # forgotten after the commit
    canary = health.on_registered(
        session, agent=agent, now=datetime.now(UTC), max_runs=settings.max_runs_per_job
    )
    if canary is not None:  # a pool of this agent checks its dump capture at each start
        made_ready(session, request, job_id=canary.job_id)
    return AgentRegistered(agent_id=agent.id, token=token)


@router.get("/agents", response_model=list[AgentRead], summary="Agents and their health")
def list_agents(session: SessionDep, settings: SettingsDep, _token: Viewer) -> list[AgentRead]:
    """Every agent, by name. `GET /agents/page` pages and filters them, and counts
    them by state: at thousands of agents, read that instead."""
    now = datetime.now(UTC)
    configs = {c.id: c.fingerprint for c in session.scalars(select(HardwareConfig))}
    rows = agents.list_with_state(
        session, where=agents.AgentFilter(), now=now, lease_s=settings.lease_s
    )
    return [_read(a, state, configs, now=now, lease_s=settings.lease_s) for a, state in rows]


Text = Annotated[str | None, Query(max_length=100)]


@router.get("/agents/page", response_model=AgentPage, summary="A page of agents, filtered")
def page_agents(
    session: SessionDep,
    settings: SettingsDep,
    _token: Viewer,
    limit: Annotated[int, Query(ge=1, le=1000, description="agents on this page")] = 100,
    offset: Annotated[int, Query(ge=0, le=INT64_MAX, description="agents to skip")] = 0,
    pool: Annotated[Text, Query(description="in this pool (its whole name)")] = None,
    online: Annotated[
        bool | None,
        Query(description="seen within two lease periods (true) or not (false), any state"),
    ] = None,
    state: Annotated[
        AgentState | None,
        Query(description="in this state (needs-reboot first, then offline, busy or idle)"),
    ] = None,
    health: Annotated[AgentHealth | None, Query(description="with this health")] = None,
    name_prefix: Annotated[Text, Query(description="whose name starts with this")] = None,
    name: Annotated[Text, Query(description="named exactly this")] = None,
    agent_id: Annotated[
        int | None, Query(alias="id", ge=1, le=ID_MAX, description="this agent only")
    ] = None,
    search: Annotated[
        Text,
        Query(
            description="whose name, target (os/arch) or CPU model holds this text "
            "(case-insensitive), or with a pool of exactly this name"
        ),
    ] = None,
) -> AgentPage:
    """The agents that match every filter given, by name, `limit` from `offset`,
    with `total`: how many match over all pages, and `counts`: agents by state
    and health over every agent, whatever the filters (the dashboard's summary).
    `GET /agents` (every agent, a plain list) stays as it was for the callers
    that read it whole."""
    now = datetime.now(UTC)
    where = agents.AgentFilter(
        pool=pool,
        online=online,
        state=state,
        health=health,
        name_prefix=name_prefix,
        name=name,
        agent_id=agent_id,
        search=search,
    )
    found = agents.page(
        session, where=where, now=now, lease_s=settings.lease_s, limit=limit, offset=offset
    )
    ids = {a.hardware_config_id for a, _ in found.agents}
    configs = dict(
        session.execute(
            select(HardwareConfig.id, HardwareConfig.fingerprint).where(HardwareConfig.id.in_(ids))
        )
        .tuples()
        .all()
    )
    return AgentPage(
        total=found.total,
        limit=limit,
        offset=offset,
        agents=[
            _read(a, state, configs, now=now, lease_s=settings.lease_s) for a, state in found.agents
        ],
        counts=AgentCounts(**asdict(found.counts)),
    )


def _read(
    a: Agent, state: AgentState, configs: dict[int, str], *, now: datetime, lease_s: float
) -> AgentRead:
    return AgentRead(
        id=a.id,
        name=a.name,
        pools=a.pools,
        target=a.target,
        logical_cpus=a.logical_cpus,
        hardware_fingerprint=configs.get(a.hardware_config_id, ""),
        facts=a.facts,
        online=agents.is_online(a, now=now, lease_s=lease_s),
        state=state,
        needs_reboot=a.needs_reboot,
        last_reboot_at=a.last_reboot_at,
        reboots=a.reboots or 0,
        agent_version=a.agent_version,
        current_run_id=a.current_run_id,
        last_seen=a.last_seen,
        health=a.health,
        health_detail=a.health_detail,
        health_changed_at=a.health_changed_at,
    )


@router.get("/hardware", summary="Hardware configurations seen")
def hardware(session: SessionDep, _token: Viewer) -> list[dict[str, Any]]:
    return [
        {
            "id": c.id,
            "fingerprint": c.fingerprint,
            "label": c.label,
            "description": c.description,
            "first_seen": c.first_seen,
        }
        for c in session.scalars(select(HardwareConfig).order_by(HardwareConfig.id))
    ]


def _try_claim(request: Request, agent_id: int) -> LeasedRun | None:
    settings = request.app.state.settings
    with transaction(request.app.state.sessions) as session:
        return claims.lease_for(
            session,
            agent_id=agent_id,
            now=datetime.now(UTC),
            lease_s=settings.lease_s,
            avoid_grace_s=settings.avoid_grace_s,
        )


@router.post(
    "/agents/me/lease",
    response_model=LeasedRun,
    summary="Long-poll for one matching ready run",
    responses={204: {"description": "no work within wait_s: ask again"}, **errors(404)},
)
async def lease(body: LeaseRequest, agent_id: CurrentAgentId, request: Request) -> Any:
    """Returns one ready run this agent can do, leased until `lease_expires_at`
    (heartbeats extend it), or 204 after `wait_s` without work. The reply's
    `lease_token` must accompany every heartbeat, upload and result of the run."""
    deadline = time.monotonic() + body.wait_s
    work: WorkSignal = request.app.state.work
    seen: SeenAgents = request.app.state.seen
    seen.note(agent_id)  # an idle agent's long-polls are its sign of life
    while True:
        async with request.app.state.db_slots.request():
            # An overloaded api may give the slot after the agent gave up: a
            # claim then would lease a run to nobody.
            if await request.is_disconnected():
                return Response(status_code=204)
            leased = await run_in_threadpool(_try_claim, request, agent_id)
        if leased is not None:
            return leased
        remaining = deadline - time.monotonic()
        if remaining <= 0 or await request.is_disconnected():
            return Response(status_code=204)
        # Woken when runs become ready, not by polling. A wait that ran out ends
        # without claiming again: the agent's next long-poll claims at once.
        if not await work.wait(remaining):
            return Response(status_code=204)


@router.post(
    "/agents/me/results",
    response_model=ResultsAck,
    summary="Report several runs' results at once, each answered on its own",
)
async def results(body: RunReports, agent_id: CurrentAgentId, request: Request) -> ResultsAck:
    """Each result is proved as `POST /runs/{run_id}/result` proves it (the run
    leased to this agent, `lease_token` its lease's secret) and stored in a
    savepoint of one transaction, committed before this reply. The answer is 200 with
    one outcome per result, in their order: `http_status` 200 when it was stored
    (idempotent: a repeat changes nothing, `counted` false), else the status and
    message the single route would have answered (404, 409, 403 for an unproven
    lease; 422, 503), that result alone undone. A 5xx means none was stored: send
    them all again."""
    request.app.state.seen.note(agent_id)
    outcomes, study = await request.app.state.db_slots.run(
        service.record_results, request.app.state.sessions, agent_id=agent_id, reports=body
    )
    # A study's runs: their steps (queued in the outbox) go out now.
    request.state.poke_relay = study
    return ResultsAck(results=outcomes)


@router.post(
    "/runs/{run_id}/heartbeat",
    response_model=HeartbeatReply,
    summary="Extend a lease",
    responses=errors(404, 409),
)
async def heartbeat(
    run_id: RunId,
    beat: Heartbeat,
    agent_id: CurrentAgentId,
    settings: SettingsDep,
    request: Request,
    lease_token: LeaseToken = None,
) -> HeartbeatReply:
    """Carries progress; the reply says whether to cancel and whether the lease
    still holds (if not, the run was re-queued: finish, report, it is kept
    for the record but not counted)."""
    seen: SeenAgents = request.app.state.seen
    seen.note(agent_id)
    # One worker thread for its one statement, committed before the reply (a
    # sync endpoint with a session dependency took three hops: docs/operations.md).
    slots: DatabaseSlots = request.app.state.db_slots
    return await slots.run(
        _beat,
        request.app.state.sessions,
        agent_id=agent_id,
        run_id=run_id,
        lease_token=lease_token,
        beat=beat,
        lease_s=settings.lease_s,
    )


def _beat(
    sessions: sessionmaker[Session],
    *,
    agent_id: int,
    run_id: int,
    lease_token: str | None,
    beat: Heartbeat,
    lease_s: float,
) -> HeartbeatReply:
    with single_statement(sessions) as session:
        return leases.heartbeat(
            session,
            agent_id=agent_id,
            run_id=run_id,
            lease_token=lease_token,
            beat=beat,
            now=datetime.now(UTC),
            lease_s=lease_s,
        )


@router.post(
    "/runs/{run_id}/result",
    response_model=ResultAck,
    summary="Report a run's result",
    responses=errors(404, 409),
)
def result(
    run_id: RunId,
    report: RunReport,
    agent_id: CurrentAgentId,
    session: SessionDep,
    request: Request,
    lease_token: LeaseToken = None,
) -> ResultAck:
    """Idempotent: the same result posted twice changes nothing."""
    request.app.state.seen.note(agent_id)
    run, counted = leases.record_result(
        session,
        agent=agents.get_or_raise(session, agent_id=agent_id),
        run_id=run_id,
        lease_token=lease_token,
        report=report,
        now=datetime.now(UTC),
    )
    # A study's run: its step (queued in the outbox with the result) goes out now,
    # so the study tops its runs up while the agent asks for its next one.
    request.state.poke_relay = counted and run.cell is not None
    return ResultAck(run_id=run.id, status=run.status, counted=counted)
