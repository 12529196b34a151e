"""Health, Prometheus metrics and token administration."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from pydantic import BaseModel, Field
from reprofarm_db import jobs, rollups, tokens
from reprofarm_db.models import Agent
from reprofarm_db.tokens import Role
from reprofarm_protocol.limits import Strict
from sqlalchemy import func, select, text

from reprofarm_api.deps import Admin, MetricsReader, SessionDep
from reprofarm_api.responses import AUTHENTICATED, errors, json_errors

router = APIRouter(tags=["operations"])


@router.get(
    "/health",
    summary="Liveness and database reachability (no token needed)",
    responses=errors(503),
)
def health(session: SessionDep) -> dict[str, str]:
    session.execute(text("SELECT 1"))
    return {"status": "ok"}


@router.get(
    "/metrics",
    summary="Prometheus metrics (no token needed unless REPROFARM_METRICS_TOKEN_REQUIRED)",
    response_class=PlainTextResponse,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition format",
        },
        **json_errors(401, 403, 503),
    },
)
def metrics(session: SessionDep, _reader: MetricsReader) -> Response:
    """Cheap at any size: finished runs from the statistics rollups (one row per cell),
    open runs from index ranges; never a scan of the runs table (scrapers call this every
    few seconds, unauthenticated unless REPROFARM_METRICS_TOKEN_REQUIRED)."""
    registry = CollectorRegistry()
    finished = Gauge(
        "reprofarm_runs_finished",
        "finished run attempts by outcome (errors and lost included; never cancelled or expired)",
        ["outcome"],
        registry=registry,
    )
    totals = rollups.totals(session)
    for outcome in rollups.OUTCOMES:
        finished.labels(outcome=outcome).set(totals[outcome])
    open_runs = Gauge(
        "reprofarm_runs_open", "runs not finished, by status", ["status"], registry=registry
    )
    for status, n in jobs.open_run_counts(session).items():
        open_runs.labels(status=status).set(n)
    agents = Gauge("reprofarm_agents", "registered agents", registry=registry)
    agents.set(session.scalar(select(func.count()).select_from(Agent)) or 0)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class TokenCreate(Strict):
    name: str = Field(min_length=1, max_length=100)
    role: Role = Field(description="viewer, submitter, agent (enrollment) or admin")


class TokenCreated(BaseModel):
    name: str
    role: str
    token: str = Field(description="shown once; only its hash is stored")


@router.post(
    "/api/v1/tokens",
    response_model=TokenCreated,
    status_code=201,
    summary="Create a bearer token (admin)",
    responses=AUTHENTICATED,
)
def create_token(body: TokenCreate, session: SessionDep, _token: Admin) -> TokenCreated:
    plain = tokens.create(session, name=body.name, role=body.role)
    return TokenCreated(name=body.name, role=body.role, token=plain)
