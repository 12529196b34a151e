"""Studies: submit a verify or a search, read its decision as it stands, cancel it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Request, Response
from reprofarm_db import agents, builds, jobs, studies
from reprofarm_protocol.studies import StudyCreate, StudyRead

from reprofarm_api.deps import IdempotencyKey, JobId, SessionDep, SettingsDep, Submitter, Viewer
from reprofarm_api.responses import AUTHENTICATED, errors

router = APIRouter(prefix="/api/v1/studies", tags=["studies"], responses=AUTHENTICATED)


@router.post(
    "",
    response_model=StudyRead,
    status_code=201,
    summary="Start a study: verify a fix, or search where the hang reproduces",
    responses={
        200: {"description": "the study this Idempotency-Key already created"},
        **errors(409),
    },
)
def create(
    spec: Annotated[StudyCreate, Body()],
    session: SessionDep,
    settings: SettingsDep,
    token: Submitter,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> StudyRead:
    """The study, its cells (the hardware of the matching agents online now) and their
    first runs are stored in one transaction; the worker then makes runs as results
    arrive, until the study decides or spends its budget (docs/statistics.md)."""
    job, created = studies.create(
        session,
        spec=spec,
        idempotency_key=idempotency_key,
        submitted_by=token.id,
        online_since=agents.online_since(now=datetime.now(UTC), lease_s=settings.lease_s),
        max_runs=settings.max_runs_per_job,
        webhook_secret_set=settings.webhook_secret is not None,
        webhook_hosts=settings.webhook_hosts,
    )
    if not created:
        response.status_code = 200
    else:
        request.state.runs_ready = builds.mark_ready_if_built(session, job=job)
    session.flush()
    request.state.poke_relay = True
    return studies.read(session, job_id=job.id)


@router.get(
    "/{job_id}",
    response_model=StudyRead,
    summary="A study's decision so far, per cell (and arm), recomputed from its runs",
    responses=errors(404),
)
def show(job_id: JobId, session: SessionDep, _token: Viewer) -> StudyRead:
    return studies.read(session, job_id=job_id)


@router.post(
    "/{job_id}/cancel",
    response_model=StudyRead,
    summary="Cancel a study",
    responses=errors(404, 409),
)
def cancel(job_id: JobId, session: SessionDep, _token: Submitter) -> StudyRead:
    """As a job's cancel: runs not started end at once, running ones at their next
    heartbeat; what finished is kept, and the study shows where it stood."""
    studies.read(session, job_id=job_id)  # a 404 for a job that is not a study
    jobs.cancel(session, job_id=job_id)
    session.flush()
    return studies.read(session, job_id=job_id)
