"""The worker's task bodies on the real Postgres: safe to run twice."""

import time

from reprofarm_db import jobs
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.migrate import upgrade
from reprofarm_db.models import Build, Job, Outbox, Run
from reprofarm_db.settings import ControllerSettings
from reprofarm_protocol.jobs import JobCreate
from reprofarm_protocol.queues import TASK_BUILD, TASK_PLAN_JOB
from reprofarm_worker.tasks import build, plan_job, sweep_leases
from sqlalchemy import delete, select

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


def test_a_job_whose_planning_was_lost_is_planned_again_by_the_sweep(
    postgres_url, tmp_path, build_cache
):
    """The worker died with the job's plan task (or its build's): the job sat queued with
    pending runs forever. The sweep sends planning again past REPLAN_AFTER_S, once per
    period, and the re-sent plan makes the runs ready."""
    upgrade(postgres_url)
    sessions = make_sessionmaker(make_engine(postgres_url))
    settings = ControllerSettings(data_dir=tmp_path, database_url=postgres_url, replan_after_s=0.2)
    settings.build_cache_dir.parent.mkdir(parents=True, exist_ok=True)
    settings.build_cache_dir.symlink_to(build_cache, target_is_directory=True)
    with transaction(sessions) as s:
        register_agent(s, "x64", arch="amd64", os="linux")
        job, _ = jobs.create(
            s,
            spec=JobCreate(scenario="pipe-close-race", repeats=2),
            idempotency_key=None,
            max_runs=10,
        )
        s.execute(delete(Outbox))  # the plan task, lost with the worker that took it

    def plans_sent() -> int:
        with transaction(sessions) as s:
            return len(s.scalars(select(Outbox).where(Outbox.task == TASK_PLAN_JOB)).all())

    sweep_leases(sessions, settings)
    assert plans_sent() == 0  # not yet stranded
    time.sleep(0.3)
    sweep_leases(sessions, settings)
    sweep_leases(sessions, settings)
    assert plans_sent() == 1  # once per period, not once per sweep
    build(sessions, settings, "1.27.3", "linux/amd64", None)  # what the re-plan asks for
    assert plan_job(sessions, job.id) == []
    with transaction(sessions) as s:
        assert s.scalars(select(Run.status)).all() == ["ready"] * 2
        assert s.get(Job, job.id).replans == 1
    time.sleep(0.3)
    sweep_leases(sessions, settings)
    assert plans_sent() == 1  # planned: nothing pending any more


def test_a_job_whose_builds_never_come_ends_its_pending_runs_after_the_last_replan(
    postgres_url, tmp_path
):
    upgrade(postgres_url)
    sessions = make_sessionmaker(make_engine(postgres_url))
    settings = ControllerSettings(
        data_dir=tmp_path, database_url=postgres_url, replan_after_s=0.05, replan_max=2
    )
    with transaction(sessions) as s:
        register_agent(s, "x64", arch="amd64", os="linux")
        job, _ = jobs.create(
            s,
            spec=JobCreate(scenario="pipe-close-race", repeats=2),
            idempotency_key=None,
            max_runs=10,
        )
    for _ in range(3):  # two re-plans, then the job is given up on
        time.sleep(0.1)
        sweep_leases(sessions, settings)
    with transaction(sessions) as s:
        runs = s.scalars(select(Run)).all()
        assert [r.status for r in runs] == ["expired"] * 2
        assert all("build never came" in r.reason for r in runs)
        assert s.get(Job, job.id).status == "expired"
