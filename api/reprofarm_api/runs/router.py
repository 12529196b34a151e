"""Runs (one per attempt) with their artifacts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from reprofarm_protocol.jobs import RunState
from reprofarm_protocol.limits import INT64_MAX

from reprofarm_api.deps import JobId, RunId, SessionDep, Viewer
from reprofarm_api.responses import AUTHENTICATED, errors
from reprofarm_api.runs import service
from reprofarm_api.runs.schemas import RUNS_PAGE_DEFAULT, RUNS_PAGE_MAX, RunRead, RunReadPage

router = APIRouter(prefix="/api/v1", tags=["runs"], responses=AUTHENTICATED)


@router.get(
    "/jobs/{job_id}/runs",
    response_model=RunReadPage,
    summary="A page of a job's runs, oldest first, with their artifacts",
    responses=errors(404),
)
def job_runs(
    job_id: JobId,
    session: SessionDep,
    _token: Viewer,
    status: Annotated[RunState | None, Query(description="only runs in this status")] = None,
    limit: Annotated[
        int,
        Query(
            ge=1,
            le=RUNS_PAGE_MAX,
            description=f"runs per page (default {RUNS_PAGE_DEFAULT}, at most {RUNS_PAGE_MAX})",
        ),
    ] = RUNS_PAGE_DEFAULT,
    offset: Annotated[int, Query(ge=0, le=INT64_MAX, description="runs to skip")] = 0,
) -> RunReadPage:
    """Follow `next` until it is null to read them all; `total` counts every
    page."""
    return service.page_of_job(
        session,
        job_id=job_id,
        status=status.value if status is not None else None,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/runs/{run_id}", response_model=RunRead, summary="One run attempt", responses=errors(404)
)
def show(run_id: RunId, session: SessionDep, _token: Viewer) -> RunRead:
    return service.get_or_raise(session, run_id=run_id)
