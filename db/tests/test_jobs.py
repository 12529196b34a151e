import pytest
from reprofarm_db import jobs
from reprofarm_db.engine import transaction
from reprofarm_db.errors import Conflict, Invalid
from reprofarm_db.models import Outbox, Run
from reprofarm_protocol.jobs import JobCreate
from reprofarm_protocol.queues import TASK_PLAN_JOB
from sqlalchemy import func, select

from tests.factories import register_agent


def test_matrix_expands_per_pool_and_skips_impossible_cells(sessions):
    with transaction(sessions) as s:
        register_agent(s, "arm-1", pools=["windows-arm64"], cpus=8)
        register_agent(s, "vm-1", pools=["windows-x64-vm"], cpus=2, arch="amd64")
        spec = JobCreate(
            scenario="pipe-close-race",
            go_versions=["1.25.5", "1.27.3"],
            pools=["windows-arm64", "windows-x64-vm"],
            cpus=[1, 4, "all"],
            affinities=["compact", "spread"],
            repeats=3,
        )
        job, created = jobs.create(s, spec=spec, idempotency_key=None, max_runs=1000)
        assert created
        runs = s.scalar(select(func.count()).where(Run.job_id == job.id))
        # arm pool: 2 go x 3 cpus x 2 aff x 3; vm pool: 4 CPUs skipped -> 2 go x 2 cpus x 2 x 3
        assert runs == 36 + 24
        assert [k["cpus"] for k in job.skipped] == [4, 4]
        assert "at most 2" in job.skipped[0]["reason"]
        assert job.targets == ["windows/amd64", "windows/arm64"]
        assert [(o.task, o.args) for o in s.scalars(select(Outbox))] == [(TASK_PLAN_JOB, [job.id])]


def test_each_agent_fan_out_makes_runs_per_agent(sessions):
    with transaction(sessions) as s:
        a, _ = register_agent(s, "a", pools=["p"])
        b, _ = register_agent(s, "b", pools=["p"])
        spec = JobCreate(scenario="control-deadlock", pools=["p"], fan_out="each-agent", repeats=2)
        job, _ = jobs.create(s, spec=spec, idempotency_key=None, max_runs=100)
        owners = sorted(s.scalars(select(Run.required_agent_id).where(Run.job_id == job.id)))
        assert owners == [a.id, a.id, b.id, b.id]


def test_jobs_over_the_size_limit_are_refused_and_store_nothing(sessions):
    with transaction(sessions) as s:
        register_agent(s, "a")
    with pytest.raises(Invalid, match="more than 10 runs") as err, transaction(sessions) as s:
        jobs.create(
            s,
            spec=JobCreate(scenario="pipe-close-race", repeats=11),
            idempotency_key=None,
            max_runs=10,
        )
    assert err.value.field == "repeats"
    with transaction(sessions) as s:
        assert s.scalar(select(func.count()).select_from(Run)) == 0


def test_no_matching_agent_is_refused_naming_the_pool(sessions):
    with transaction(sessions) as s:
        register_agent(s, "a", pools=["windows-x64"])
        with pytest.raises(Invalid, match="no online agent matches pools"):
            jobs.create(
                s,
                spec=JobCreate(scenario="pipe-close-race", pools=["windows-arm64"]),
                idempotency_key=None,
                max_runs=10,
            )


def test_idempotency_key_returns_the_first_job_and_refuses_another_spec(sessions):
    spec = JobCreate(scenario="pipe-close-race", repeats=2)
    with transaction(sessions) as s:
        register_agent(s, "a")
        first, _created = jobs.create(s, spec=spec, idempotency_key="k1", max_runs=10)
    with transaction(sessions) as s:
        again, created_again = jobs.create(s, spec=spec, idempotency_key="k1", max_runs=10)
        assert (again.id, created_again) == (first.id, False)
        assert s.scalar(select(func.count()).select_from(Run)) == 2
        with pytest.raises(Conflict, match="different job"):
            jobs.create(
                s, spec=JobCreate(scenario="socket-pipe-mix"), idempotency_key="k1", max_runs=10
            )


def test_a_job_stored_by_an_older_release_is_the_same_job_when_resubmitted(sessions):
    """Stored before control_chance became a list (one number) and before a field existed:
    the same body sent again with its key returns that job, not a 409."""
    spec = JobCreate(scenario="control-deadlock", control_chance=1e-3)
    with transaction(sessions) as s:
        register_agent(s, "a")
        first, _ = jobs.create(s, spec=spec, idempotency_key="old", max_runs=10)
        stored = {k: v for k, v in first.spec.items() if k != "wait_for_agents_s"}
        first.spec = {**stored, "control_chance": 1e-3}  # as the older release wrote it
    with transaction(sessions) as s:
        again, created = jobs.create(s, spec=spec, idempotency_key="old", max_runs=10)
        assert (again.id, created) == (first.id, False)
        other = JobCreate(scenario="control-deadlock", control_chance=1e-6)
        with pytest.raises(Conflict, match="different job"):
            jobs.create(s, spec=other, idempotency_key="old", max_runs=10)


def test_offline_agents_get_no_runs(sessions):
    from datetime import timedelta

    with transaction(sessions) as s:
        old, _ = register_agent(s, "old", pools=["p"])
        fresh, _ = register_agent(s, "fresh", pools=["p"])
        old.last_seen -= timedelta(minutes=10)
        since = old.last_seen + timedelta(minutes=5)
        spec = JobCreate(scenario="pipe-close-race", pools=["p"], fan_out="each-agent")
        job, _ = jobs.create(s, spec=spec, idempotency_key=None, max_runs=10, online_since=since)
        owners = s.scalars(select(Run.required_agent_id).where(Run.job_id == job.id)).all()
        assert owners == [fresh.id]


def test_the_sweep_settles_a_running_job_whose_last_results_crossed(sessions):
    """Two last results committed at once each saw the other's run open: the job
    stayed running. finish_settled ends it; a job with an open run stays."""
    from reprofarm_db.models import Job, Run
    from reprofarm_protocol.jobs import JobState, RunState

    with transaction(sessions) as s:
        done, busy = Job(spec={}, status=JobState.RUNNING), Job(spec={}, status=JobState.RUNNING)
        s.add_all([done, busy])
        s.flush()
        for job, states in ((done, ("passed", "hung")), (busy, ("passed", "leased"))):
            for state in states:
                s.add(
                    Run(
                        job_id=job.id,
                        status=state,
                        scenario="pipe-close-race",
                        go_version="1.27.3",
                        affinity="compact",
                        selector={},
                    )
                )
    with transaction(sessions) as s:
        assert jobs.finish_settled(s) == [done.id]
    with transaction(sessions) as s:
        assert s.get(Job, done.id).status == JobState.DONE
        assert s.get(Job, busy.id).status == JobState.RUNNING
        assert RunState.LEASED in {r.status for r in s.query(Run).filter_by(job_id=busy.id)}


def test_planning_that_read_the_job_before_its_expiry_does_not_revive_it(postgres_url):
    """The sweep expires a waiting job while the worker's planning holds it, read
    as queued: planning must not write READY and RUNNING over the expiry (the job
    then waited forever; seen in CI as a job that never expired)."""
    from datetime import UTC, datetime, timedelta

    from reprofarm_db import builds
    from reprofarm_db.engine import make_engine, make_sessionmaker
    from reprofarm_db.migrate import upgrade
    from reprofarm_db.models import Job
    from reprofarm_protocol.jobs import JobState, RunState

    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    sessions = make_sessionmaker(engine)
    now = datetime.now(UTC)
    with transaction(sessions) as s:
        job = Job(
            spec={"wait_for_agents_s": 3},
            status=JobState.QUEUED,
            expires_at=now - timedelta(seconds=1),
        )
        s.add(job)
        s.flush()
        s.add(
            Run(
                job_id=job.id,
                status=RunState.PENDING,
                scenario="pipe-close-race",
                go_version="1.27.3",
                affinity="compact",
                selector={},
                pool="away",
            )
        )
    with transaction(sessions) as planning:
        seen = planning.get(Job, job.id)
        assert seen.status == JobState.QUEUED
        with transaction(sessions) as sweep:
            assert jobs.expire_waiting(sweep, now=now) == [job.id]
        assert builds._make_ready(planning, job=seen, missing_versions=set(), now=now) == 0
    with transaction(sessions) as s:
        assert s.get(Job, job.id).status == JobState.EXPIRED
        assert {r.status for r in s.scalars(select(Run).where(Run.job_id == job.id))} == {
            RunState.EXPIRED
        }
    engine.dispose()
