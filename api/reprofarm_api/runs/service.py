"""Runs as the api shows them: a page's artifacts come in one query, so a page
costs the same number of queries whatever its runs hold."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlencode

from reprofarm_db import artifacts, jobs, views
from reprofarm_db.errors import NotFound
from reprofarm_db.models import Run
from sqlalchemy.orm import Session

from reprofarm_api.runs.schemas import RunRead, RunReadPage


def read(session: Session, runs: Sequence[Run]) -> list[RunRead]:
    """Each run with its artifacts: one query for all of them."""
    found = artifacts.for_runs(session, run_ids=[r.id for r in runs])
    return [RunRead.of(r, found[r.id]) for r in runs]


def get_or_raise(session: Session, *, run_id: int) -> RunRead:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    return RunRead.of(run, artifacts.for_run(session, run_id=run_id))


def page_of_job(
    session: Session, *, job_id: int, status: str | None, limit: int, offset: int
) -> RunReadPage:
    """A job's runs by id, ``limit`` from ``offset``, with the total and the
    next page's link. 404 for a job that does not exist."""
    jobs.get_or_raise(session, job_id=job_id)
    runs, total = views.job_runs(
        session,
        job_id=job_id,
        status=status,
        sort="id",
        descending=False,
        limit=limit,
        offset=offset,
    )
    following = None
    if offset + len(runs) < total:
        query: dict[str, str | int] = {"limit": limit, "offset": offset + limit}
        if status is not None:
            query["status"] = status
        following = f"/api/v1/jobs/{job_id}/runs?{urlencode(query)}"
    return RunReadPage(
        total=total, limit=limit, offset=offset, next=following, runs=read(session, runs)
    )
