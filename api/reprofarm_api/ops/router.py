"""Health, Prometheus metrics and token administration."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from pydantic import BaseModel, Field
from reprofarm_db import tokens
from reprofarm_db.models import Agent, Run
from sqlalchemy import func, select, text

from reprofarm_api.deps import Admin, SessionDep

router = APIRouter(tags=["operations"])


@router.get("/health", summary="Liveness and database reachability (no token needed)")
def health(session: SessionDep) -> dict[str, str]:
    session.execute(text("SELECT 1"))
    return {"status": "ok"}


@router.get("/metrics", summary="Prometheus metrics (no token needed)")
def metrics(session: SessionDep) -> Response:
    registry = CollectorRegistry()
    runs = Gauge("reprofarm_runs", "run attempts by status", ["status"], registry=registry)
    for status, n in session.execute(select(Run.status, func.count()).group_by(Run.status)):
        runs.labels(status=status).set(n)
    agents = Gauge("reprofarm_agents", "registered agents", registry=registry)
    agents.set(session.scalar(select(func.count()).select_from(Agent)) or 0)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    role: str = Field(description="viewer, submitter, agent (enrollment) or admin")


class TokenCreated(BaseModel):
    name: str
    role: str
    token: str = Field(description="shown once; only its hash is stored")


@router.post(
    "/api/v1/tokens",
    response_model=TokenCreated,
    status_code=201,
    summary="Create a bearer token (admin)",
)
def create_token(body: TokenCreate, session: SessionDep, _token: Admin) -> TokenCreated:
    plain = tokens.create(session, name=body.name, role=body.role)
    return TokenCreated(name=body.name, role=body.role, token=plain)
