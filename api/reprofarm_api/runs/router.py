"""Runs (one per attempt) with their artifacts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from reprofarm_db.export import NAMES
from reprofarm_protocol.jobs import RunState
from reprofarm_protocol.limits import INT64_MAX
from sqlalchemy.orm import Session, sessionmaker

from reprofarm_api.db_slots import DatabaseSlots
from reprofarm_api.deps import (
    JobId,
    RunId,
    SessionDep,
    SettingsDep,
    Viewer,
    get_db_slots,
    get_factory,
)
from reprofarm_api.responses import AUTHENTICATED, errors, json_errors
from reprofarm_api.runs import export, service
from reprofarm_api.runs.schemas import RUNS_PAGE_DEFAULT, RUNS_PAGE_MAX, RunRead, RunReadPage
from reprofarm_api.views.router import Filter

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


# Before /runs/{run_id}, which would take "export" for a run id (and refuse it).
@router.get(
    "/runs/export",
    response_class=StreamingResponse,
    summary="The counted runs, one row each, as CSV or Parquet (streamed)",
    responses={
        200: {
            "description": f"one row per counted run; columns: {', '.join(NAMES)}",
            "content": {
                export.MEDIA_TYPES[export.Format.CSV]: {"schema": {"type": "string"}},
                export.MEDIA_TYPES[export.Format.PARQUET]: {
                    "schema": {"type": "string", "format": "binary"}
                },
            },
        },
        **json_errors(401, 403, 413, 422, 503),
    },
)
async def export_runs(
    where: Filter,
    settings: SettingsDep,
    _token: Viewer,
    slots: Annotated[DatabaseSlots, Depends(get_db_slots)],
    factory: Annotated[sessionmaker[Session], Depends(get_factory)],
    fmt: Annotated[
        export.Format, Query(alias="format", description="csv (RFC 4180) or parquet")
    ] = export.Format.CSV,
) -> StreamingResponse:
    """Passed, hung and failed runs under the dashboard's filters, with their hardware
    facts; `hung` is the k of the hit rate under `label`/`signature`. Read in chunks by
    run id, each in a short database transaction, so a million runs stream in bounded
    memory and a slow download holds no connection (docs/statistics.md, "The data
    out")."""
    limit = settings.export_chunk_rows
    first = await export.first_chunk(slots, factory, where, limit)
    name = "runs" if where.job_id is None else f"runs-job-{where.job_id}"
    return StreamingResponse(
        export.stream(fmt, slots=slots, factory=factory, where=where, limit=limit, first=first),
        media_type=export.MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt.value}"'},
    )


@router.get(
    "/runs/{run_id}", response_model=RunRead, summary="One run attempt", responses=errors(404)
)
def show(run_id: RunId, session: SessionDep, _token: Viewer) -> RunRead:
    return service.get_or_raise(session, run_id=run_id)
