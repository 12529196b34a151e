"""Runs (one per attempt) with their artifacts."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from reprofarm_db import artifacts as artifacts_
from reprofarm_db import jobs
from reprofarm_db.errors import NotFound
from reprofarm_db.models import Artifact, Run
from reprofarm_protocol.jobs import RunState
from sqlalchemy import select
from sqlalchemy.orm import Session

from reprofarm_api.artifacts.schemas import ArtifactRead
from reprofarm_api.deps import JobId, RunId, SessionDep, Viewer
from reprofarm_api.responses import AUTHENTICATED, errors

router = APIRouter(prefix="/api/v1", tags=["runs"], responses=AUTHENTICATED)


class RunRead(BaseModel):
    id: int
    job_id: int
    attempt: int
    retry_of: int | None
    status: str
    scenario: str
    go_version: str
    cpus: int | None
    affinity: str
    pool: str | None
    agent_id: int | None
    iterations: int
    duration_s: float
    reason: str
    label: str | None = Field(
        description="the analyzer's verdict; None for a hang not analysed yet (pending)"
    )
    signature: str | None
    signature_key: str | None = Field(description="its bucket: GET /signatures/{key}/runs")
    leased_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    late_result: dict[str, Any] | None
    artifacts: list[ArtifactRead]

    @classmethod
    def of(cls, run: Run, artifacts: list[Artifact]) -> RunRead:
        return cls(
            id=run.id,
            job_id=run.job_id,
            attempt=run.attempt,
            retry_of=run.retry_of,
            status=run.status,
            scenario=run.scenario,
            go_version=run.go_version,
            cpus=run.cpus,
            affinity=run.affinity,
            pool=run.pool,
            agent_id=run.agent_id,
            iterations=run.iterations,
            duration_s=run.duration_s,
            reason=run.reason,
            label=run.label,
            signature=run.signature,
            signature_key=run.signature_key,
            leased_at=run.leased_at,
            finished_at=run.finished_at,
            result=run.result,
            late_result=run.late_result,
            artifacts=[ArtifactRead.of(a) for a in artifacts],
        )


def runs_read(session: Session, runs: Iterable[Run]) -> list[RunRead]:
    """Runs as the api shows them, each with its artifacts."""
    return [RunRead.of(r, artifacts_.for_run(session, run_id=r.id)) for r in runs]


@router.get(
    "/jobs/{job_id}/runs",
    response_model=list[RunRead],
    summary="A job's runs",
    responses=errors(404),
)
def job_runs(
    job_id: JobId,
    session: SessionDep,
    _token: Viewer,
    status: Annotated[RunState | None, Query(description="only runs in this status")] = None,
) -> list[RunRead]:
    jobs.get_or_raise(session, job_id=job_id)
    query = select(Run).where(Run.job_id == job_id).order_by(Run.id)
    if status is not None:
        query = query.where(Run.status == status)
    return runs_read(session, session.scalars(query))


@router.get(
    "/runs/{run_id}", response_model=RunRead, summary="One run attempt", responses=errors(404)
)
def show(run_id: RunId, session: SessionDep, _token: Viewer) -> RunRead:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    return RunRead.of(run, artifacts_.for_run(session, run_id=run_id))
