"""The state machine of runs and jobs (reprofarm_db.states), each guarantee on its own:
forbidden steps refused, stale writes failing, and the races the storm test found, made
deterministic with two sessions."""

import re
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from reprofarm_db import builds, jobs, leases, states
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.errors import Conflict
from reprofarm_db.migrate import upgrade
from reprofarm_db.models import Agent, BuildRequest, Job, Run
from reprofarm_protocol.jobs import (
    FINAL_STATES,
    JOB_TRANSITIONS,
    RUN_TRANSITIONS,
    Heartbeat,
    JobCreate,
    JobState,
    RunState,
)
from reprofarm_protocol.runs import RunStatus
from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError

from db.tests.test_leases import LEASE_TOKENS, T0, claim, make_ready_job, result
from tests.factories import FAKE_SOURCE, register_agent


def test_every_state_has_its_steps_listed_and_final_states_have_none():
    assert set(RUN_TRANSITIONS) == set(RunState)
    assert set(JOB_TRANSITIONS) == set(JobState)
    assert all(not RUN_TRANSITIONS[s] for s in FINAL_STATES)
    assert RunState.LEASED not in RUN_TRANSITIONS[RunState.LOST]  # a lost run never returns


def test_a_forbidden_step_is_refused_by_move_run_and_raises_when_assigned(sessions):
    with transaction(sessions) as s:
        a, _ = register_agent(s, "a")
        make_ready_job(s)
    with transaction(sessions) as s:
        run, _ = claim(s, a.id)
        run_id = run.id
    with transaction(sessions) as s:
        run = s.get(Run, run_id)
        assert states.move_run(run, RunState.HUNG, reason="stalled")
    with transaction(sessions) as s:
        run = s.get(Run, run_id)
        assert not states.move_run(run, RunState.CANCELLED, reason="too late")
        assert (run.status, run.reason) == (RunState.HUNG, "stalled")  # nothing changed
        with pytest.raises(states.IllegalTransitionError, match="hung -> ready"):
            run.status = RunState.READY


def test_a_jobs_status_changes_only_through_move_job(sessions):
    with transaction(sessions) as s:
        register_agent(s, "a")
        job = make_ready_job(s)
        with pytest.raises(states.IllegalTransitionError, match="through move_job"):
            job.status = JobState.DONE
    with transaction(sessions) as s:
        assert states.move_job(s, job_id=job.id, to=JobState.CANCELLED, now=T0)
        assert not states.move_job(s, job_id=job.id, to=JobState.DONE, now=T0)
        assert s.get(Job, job.id).status == JobState.CANCELLED


def test_a_write_decided_on_a_stale_read_of_a_run_fails_instead_of_winning(sessions):
    with transaction(sessions) as s:
        a, _ = register_agent(s, "a")
        make_ready_job(s)
        run_id = s.scalar(select(Run.id))
    stale = sessions()  # reads the run, and keeps its copy after the commit (as sessions do)
    with stale.begin():
        old = stale.get(Run, run_id)
        assert old.status == RunState.READY
    with transaction(sessions) as s:
        claim(s, a.id)  # ready -> leased, committed
    old.reason = "written over a run read as ready"
    with pytest.raises(StaleDataError):
        stale.flush()
    stale.rollback()
    stale.close()
    with transaction(sessions) as s:
        assert s.get(Run, run_id).reason == ""


def test_a_ready_run_this_agent_can_take_is_found_behind_many_it_cannot(sessions):
    """21+ higher-priority runs whose selector this agent fails, then one it matches: a
    claim that matched selectors after reading a page of 20 never reached it."""
    with transaction(sessions) as s:
        a, _ = register_agent(s, "a", hypervisor="none")
        register_agent(s, "vm", hypervisor="hyperv")
        make_ready_job(s, repeats=25, selector={"hypervisor": "hyperv"}, priority=5)
        wanted = make_ready_job(s, selector={"hypervisor": "none"}, priority=0)
    with transaction(sessions) as s:
        got = claim(s, a.id)
        assert got is not None
        assert got[0].job_id == wanted.id


def test_a_retried_run_waits_out_its_grace_for_the_agent_that_lost_it_in_sql(sessions):
    with transaction(sessions) as s:
        a, _ = register_agent(s, "a")
        make_ready_job(s)
    with transaction(sessions) as s:
        run, _ = claim(s, a.id)
        lost_id = run.id
    with transaction(sessions) as s:
        leases.sweep(s, now=T0 + timedelta(seconds=61), max_attempts=3)
    with transaction(sessions) as s:
        assert claim(s, a.id, now=T0 + timedelta(seconds=70), grace=30) is None
        retry, _ = claim(s, a.id, now=T0 + timedelta(seconds=92), grace=30)
        assert retry.retry_of == lost_id


def test_a_second_different_late_result_is_refused_and_the_first_kept(sessions):
    with transaction(sessions) as s:
        a, _ = register_agent(s, "a")
        make_ready_job(s)
    with transaction(sessions) as s:
        run, _ = claim(s, a.id)
        run_id = run.id
    with transaction(sessions) as s:
        leases.sweep(s, now=T0 + timedelta(seconds=61), max_attempts=1)
    first, second = result(RunStatus.HUNG), result(RunStatus.PASSED)
    for report in (first, first):  # the same one twice: a no-op
        with transaction(sessions) as s:
            agent = s.get(Agent, a.id)
            kept, counted = leases.record_result(
                s,
                agent=agent,
                run_id=run_id,
                lease_token=LEASE_TOKENS[run_id],
                report=report,
                now=T0,
            )
            assert (kept.status, counted) == (RunState.LOST, False)
    with pytest.raises(Conflict, match="keeps the first late result"), transaction(sessions) as s:
        leases.record_result(
            s,
            agent=s.get(Agent, a.id),
            run_id=run_id,
            lease_token=LEASE_TOKENS[run_id],
            report=second,
            now=T0,
        )
    with transaction(sessions) as s:
        assert s.get(Run, run_id).late_result["status"] == "hung"


@pytest.fixture
def pg_sessions(postgres_url):
    """Postgres only: these races need two writers at once, which SQLite never allows."""
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.mark.parametrize("ender", ["cancel", "expire"])
def test_a_cancel_or_expiry_waits_for_a_claim_in_flight_and_leaves_its_run_leased(
    pg_sessions, ender
):
    """The claim has locked and leased the run but not committed when the job is cancelled
    or expires: the run stays leased, and the agent's result is accepted (a hang counted;
    before, the run was overwritten and the result refused with 409)."""
    sessions = pg_sessions
    with transaction(sessions) as s:
        a, _ = register_agent(s, "a")
        job = make_ready_job(s, wait_for_agents_s=1.0 if ender == "expire" else None)
    claiming = sessions()
    claiming.begin()
    run, _ = claim(claiming, a.id)  # locked and leased, not committed
    run_id = run.id

    def end_the_job():
        with transaction(sessions) as s:
            if ender == "cancel":
                jobs.cancel(s, job_id=job.id)
            else:
                jobs.expire_waiting(s, now=T0 + timedelta(days=365))

    ending = threading.Thread(target=end_the_job)
    ending.start()
    time.sleep(0.5)  # the ender now waits for the claim's lock
    claiming.commit()
    claiming.close()
    ending.join(timeout=30)
    assert not ending.is_alive()
    with transaction(sessions) as s:
        assert s.get(Run, run_id).status == RunState.LEASED
        reply = leases.heartbeat(
            s,
            agent_id=a.id,
            run_id=run_id,
            lease_token=LEASE_TOKENS[run_id],
            beat=Heartbeat(iterations=3),
            now=T0,
            lease_s=60,
        )
        assert reply.lease_valid
        assert reply.cancel is (ender == "cancel")
    with transaction(sessions) as s:
        stored, counted = leases.record_result(
            s,
            agent=s.get(Agent, a.id),
            run_id=run_id,
            lease_token=LEASE_TOKENS[run_id],
            report=result(RunStatus.HUNG),
            now=T0,
        )
        assert (stored.status, counted) == (RunState.HUNG, True)


def test_a_heartbeat_that_crosses_the_result_does_not_overwrite_it(pg_sessions):
    """The result holds the run's lock when the heartbeat arrives: the heartbeat waits,
    then finds the run no longer leased and writes nothing (before, it wrote its own
    iteration count over the result's)."""
    sessions = pg_sessions
    with transaction(sessions) as s:
        a, _ = register_agent(s, "a")
        make_ready_job(s)
    with transaction(sessions) as s:
        run, _ = claim(s, a.id)
        run_id = run.id
    reporting = sessions()
    reporting.begin()
    leases.record_result(
        reporting,
        agent=reporting.get(Agent, a.id),
        run_id=run_id,
        lease_token=LEASE_TOKENS[run_id],
        report=result(RunStatus.HUNG),  # 10 iterations
        now=T0,
    )
    reporting.flush()
    replies = []

    def beat():
        with transaction(sessions) as s:
            replies.append(
                leases.heartbeat(
                    s,
                    agent_id=a.id,
                    run_id=run_id,
                    lease_token=LEASE_TOKENS[run_id],
                    beat=Heartbeat(iterations=999_999),
                    now=T0,
                    lease_s=60,
                )
            )

    beating = threading.Thread(target=beat)
    beating.start()
    time.sleep(0.5)
    reporting.commit()
    reporting.close()
    beating.join(timeout=30)
    assert [r.lease_valid for r in replies] == [False]
    with transaction(sessions) as s:
        assert s.get(Run, run_id).iterations == 10


def test_no_code_but_the_state_machine_assigns_a_status():
    """Creation sets an initial state; every change goes through reprofarm_db.states."""
    root = Path(__file__).resolve().parents[2]
    packages = [
        "db/reprofarm_db",
        "api/reprofarm_api",
        "worker/reprofarm_worker",
        "cli/reprofarm_cli",
    ]
    assigning = re.compile(r"\.status\s*=[^=]")
    found = [
        f"{path.relative_to(root)}:{n}"
        for package in packages
        for path in (root / package).rglob("*.py")
        if path.name != "states.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if assigning.search(line)
    ]
    assert not found, found


def test_runs_without_a_build_for_this_agent_do_not_hide_the_runs_behind_them(sessions):
    """25 higher-priority runs of a Go version nobody built for this target, then one
    that is built: the claim takes the built one and asks for the missing build."""
    with transaction(sessions) as s:
        a, _ = register_agent(s, "a")
        waiting, _ = jobs.create(
            s,
            spec=JobCreate(
                scenario="control-deadlock", repeats=25, go_versions=["1.26.1"], priority=5
            ),
            idempotency_key=None,
            max_runs=100,
        )
        builds.mark_ready(s, job=waiting, source_sha256=FAKE_SOURCE, now=T0)  # no build: stays
        for run in s.scalars(select(Run).where(Run.job_id == waiting.id)):
            states.move_run(run, RunState.READY, ready_at=T0)  # as a job that waited for agents
        wanted = make_ready_job(s)
    with transaction(sessions) as s:
        got = claim(s, a.id)
        assert got is not None
        assert got[0].job_id == wanted.id
    with transaction(sessions) as s:
        assert claim(s, a.id) is None  # only unbuilt runs left: the build is asked for
        asked = s.scalars(select(BuildRequest.go_version)).all()
        assert asked == ["1.26.1"]


def test_a_stray_ready_run_of_a_cancelled_job_is_never_leased_and_the_sweep_ends_it(sessions):
    """A lost run's retry committed just after its job was cancelled (the sweep adds it
    without the job's lock)."""
    with transaction(sessions) as s:
        a, _ = register_agent(s, "a")
        job = make_ready_job(s)
        jobs.cancel(s, job_id=job.id)
    with transaction(sessions) as s:
        s.add(
            Run(
                job_id=job.id,
                status=RunState.READY,
                ready_at=T0,
                scenario="control-deadlock",
                go_version="1.27.3",
                affinity="compact",
                selector={},
            )
        )
    with transaction(sessions) as s:
        assert claim(s, a.id) is None
    with transaction(sessions) as s:
        jobs.finish_settled(s)
    with transaction(sessions) as s:
        statuses = s.scalars(select(Run.status).where(Run.job_id == job.id)).all()
        assert set(statuses) == {RunState.CANCELLED}
