import threading
from datetime import UTC, datetime, timedelta

import pytest
from reprofarm_db import builds, claims, jobs, leases, liveness
from reprofarm_db.engine import transaction
from reprofarm_db.errors import Unproven
from reprofarm_db.models import Agent, BuildRequest, Run
from reprofarm_protocol.jobs import Heartbeat, JobCreate, RunReport, RunState
from reprofarm_protocol.runs import RunResult, RunStatus
from sqlalchemy import func, select

from tests.factories import FAKE_SOURCE, fake_build, register_agent

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def make_ready_job(s, *, repeats=1, scenario="control-deadlock", **spec):
    job, _ = jobs.create(
        s,
        spec=JobCreate(scenario=scenario, repeats=repeats, **spec),
        idempotency_key=None,
        max_runs=1000,
    )
    for target in job.targets:
        fake_build(s, target=target)
    builds.mark_ready(s, job=job, source_sha256=FAKE_SOURCE, now=T0)
    return job


def result(status=RunStatus.HUNG, **extra):
    return RunReport(
        result=RunResult(
            status=status,
            reason="r",
            iterations=10,
            duration_s=1.0,
            cpu_set=[0],
            requested_cpu_set=[0],
            gomaxprocs=1,
            exit_code=None,
            **extra,
        )
    )


LEASE_TOKENS: dict[int, str] = {}


def claim(s, agent_id, now=T0, grace=30.0):
    """(run, build) or None; the lease's secret is kept in LEASE_TOKENS."""
    agent = s.get(Agent, agent_id)
    claimed = claims.claim_objects(s, agent=agent, now=now, lease_s=60, avoid_grace_s=grace)
    if claimed is None:
        return None
    run, build, secret = claimed
    LEASE_TOKENS[run.id] = secret
    return run, build


def test_a_ready_run_is_leased_once_with_its_build(sessions):
    with transaction(sessions) as s:
        a, _ = register_agent(s, "a")
        make_ready_job(s)
    with transaction(sessions) as s:
        run, build = claim(s, a.id)
        assert run.status == RunState.LEASED
        assert build.target == "windows/arm64"
        assert run.lease_expires_at == T0 + timedelta(seconds=60)
    with transaction(sessions) as s:
        assert claim(s, a.id) is None


def test_pools_and_cpu_counts_decide_who_may_lease(sessions):
    with transaction(sessions) as s:
        small, _ = register_agent(s, "small", pools=["p"], cpus=2)
        other, _ = register_agent(s, "other", pools=["q"], cpus=8)
        big, _ = register_agent(s, "big", pools=["p"], cpus=8)
        make_ready_job(s, pools=["p"], cpus=[4])
    with transaction(sessions) as s:
        assert claim(s, small.id) is None
        assert claim(s, other.id) is None
        assert claim(s, big.id) is not None


def test_concurrent_agents_never_lease_the_same_run(sessions):
    with transaction(sessions) as s:
        ids = [register_agent(s, f"a{i}")[0].id for i in range(4)]
        make_ready_job(s, repeats=20)
    leased: list[int] = []
    lock = threading.Lock()

    def worker(agent_id):
        while True:
            with transaction(sessions) as s:
                got = claim(s, agent_id)
                if got is None:
                    return
                with lock:
                    leased.append(got[0].id)

    threads = [threading.Thread(target=worker, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(leased) == 20
    assert len(set(leased)) == 20


def test_expired_lease_is_lost_and_rerun_preferably_elsewhere(sessions):
    with transaction(sessions) as s:
        a, _ = register_agent(s, "a")
        b, _ = register_agent(s, "b")
        make_ready_job(s)
    with transaction(sessions) as s:
        run, _ = claim(s, a.id)
        first = run.id
    with transaction(sessions) as s:
        assert leases.sweep(s, now=T0 + timedelta(seconds=61), max_attempts=3) == [first]
        assert leases.sweep(s, now=T0 + timedelta(seconds=62), max_attempts=3) == []
    later = T0 + timedelta(seconds=62)
    with transaction(sessions) as s:
        assert claim(s, a.id, now=later) is None  # the lost agent waits its grace period
        retry, _ = claim(s, b.id, now=later)
        assert (retry.retry_of, retry.attempt) == (first, 2)
        assert s.get(Run, first).status == RunState.LOST


def test_late_result_is_kept_but_not_counted_and_results_are_idempotent(sessions):
    with transaction(sessions) as s:
        a, _ = register_agent(s, "a")
        job = make_ready_job(s, repeats=2)
    with transaction(sessions) as s:
        lost_run, _ = claim(s, a.id)
        kept_run, _ = claim(s, a.id)
        lost_id, kept_id = lost_run.id, kept_run.id
        lost_run.lease_expires_at = T0 - timedelta(seconds=1)
    with transaction(sessions) as s:
        leases.sweep(s, now=T0, max_attempts=1)
    with transaction(sessions) as s:
        agent = s.get(Agent, a.id)
        run, counted = leases.record_result(
            s,
            agent=agent,
            run_id=lost_id,
            lease_token=LEASE_TOKENS[lost_id],
            report=result(),
            now=T0,
        )
        assert (run.status, counted, run.late_result["status"]) == ("lost", False, "hung")
        run, counted = leases.record_result(
            s,
            agent=agent,
            run_id=kept_id,
            lease_token=LEASE_TOKENS[kept_id],
            report=result(),
            now=T0,
        )
        assert (run.status, counted) == ("hung", True)
        run, counted = leases.record_result(
            s,
            agent=agent,
            run_id=kept_id,
            lease_token=LEASE_TOKENS[kept_id],
            report=result(),
            now=T0,
        )
        assert (run.status, counted) == ("hung", False)
    with transaction(sessions) as s:
        assert jobs.get_or_raise(s, job_id=job.id).status == "done"


def test_cancel_reaches_a_running_run_through_its_heartbeat(sessions):
    with transaction(sessions) as s:
        a, _ = register_agent(s, "a")
        job = make_ready_job(s, repeats=2)
    with transaction(sessions) as s:
        run, _ = claim(s, a.id)
        run_id = run.id
    with transaction(sessions) as s:
        jobs.cancel(s, job_id=job.id)
        statuses = sorted(s.scalars(select(Run.status).where(Run.job_id == job.id)))
        assert statuses == ["cancelled", "leased"]
    with transaction(sessions) as s:
        reply = leases.heartbeat(
            s,
            agent_id=a.id,
            run_id=run_id,
            lease_token=LEASE_TOKENS[run_id],
            beat=Heartbeat(iterations=5),
            now=T0,
            lease_s=60,
        )
        assert reply.cancel
        assert reply.lease_valid
        run, _ = leases.record_result(
            s,
            agent=s.get(Agent, a.id),
            run_id=run_id,
            lease_token=LEASE_TOKENS[run_id],
            report=result(RunStatus.ERROR),
            now=T0,
        )
        assert run.status == "cancelled"


def test_an_unkillable_process_marks_the_agent_for_reboot_and_stops_its_leases(sessions):
    with transaction(sessions) as s:
        a, _ = register_agent(s, "a")
        make_ready_job(s, repeats=2)
    with transaction(sessions) as s:
        run, _ = claim(s, a.id)
        leases.record_result(
            s,
            agent=s.get(Agent, a.id),
            run_id=run.id,
            lease_token=LEASE_TOKENS[run.id],
            report=result(unkillable=True),
            now=T0,
        )
    with transaction(sessions) as s:
        assert s.get(Agent, a.id).needs_reboot
        assert claim(s, a.id) is None


def test_liveness_is_written_for_many_agents_at_once_at_most_once_per_quarter_lease(sessions):
    with transaction(sessions) as s:
        a, _ = register_agent(s, "a")
        b, _ = register_agent(s, "b")
        s.get(Agent, a.id).last_seen = T0
        s.get(Agent, b.id).last_seen = T0 - timedelta(minutes=5)

    def mark_at(at):
        with transaction(sessions) as s:
            written = liveness.mark_seen(s, agent_ids={a.id, b.id}, now=at, lease_s=60)
        with transaction(sessions) as s:
            return written, s.get(Agent, a.id).last_seen, s.get(Agent, b.id).last_seen

    # within a quarter of the 60 s lease, a's row is left alone; b's is stale
    at = T0 + timedelta(seconds=14)
    assert mark_at(at) == (1, T0, at)
    later = T0 + timedelta(seconds=15)
    assert mark_at(later) == (1, later, at)  # now a's, and b's is fresh
    with transaction(sessions) as s:
        assert liveness.mark_seen(s, agent_ids=[], now=later, lease_s=60) == 0


def test_a_heartbeat_does_not_write_the_agents_row(sessions):
    """Liveness is the api's to coalesce: a heartbeat writes only its run."""
    with transaction(sessions) as s:
        a, _ = register_agent(s, "a")
        make_ready_job(s)
        s.get(Agent, a.id).last_seen = T0
    with transaction(sessions) as s:
        run, _ = claim(s, a.id)
    with transaction(sessions) as s:
        reply = leases.heartbeat(
            s,
            agent_id=a.id,
            run_id=run.id,
            lease_token=LEASE_TOKENS[run.id],
            beat=Heartbeat(iterations=7),
            now=T0 + timedelta(minutes=1),
            lease_s=60,
        )
        assert reply.lease_valid
    with transaction(sessions) as s:
        assert s.get(Agent, a.id).last_seen == T0
        assert s.get(Run, run.id).iterations == 7


def test_a_heartbeat_with_a_wrong_lease_token_changes_nothing_and_is_refused(sessions):
    with transaction(sessions) as s:
        a, _ = register_agent(s, "a")
        make_ready_job(s)
    with transaction(sessions) as s:
        run, _ = claim(s, a.id)
        before = (run.id, run.lease_expires_at, run.iterations)
    with transaction(sessions) as s, pytest.raises(Unproven):
        leases.heartbeat(
            s,
            agent_id=a.id,
            run_id=run.id,
            lease_token="not-the-secret",
            beat=Heartbeat(iterations=7),
            now=T0 + timedelta(seconds=30),
            lease_s=60,
        )
    with transaction(sessions) as s:
        run = s.get(Run, run.id)
        assert (run.id, run.lease_expires_at, run.iterations) == before


def test_a_run_past_the_head_of_the_queue_is_still_found_by_the_agent_it_suits(sessions):
    """A claim reads the queue's head first (claims.WINDOW runs, most urgent first);
    a full head that holds nothing for this agent must not hide the run behind it."""
    with transaction(sessions) as s:
        mine, _ = register_agent(s, "mine", pools=["mine"])
        other, _ = register_agent(s, "other", pools=["other"])
        make_ready_job(s, repeats=claims.WINDOW + 5, pools=["other"], priority=10)
        behind = make_ready_job(s, pools=["mine"])
    with transaction(sessions) as s:
        run, _ = claim(s, mine.id)
        assert run.job_id == behind.id
    with transaction(sessions) as s:  # the head's own runs still go first to who suits them
        run, _ = claim(s, other.id)
        assert run.priority == 10
        assert run.repeat_index == 0


def test_an_idle_claim_with_nothing_ready_takes_nothing_and_asks_for_no_build(sessions):
    with transaction(sessions) as s:
        a, _ = register_agent(s, "a")
    with transaction(sessions) as s:
        assert claim(s, a.id) is None
        assert s.scalar(select(func.count()).select_from(BuildRequest)) == 0
