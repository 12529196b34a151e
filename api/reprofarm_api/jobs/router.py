"""Submitting, listing, showing and cancelling jobs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from reprofarm_db import agents, builds, jobs, views
from reprofarm_protocol.jobs import JobCreate
from reprofarm_protocol.limits import INT64_MAX

from reprofarm_api.deps import IdempotencyKey, JobId, SessionDep, SettingsDep, Submitter, Viewer
from reprofarm_api.jobs.schemas import DryRun, EligibleAgent, JobRead
from reprofarm_api.responses import AUTHENTICATED, errors

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"], responses=AUTHENTICATED)


@router.post(
    "",
    response_model=JobRead | DryRun,
    status_code=201,
    summary="Submit a reproduction job",
    responses={
        200: {"description": "the job this Idempotency-Key already created"},
        **errors(409),
    },
)
def submit(
    spec: JobCreate,
    session: SessionDep,
    settings: SettingsDep,
    token: Submitter,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    dry_run: Annotated[bool, Query(description="only expand: nothing is stored")] = False,
) -> JobRead | DryRun:
    """The job and all its runs are stored in one transaction, with the task that
    plans them (builds first) queued through the outbox."""
    online_since = agents.online_since(now=datetime.now(UTC), lease_s=settings.lease_s)
    if dry_run:
        expansion = jobs.expand(
            spec,
            jobs.candidates(session, spec, online_since=online_since),
            max_runs=settings.max_runs_per_job,
            online_since=online_since,
        )
        return DryRun(
            runs=len(expansion.cells),
            cells=jobs.cells_as_dicts(expansion)[:1000],
            skipped=expansion.skipped,
            targets=expansion.targets,
            eligible_agents=[
                EligibleAgent(
                    name=a.name, pools=a.pools, target=a.target, logical_cpus=a.logical_cpus
                )
                for a in expansion.eligible
            ],
        )
    job, created = jobs.create(
        session,
        spec=spec,
        idempotency_key=idempotency_key,
        submitted_by=token.id,
        max_runs=settings.max_runs_per_job,
        online_since=online_since,
    )
    if not created:
        response.status_code = 200
    else:
        request.state.runs_ready = builds.mark_ready_if_built(session, job=job)
    session.flush()
    request.state.poke_relay = True
    return JobRead.of(job, jobs.run_counts(session, job_id=job.id))


@router.get("", response_model=list[JobRead], summary="List jobs, newest first")
def list_jobs(
    session: SessionDep,
    _token: Viewer,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0,
) -> list[JobRead]:
    """The page's run counts come in one query (not one per job)."""
    page, _total = views.jobs_page(session, limit=limit, offset=offset)
    return [JobRead.of(job, counts) for job, counts in page]


@router.get(
    "/{job_id}",
    response_model=JobRead,
    summary="One job with its run counts",
    responses=errors(404),
)
def show(job_id: JobId, session: SessionDep, _token: Viewer) -> JobRead:
    job = jobs.get_or_raise(session, job_id=job_id)
    return JobRead.of(job, jobs.run_counts(session, job_id=job_id))


@router.post(
    "/{job_id}/cancel",
    response_model=JobRead,
    summary="Cancel a job",
    responses=errors(404, 409),
)
def cancel(job_id: JobId, session: SessionDep, _token: Submitter) -> JobRead:
    """Runs not started are cancelled at once; running ones learn it at their
    next heartbeat and stop."""
    job = jobs.cancel(session, job_id=job_id)
    session.flush()
    return JobRead.of(job, jobs.run_counts(session, job_id=job_id))
