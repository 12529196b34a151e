"""Standing controls (docs/operations.md): an admin marks pools as negative controls and
schedules health checks; anyone reading the farm sees its harness problems."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request
from pydantic import BaseModel, Field
from reprofarm_db import agents, builds, health, jobs, pools
from reprofarm_db.models import HealthCheck, PoolSettings
from reprofarm_protocol.controls import CheckKind, CheckTrigger, PoolControls, PoolRead
from reprofarm_protocol.controls import HealthCheckRead as CheckRead
from reprofarm_protocol.limits import Strict
from sqlalchemy.orm import Session

from reprofarm_api.deps import ID_MAX, Admin, SessionDep, SettingsDep, Viewer
from reprofarm_api.responses import AUTHENTICATED, errors

router = APIRouter(prefix="/api/v1", tags=["controls"], responses=AUTHENTICATED)

PoolName = Annotated[
    str,
    Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$", description="a pool"),
]
AgentId = Annotated[int, Path(ge=1, le=ID_MAX, description="the agent's id")]


class CheckRequest(Strict):
    kind: CheckKind = Field(
        CheckKind.POSITIVE_CONTROL,
        description="canary: a stuck child at chance 1, for the capture; positive-control: "
        "the control at the agent's pool's chance (1e-3 without one)",
    )


class HarnessProblemsRead(BaseModel):
    negative_control_hangs: int = Field(
        description="hangs of bug scenarios on negative-control agents: the harness's fault"
    )
    discounted_runs: int = Field(description="finished runs not counted, for either reason")
    recent_hangs: list[dict[str, Any]] = Field(description="the latest of those hangs")
    unhealthy_agents: list[dict[str, Any]] = Field(
        description="agents whose last health check failed: name, detail, since"
    )


def _pool_read(row: PoolSettings, members: dict[str, int]) -> PoolRead:
    return PoolRead(
        **pools.read(row).model_dump(),
        name=row.name,
        agents=members.get(row.name, 0),
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def _check_read(check: HealthCheck) -> CheckRead:
    return CheckRead(
        id=check.id,
        agent_id=check.agent_id,
        kind=CheckKind(check.kind),
        trigger=CheckTrigger(check.trigger),
        job_id=check.job_id,
        created_at=check.created_at,
        finished_at=check.finished_at,
        outcome=check.outcome,
        detail=check.detail,
    )


@router.get("/pools", response_model=list[PoolRead], summary="Pools with standing controls")
def list_pools(session: SessionDep, _token: Viewer) -> list[PoolRead]:
    rows = pools.list_(session)
    members = agents.count_in_pools(session, pools=[row.name for row in rows])
    return [_pool_read(row, members) for row in rows]


@router.put(
    "/pools/{name}",
    response_model=PoolRead,
    summary="Set a pool's standing controls (admin)",
    responses=errors(422),
)
def set_pool(
    name: PoolName,
    controls: Annotated[PoolControls, Body()],
    session: SessionDep,
    token: Admin,
) -> PoolRead:
    """Replaces the pool's whole set of controls. Marking a pool a negative control
    applies to the results received from then on (runs already stored keep their count)."""
    row = pools.set_(session, name=name, controls=controls, by=token.name)
    return _pool_read(row, agents.count_in_pools(session, pools=[row.name]))


@router.get(
    "/harness-problems",
    response_model=HarnessProblemsRead,
    summary="What is flagged instead of counted",
)
def harness_problems(
    session: SessionDep,
    _token: Viewer,
    scenario: Annotated[str | None, Query(max_length=40)] = None,
    job_id: Annotated[int | None, Query(ge=1, le=ID_MAX)] = None,
) -> HarnessProblemsRead:
    found = health.harness_problems(session, scenario=scenario, job_id=job_id)
    return HarnessProblemsRead(**found.as_dict())


@router.get(
    "/agents/{agent_id}/health-checks",
    response_model=list[CheckRead],
    summary="An agent's latest health checks",
    responses=errors(404),
)
def agent_checks(agent_id: AgentId, session: SessionDep, _token: Viewer) -> list[CheckRead]:
    agents.get_or_raise(session, agent_id=agent_id)
    return [_check_read(c) for c in health.checks_of(session, agent_id=agent_id)]


@router.post(
    "/agents/{agent_id}/health-check",
    response_model=CheckRead,
    status_code=201,
    summary="Check an agent now (admin)",
    responses=errors(404, 409),
)
def check_agent(
    agent_id: AgentId,
    session: SessionDep,
    settings: SettingsDep,
    _token: Admin,
    request: Request,
    body: Annotated[CheckRequest | None, Body()] = None,
) -> CheckRead:
    """Starts a check at once (409 if one runs or the agent waits for a reboot). Its
    outcome sets the agent's health: the way back for an unhealthy agent without
    waiting for its recheck."""
    agent = agents.get_or_raise(session, agent_id=agent_id)
    kind = (body or CheckRequest()).kind
    controls = pools.for_agent(agent, pools.list_(session))
    using = controls.positive or controls.canary or PoolControls()
    check = health.start(
        session,
        agent=agent,
        kind=kind,
        trigger=CheckTrigger.MANUAL,
        controls=using,
        now=datetime.now(UTC),
        max_runs=settings.max_runs_per_job,
    )
    made_ready(session, request, job_id=check.job_id)
    return _check_read(check)


def made_ready(session: Session, request: Request, *, job_id: int) -> None:
    """A check's run is ready at once when its build exists (else the planner builds it):
    wake the long-polls, and send the plan task after the commit."""
    request.state.runs_ready = builds.mark_ready_if_built(
        session, job=jobs.get_or_raise(session, job_id=job_id)
    )
    request.state.poke_relay = True
