"""Controller tasks. Each is thin, takes ids, and is safe to run twice: the
database says what is already done."""

from __future__ import annotations

import fcntl  # the controller's worker runs on POSIX (Celery has no Windows support)
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from celery import Celery, Task
from reprofarm_agent.build import build_hangtest, hangtest_source_dir, source_sha256
from reprofarm_agent.toolchains import resolve_toolchain
from reprofarm_db import artifacts, builds, health, jobs, leases, outbox, studies, wakeups
from reprofarm_db.engine import transaction
from reprofarm_db.settings import ControllerSettings
from reprofarm_protocol import webhook_targets
from reprofarm_protocol.queues import (
    TASK_ANALYZE_ARTIFACT,
    TASK_BUILD,
    TASK_PLAN_JOB,
    TASK_QUEUES,
    TASK_REANALYZE,
    TASK_STUDY_STEP,
    TASK_STUDY_WEBHOOK,
    TASK_SWEEP_LEASES,
    TASK_SWEEP_UPLOADS,
)
from sqlalchemy.orm import Session, sessionmaker

from reprofarm_worker import webhooks
from reprofarm_worker.analysis import analyze_artifact, reanalyze

log = logging.getLogger(__name__)


def plan_job(
    sessions: sessionmaker[Session], job_id: int, wakeup_url: str | None = None
) -> list[tuple[str, str]]:
    """Make the job's runs ready if its builds exist; otherwise ask for the
    missing builds (each build task plans the job again when it is done).
    Returns the builds still missing."""
    src = source_sha256(hangtest_source_dir())
    ready = 0
    with transaction(sessions) as session:
        job = jobs.get_or_raise(session, job_id=job_id)
        missing = builds.missing_for_job(session, job=job, source_sha256=src)
        if missing:
            for go_version, target in missing:
                outbox.add(session, task=TASK_BUILD, args=[go_version, target, job_id])
        else:
            ready = builds.mark_ready(session, job=job, source_sha256=src)
            log.info("job %s: %s runs ready", job_id, ready)
    wakeups.publish(wakeup_url, ready)  # after the commit: idle agents take them now
    return missing


def study_step(sessions: sessionmaker[Session], settings: ControllerSettings, job_id: int) -> bool:
    """One step of a study: end it if it decided, else top up its runs in flight.
    Returns whether it decided."""
    with transaction(sessions) as session:
        done = studies.step(
            session,
            job_id=job_id,
            max_runs=settings.max_runs_per_job,
            replan_max=settings.replan_max,
        )
    wakeups.publish(settings.wakeup_redis_url, done.ready)  # after the commit: agents take them
    if done.decided:
        log.info("study %s decided", job_id)
    return done.decided


def step_studies(sessions: sessionmaker[Session], settings: ControllerSettings) -> int:
    """Every study not finished takes a step, each in its own transaction: the safety
    net under the step each result asks for (a task lost with a worker, a study waiting
    on its dumps' analysis). Returns how many decided."""
    with transaction(sessions) as session:
        running = studies.running(session)
    return sum(study_step(sessions, settings, job_id) for job_id in running)


def send_webhook(
    sessions: sessionmaker[Session], settings: ControllerSettings, job_id: int
) -> int | None:
    """POST a decided study's webhook once (the task retries on WebhookRetry). Returns
    the receiver's status, or None when there is nothing to send."""
    with transaction(sessions) as session:
        found = webhooks.payload(session, job_id=job_id)
    if found is None or settings.webhook_secret is None:
        return None
    url, body = found
    secret = settings.webhook_secret.get_secret_value().encode()
    try:
        with httpx.Client() as client:
            status = webhooks.deliver(
                client,
                url=url,
                body=body,
                secret=secret,
                delivery=job_id,
                allowed_hosts=settings.webhook_hosts,
            )
    except webhook_targets.ForbiddenTarget as exc:
        log.error("study %s: webhook %s not sent: %s", job_id, url, exc)
        return None
    if status >= 400:
        log.error("study %s: webhook %s refused it (HTTP %s); not sent again", job_id, url, status)
    return status


def build(
    sessions: sessionmaker[Session],
    settings: ControllerSettings,
    go_version: str,
    target: str,
    job_id: int | None,
) -> int:
    """Build hangtest (content-addressed: a rebuild is a cache lookup), record
    it, and plan the job that asked for it."""
    toolchain = resolve_toolchain(go_version, settings.build_cache_dir)
    manifest = build_hangtest(toolchain, target, settings.build_cache_dir)
    with transaction(sessions) as session:
        row = builds.record(session, go_version=go_version, manifest=manifest)
        if job_id is not None:
            outbox.add(session, task=TASK_PLAN_JOB, args=[job_id])
        return row.id


def sweep_leases(sessions: sessionmaker[Session], settings: ControllerSettings) -> list[int]:
    """Expired leases become lost runs (re-queued); jobs whose wait for agents is
    over expire the runs no agent took; running jobs with nothing open end; jobs
    stranded in planning are planned again (their task relayed by the caller)."""
    now = datetime.now(UTC)
    # One transaction each: together they held a lost run's agent while waiting for a
    # ready run a claim by that agent held (a deadlock), and the expiry saw the sweep's
    # uncommitted retries and expired them.
    with transaction(sessions) as session:
        lost = leases.sweep(session, now=now, max_attempts=settings.max_attempts)
    with transaction(sessions) as session:
        expired = jobs.expire_waiting(session, now=now)
    with transaction(sessions) as session:
        jobs.finish_settled(session)
    step_studies(sessions, settings)
    with transaction(sessions) as session:
        replanned, abandoned = jobs.replan_stranded(
            session, now=now, after_s=settings.replan_after_s, max_replans=settings.replan_max
        )
    if replanned:
        log.warning(
            "jobs stranded in planning (a task lost with a worker), planned again: %s", replanned
        )
    if abandoned:
        log.error("jobs whose builds never came, pending runs expired: %s", abandoned)
    if lost:
        log.warning("runs lost (agent silent), re-queued: %s", lost)
        wakeups.publish(settings.wakeup_redis_url, len(lost))  # their retries are ready
    if expired:
        log.warning("jobs whose wait for agents ended with runs nobody took: %s", expired)
    check_agents(sessions, settings, now=now)  # last: a failure here skips nothing above
    return lost


def check_agents(
    sessions: sessionmaker[Session], settings: ControllerSettings, *, now: datetime
) -> list[int]:
    """Health checks: close the ones that can no longer decide, then start the ones due
    (a pool's positive control, an unhealthy agent's recheck). Returns those started."""
    with transaction(sessions) as session:
        closed = health.close_stale(session, now=now)
    with transaction(sessions) as session:
        started = health.schedule_due(
            session,
            now=now,
            lease_s=settings.lease_s,
            recheck_s=settings.health_recheck_s,
            max_runs=settings.max_runs_per_job,
        )
    if closed:
        log.info("health checks closed without a verdict: %s", closed)
    if started:
        log.info("health checks started: %s", started)
    return started


def sweep_uploads(
    sessions: sessionmaker[Session], settings: ControllerSettings, *, now: datetime | None = None
) -> list[str]:
    """Remove uploads nobody finished: announced more than
    ``abandoned_upload_s`` ago, their partial file not written for as long, and
    no request uploading them now (its lock file exists only while held).
    Rows go first, then files; returns the files removed. Safe to run twice."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(seconds=settings.abandoned_upload_s)
    with transaction(sessions) as session:
        candidates = artifacts.abandoned(session, started_before=cutoff)
    stale = [i for i, path in candidates if _idle_since(Path(path), cutoff)]
    with transaction(sessions) as session:
        removed = artifacts.remove_abandoned(session, artifact_ids=stale, started_before=cutoff)
    for path in removed:
        Path(path).unlink(missing_ok=True)
    if removed:
        log.warning("abandoned uploads removed (not written since %s): %s", cutoff, removed)
    return removed


def _idle_since(partial: Path, cutoff: datetime) -> bool:
    if _held(partial.with_name(partial.name + ".lock")):
        return False  # a request holds it right now
    try:
        written = partial.stat().st_mtime
    except FileNotFoundError:
        return True  # announced, no byte kept
    return written < cutoff.timestamp()


def _held(lock: Path) -> bool:
    """Whether an api request holds this upload's lock right now. The lock file of an
    api process that died mid-upload stays behind with no holder: that upload is as
    abandoned as any other (the api's own lock takes such a file over the same way)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def register(app: Celery, settings: ControllerSettings, sessions: sessionmaker[Session]) -> None:
    """Bind the tasks to this app; the outbox they write is relayed here too,
    right after each task (the worker is connected to the broker anyway)."""

    def _flush_outbox() -> None:
        with transaction(sessions) as session:
            outbox.relay(
                session,
                send=lambda task, args: app.send_task(task, args=args, queue=TASK_QUEUES[task]),
            )

    @app.task(name=TASK_PLAN_JOB)  # type: ignore[untyped-decorator]
    def _plan_job(job_id: int) -> list[tuple[str, str]]:
        missing = plan_job(sessions, job_id, settings.wakeup_redis_url)
        _flush_outbox()
        return missing

    @app.task(name=TASK_BUILD)  # type: ignore[untyped-decorator]
    def _build(go_version: str, target: str, job_id: int | None = None) -> int:
        build_id = build(sessions, settings, go_version, target, job_id)
        _flush_outbox()
        return build_id

    @app.task(name=TASK_STUDY_STEP)  # type: ignore[untyped-decorator]
    def _study_step(job_id: int) -> bool:
        decided = study_step(sessions, settings, job_id)
        _flush_outbox()  # the webhook of a study that decided
        return decided

    @app.task(  # type: ignore[untyped-decorator]
        name=TASK_STUDY_WEBHOOK, bind=True, max_retries=settings.webhook_attempts - 1
    )
    def _study_webhook(task: Task, job_id: int) -> int | None:
        try:
            return send_webhook(sessions, settings, job_id)
        except webhooks.WebhookRetry as exc:
            log.warning("study %s: webhook not delivered (%s); sending again", job_id, exc)
            raise task.retry(countdown=min(2.0**task.request.retries, 300.0)) from exc

    @app.task(name=TASK_ANALYZE_ARTIFACT)  # type: ignore[untyped-decorator]
    def _analyze(artifact_id: int) -> str:
        scratch = settings.data_dir / "analysis-scratch"
        label = analyze_artifact(sessions, artifact_id, scratch, settings.analysis_limits())
        _flush_outbox()  # a study waiting on this run's label takes its step now
        return label

    @app.task(name=TASK_REANALYZE)  # type: ignore[untyped-decorator]
    def _reanalyze(everything: bool = False) -> int:
        scratch = settings.data_dir / "analysis-scratch"
        limits = settings.analysis_limits()
        done = reanalyze(sessions, scratch, everything=everything, limits=limits)
        return len(done.artifacts) + len(done.triaged)

    @app.task(name=TASK_SWEEP_UPLOADS)  # type: ignore[untyped-decorator]
    def _sweep_uploads() -> int:
        return len(sweep_uploads(sessions, settings))

    @app.task(name=TASK_SWEEP_LEASES)  # type: ignore[untyped-decorator]
    def _sweep() -> list[int]:
        lost = sweep_leases(sessions, settings)
        _flush_outbox()
        return lost
