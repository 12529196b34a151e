"""Agents: registration with their hardware, long-poll leases, heartbeats and
results. Agents pull work over HTTPS (ARCHITECTURE: Celery does not support
Windows, and a Redis visibility timeout would run a long hang twice)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from reprofarm_db import agents, jobs, leases
from reprofarm_db.engine import transaction
from reprofarm_db.models import Agent, HardwareConfig
from reprofarm_db.tokens import Role
from reprofarm_protocol.jobs import (
    AgentRegister,
    AgentRegistered,
    BuildRef,
    Heartbeat,
    HeartbeatReply,
    LeasedRun,
    LeaseRequest,
    RunReport,
)
from sqlalchemy import select

from reprofarm_api.deps import CurrentAgentId, SessionDep, SettingsDep, Viewer, require

router = APIRouter(prefix="/api/v1", tags=["agents"])
_POLL_S = 0.25


class AgentRead(BaseModel):
    id: int
    name: str
    pools: list[str]
    target: str
    logical_cpus: int
    hardware_fingerprint: str
    facts: dict[str, Any]
    online: bool
    needs_reboot: bool
    current_run_id: int | None
    last_seen: datetime


@router.post(
    "/agents/register",
    response_model=AgentRegistered,
    summary="Register an agent with its hardware",
    dependencies=[Depends(require(Role.AGENT))],
)
def register(request_body: AgentRegister, session: SessionDep) -> AgentRegistered:
    """Needs an agent (enrollment) or admin token. Returns the agent's own token;
    registering again under the same name revokes the earlier one."""
    agent, token = agents.register(session, request=request_body)
    return AgentRegistered(agent_id=agent.id, token=token)


@router.get("/agents", response_model=list[AgentRead], summary="Agents and their health")
def list_agents(session: SessionDep, settings: SettingsDep, _token: Viewer) -> list[AgentRead]:
    now = datetime.now(UTC)
    configs = {c.id: c.fingerprint for c in session.scalars(select(HardwareConfig))}
    return [
        AgentRead(
            id=a.id,
            name=a.name,
            pools=a.pools,
            target=a.target,
            logical_cpus=a.logical_cpus,
            hardware_fingerprint=configs.get(a.hardware_config_id, ""),
            facts=a.facts,
            online=agents.is_online(a, now=now, lease_s=settings.lease_s),
            needs_reboot=a.needs_reboot,
            current_run_id=a.current_run_id,
            last_seen=a.last_seen,
        )
        for a in agents.list_(session)
    ]


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
        agent = session.get(Agent, agent_id)
        assert agent is not None
        now = datetime.now(UTC)
        claimed = leases.claim(
            session,
            agent=agent,
            now=now,
            lease_s=settings.lease_s,
            avoid_grace_s=settings.avoid_grace_s,
        )
        if claimed is None:
            return None
        run, build = claimed
        spec = jobs.get_or_raise(session, job_id=run.job_id).spec
        assert run.lease_expires_at is not None
        return LeasedRun(
            run_id=run.id,
            job_id=run.job_id,
            attempt=run.attempt,
            lease_expires_at=run.lease_expires_at,
            heartbeat_interval_s=settings.lease_s / 4,
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


@router.post(
    "/agents/me/lease",
    response_model=LeasedRun,
    summary="Long-poll for one matching ready run",
    responses={204: {"description": "no work within wait_s: ask again"}},
)
async def lease(body: LeaseRequest, agent_id: CurrentAgentId, request: Request) -> Any:
    """Returns one ready run this agent can do, leased until `lease_expires_at`
    (heartbeats extend it), or 204 after `wait_s` without work."""
    deadline = time.monotonic() + body.wait_s
    while True:
        leased = await run_in_threadpool(_try_claim, request, agent_id)
        if leased is not None:
            return leased
        if time.monotonic() >= deadline or await request.is_disconnected():
            return Response(status_code=204)
        await asyncio.sleep(_POLL_S)


@router.post("/runs/{run_id}/heartbeat", response_model=HeartbeatReply, summary="Extend a lease")
def heartbeat(
    run_id: int,
    beat: Heartbeat,
    agent_id: CurrentAgentId,
    session: SessionDep,
    settings: SettingsDep,
) -> HeartbeatReply:
    """Carries progress; the reply says whether to cancel and whether the lease
    still holds (if not, the run was re-queued: finish, report, it is kept
    for the record but not counted)."""
    return leases.heartbeat(
        session,
        agent=agents.get_or_raise(session, agent_id=agent_id),
        run_id=run_id,
        beat=beat,
        now=datetime.now(UTC),
        lease_s=settings.lease_s,
    )


class ResultAck(BaseModel):
    run_id: int
    status: str
    counted: bool


@router.post("/runs/{run_id}/result", response_model=ResultAck, summary="Report a run's result")
def result(
    run_id: int, report: RunReport, agent_id: CurrentAgentId, session: SessionDep
) -> ResultAck:
    """Idempotent: the same result posted twice changes nothing."""
    run, counted = leases.record_result(
        session,
        agent=agents.get_or_raise(session, agent_id=agent_id),
        run_id=run_id,
        report=report,
        now=datetime.now(UTC),
    )
    return ResultAck(run_id=run.id, status=run.status, counted=counted)
