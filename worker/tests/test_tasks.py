"""The worker's task bodies on the real Postgres: safe to run twice."""

from reprofarm_db import jobs
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.migrate import upgrade
from reprofarm_db.models import Build, Outbox, Run
from reprofarm_db.settings import ControllerSettings
from reprofarm_protocol.jobs import JobCreate
from reprofarm_protocol.queues import TASK_BUILD, TASK_PLAN_JOB
from reprofarm_worker.tasks import build, plan_job, sweep_leases
from sqlalchemy import select

from tests.factories import register_agent


def test_plan_build_plan_makes_runs_ready_once_even_when_repeated(
    postgres_url, tmp_path, build_cache
):
    upgrade(postgres_url)
    sessions = make_sessionmaker(make_engine(postgres_url))
    # Share the session's Go build cache: the build itself is what is tested here.
    settings = ControllerSettings(data_dir=tmp_path, database_url=postgres_url)
    settings.build_cache_dir.parent.mkdir(parents=True, exist_ok=True)
    settings.build_cache_dir.symlink_to(build_cache, target_is_directory=True)
    with transaction(sessions) as s:
        register_agent(s, "x64", arch="amd64", os="linux")
        job, _ = jobs.create(
            s,
            spec=JobCreate(scenario="pipe-close-race", repeats=3),
            idempotency_key=None,
            max_runs=10,
        )
    assert plan_job(sessions, job.id) == [("1.27.3", "linux/amd64")]
    assert plan_job(sessions, job.id) == [("1.27.3", "linux/amd64")]
    first = build(sessions, settings, "1.27.3", "linux/amd64", job.id)
    again = build(sessions, settings, "1.27.3", "linux/amd64", job.id)
    assert first == again
    assert plan_job(sessions, job.id) == []
    assert plan_job(sessions, job.id) == []
    with transaction(sessions) as s:
        assert s.scalars(select(Run.status)).all() == ["ready"] * 3
        assert len(s.scalars(select(Build)).all()) == 1
        assert jobs.get_or_raise(s, job_id=job.id).status == "running"
        tasks = [o.task for o in s.scalars(select(Outbox).order_by(Outbox.id))]
        assert tasks[0] == TASK_PLAN_JOB
        assert set(tasks[1:]) == {TASK_BUILD, TASK_PLAN_JOB}
    assert sweep_leases(sessions, settings) == []
