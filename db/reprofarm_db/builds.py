"""Builds the controller made, and readiness of runs that wait for them."""

from __future__ import annotations

from datetime import datetime, timedelta

from reprofarm_protocol.builds import BuildManifest
from reprofarm_protocol.jobs import FINISHED_JOB_STATES, JobState, RunState
from reprofarm_protocol.queues import TASK_BUILD
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reprofarm_db import outbox
from reprofarm_db.errors import NotFound
from reprofarm_db.models import Build, BuildRequest, Job, Run, utcnow
from reprofarm_db.states import lock_job, locked_runs, move_job, move_run

REQUEST_AGAIN_AFTER = timedelta(minutes=10)
"""A build asked for and not recorded by then (the worker lost it) is asked again."""


def find(session: Session, *, go_version: str, target: str, source_sha256: str) -> Build | None:
    return session.scalar(
        select(Build).where(
            Build.go_version == go_version,
            Build.target == target,
            Build.source_sha256 == source_sha256,
        )
    )


def newest(session: Session, *, go_version: str, target: str) -> Build | None:
    """The latest build of this Go version for this target: after the
    controller is upgraded, its new hangtest source is built and wins."""
    return session.scalar(
        select(Build)
        .where(Build.go_version == go_version, Build.target == target)
        .order_by(Build.id.desc())
        .limit(1)
    )


def record(session: Session, *, go_version: str, manifest: BuildManifest) -> Build:
    """Store a build's manifest once (building twice gives the same row)."""
    found = find(
        session,
        go_version=go_version,
        target=manifest.target,
        source_sha256=manifest.source_sha256,
    )
    if found is not None:
        return found
    build = Build(
        go_version=go_version,
        toolchain_version=manifest.go_version,
        target=manifest.target,
        source_sha256=manifest.source_sha256,
        sha256=manifest.sha256,
        bytes=manifest.bytes,
        fix_present=manifest.fix_present,
        path=manifest.path,
    )
    session.add(build)
    session.flush()
    return build


def get_or_raise(session: Session, *, build_id: int) -> Build:
    build = session.get(Build, build_id)
    if build is None:
        raise NotFound(f"build {build_id} does not exist")
    return build


def list_(session: Session) -> list[Build]:
    return list(session.scalars(select(Build).order_by(Build.id.desc())))


def go_versions(job: Job) -> set[str]:
    """The Go releases a job's runs use: its axis, or a verify study's arms' own (the
    common version only for an arm that does not set its own)."""
    versions = set()
    for arm in ("baseline", "candidate"):
        if arm in job.spec:
            versions.add(str(job.spec[arm].get("go_version") or job.spec["go_versions"][0]))
    return versions or set(job.spec["go_versions"])


def missing_for_job(session: Session, *, job: Job, source_sha256: str) -> list[tuple[str, str]]:
    """(go_version, target) pairs the job still needs built."""
    needed = {(go, t) for go in go_versions(job) for t in job.targets}
    return sorted(
        (go, t)
        for go, t in needed
        if find(session, go_version=go, target=t, source_sha256=source_sha256) is None
    )


def mark_ready(
    session: Session, *, job: Job, source_sha256: str, now: datetime | None = None
) -> int:
    """Pending runs whose builds all exist become ready. Returns how many."""
    if job.status == JobState.CANCELLED:
        return 0
    missing = {go for go, _ in missing_for_job(session, job=job, source_sha256=source_sha256)}
    return _make_ready(session, job=job, missing_versions=missing, now=now or utcnow())


def mark_ready_if_built(session: Session, *, job: Job, now: datetime | None = None) -> int:
    """At submit: when a build of every (Go version, target) the job needs exists
    already, its runs are ready at once, in the submit's transaction, and an idle
    agent can start one within milliseconds (no round trip through the worker).
    The worker's planning still runs and builds a newer hangtest source if the
    controller was upgraded; leases always take the newest build."""
    needed = {(go, t) for go in go_versions(job) for t in job.targets}
    if not needed or any(newest(session, go_version=go, target=t) is None for go, t in needed):
        return 0
    return _make_ready(session, job=job, missing_versions=set(), now=now or utcnow())


def _make_ready(session: Session, *, job: Job, missing_versions: set[str], now: datetime) -> int:
    # The job's row is locked and read again first: a sweep that expired the job,
    # or a cancel, committed meanwhile must win. Without the lock, planning wrote
    # READY over runs the sweep had just expired and RUNNING over the job, which
    # then waited forever for agents that were never coming.
    # A locking query with populate_existing (as a lease's claim does) rather than
    # refresh(): the query autoflushes the caller's pending changes first.
    if lock_job(session, job_id=job.id) is None or job.status in FINISHED_JOB_STATES:
        return 0
    missing = missing_versions
    ready = 0
    for run in locked_runs(session, Run.job_id == job.id, Run.status == RunState.PENDING):
        if run.go_version not in missing and move_run(run, RunState.READY, ready_at=now):
            ready += 1
    if job.status == JobState.QUEUED:
        session.flush()
        move_job(session, job_id=job.id, to=JobState.RUNNING, now=now)
    return ready


def request(session: Session, *, go_version: str, target: str, now: datetime) -> bool:
    """Ask the worker for a build an agent needs (a job that waited for agents did
    not know its target): once, and again only after REQUEST_AGAIN_AFTER. Returns
    whether a build task was queued. Runs inside the lease transaction, so a race
    with another lease request is settled in a savepoint, never by failing it."""
    found = session.scalar(
        select(BuildRequest).where(
            BuildRequest.go_version == go_version, BuildRequest.target == target
        )
    )
    if found is not None:
        if now - found.requested_at < REQUEST_AGAIN_AFTER:
            return False
        found.requested_at = now
    else:
        try:
            with session.begin_nested():
                session.add(BuildRequest(go_version=go_version, target=target, requested_at=now))
        except IntegrityError:
            return False  # another lease request asked at the same moment
    outbox.add(session, task=TASK_BUILD, args=[go_version, target, None])
    return True
