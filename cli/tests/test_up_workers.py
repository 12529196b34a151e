"""`reprofarm up`'s Celery workers (``up.WORKERS``), as real processes on the
embedded broker and database: analysis has a worker of its own, so planning goes
on while dumps are being read."""

from __future__ import annotations

import signal

from reprofarm_cli.up import WORKERS
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.migrate import upgrade
from reprofarm_db.models import ArtifactAnalysis, Run
from reprofarm_db.settings import ControllerSettings
from reprofarm_protocol.queues import TASK_ANALYZE_ARTIFACT, TASK_PLAN_JOB, TASK_QUEUES
from reprofarm_worker.app import create_celery
from sqlalchemy import func, select

from tests.celery_farm import (
    leased_run_with_dumps,
    pending_job,
    start_worker,
    stop,
    wait_for,
    worker_env,
)


def test_a_plan_completes_while_slow_analyses_hold_the_analysis_worker(tmp_path):
    """Two analyses that block (their dumps are FIFOs nobody writes): as many as
    the one worker `up` had before had threads. The plan sent after them still
    makes its job's runs ready."""
    data = tmp_path / "data"
    data.mkdir()
    settings = ControllerSettings(data_dir=data, database_url="", broker_url="")
    upgrade(settings.db_url)
    sessions = make_sessionmaker(make_engine(settings.db_url))
    _run, slow = leased_run_with_dumps(
        sessions, tmp_path, {"goroutines-1.txt": None, "goroutines-2.txt": None}
    )
    job_id = pending_job(sessions)
    env = worker_env(data, analysis_timeout_s="600")
    logs = {name: tmp_path / f"{name}.log" for name in WORKERS}
    workers = [start_worker(args, env, logs[name]) for name, args in WORKERS.items()]
    app = create_celery(settings)
    try:
        for artifact_id in slow:
            queue = TASK_QUEUES[TASK_ANALYZE_ARTIFACT]
            app.send_task(TASK_ANALYZE_ARTIFACT, args=[artifact_id], queue=queue)
        analysis_log = logs["analysis"] if "analysis" in logs else next(iter(logs.values()))
        wait_for(
            "an analysis started",
            lambda: f"{TASK_ANALYZE_ARTIFACT}[" in analysis_log.read_text(errors="replace"),
            analysis_log,
        )
        app.send_task(TASK_PLAN_JOB, args=[job_id], queue=TASK_QUEUES[TASK_PLAN_JOB])

        def ready() -> bool:
            with transaction(sessions) as s:
                statuses = s.scalars(select(Run.status).where(Run.job_id == job_id)).all()
                return bool(statuses) and set(statuses) == {"ready"}

        wait_for("the plan made the job's runs ready", ready, logs["worker"], timeout_s=60)
        with transaction(sessions) as s:
            # the analyses are still blocked: planning did not wait for them
            assert s.scalar(select(func.count()).select_from(ArtifactAnalysis)) == 0
        assert all(w.poll() is None for w in workers)
    finally:
        for worker in workers:
            stop(worker, signal.SIGKILL)  # a warm stop would wait for the analyses
