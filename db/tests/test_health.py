"""Standing controls through the real business functions, on SQLite and Postgres: a hang
on a negative control is flagged and never counted; a failed health check makes its
agent unhealthy, which then leases only its checks and whose runs stop counting until
a check passes; the sweep starts checks on schedule and rechecks unhealthy agents."""

from datetime import UTC, datetime, timedelta

import pytest
from reprofarm_db import export, health, jobs, leases, pools, rollups, stats, views
from reprofarm_db.engine import transaction
from reprofarm_db.errors import Conflict
from reprofarm_db.models import Agent, HealthCheck, Run
from reprofarm_protocol.controls import (
    AgentHealth,
    CheckKind,
    CheckOutcome,
    CheckTrigger,
    Discount,
    PoolControls,
)
from reprofarm_protocol.jobs import RunState
from reprofarm_protocol.runs import RunStatus
from sqlalchemy import select

from db.tests.test_leases import LEASE_TOKENS, claim, make_ready_job, result
from tests.factories import fake_build, register_agent

NOW = datetime.now(UTC)


def _report(s, agent_id, run_id, status):
    agent = s.get(Agent, agent_id)
    run, _ = leases.record_result(
        s,
        agent=agent,
        run_id=run_id,
        lease_token=LEASE_TOKENS[run_id],
        report=result(status),
        now=NOW,
    )
    return run


def _check_now(s, agent, controls=None, kind=CheckKind.POSITIVE_CONTROL):
    check = health.start(
        s,
        agent=agent,
        kind=kind,
        trigger=CheckTrigger.MANUAL,
        controls=controls or PoolControls(),
        now=NOW,
        max_runs=100,
    )
    from reprofarm_db import builds

    builds.mark_ready_if_built(s, job=jobs.get_or_raise(s, job_id=check.job_id))
    return check


def test_a_bug_hang_on_a_negative_control_is_flagged_and_never_counted(sessions):
    with transaction(sessions) as s:
        pools.set_(s, name="linux", controls=PoolControls(negative_control=True), by="admin")
        agent, _ = register_agent(s, "penguin", pools=["linux"], os="linux", arch="amd64")
        make_ready_job(s, scenario="pipe-close-race", pools=["linux"], repeats=3)
    ran = []
    for status in (RunStatus.HUNG, RunStatus.PASSED):
        with transaction(sessions) as s:
            run, _ = claim(s, agent.id, now=NOW)
            ran.append(_report(s, agent.id, run.id, status).id)
    with transaction(sessions) as s:
        hung, passed = (s.get(Run, i) for i in ran)
        assert hung.discount == Discount.NEGATIVE_CONTROL
        assert passed.discount is None  # a clean run on a negative control is what it should be
        totals = rollups.totals(s)
        assert (totals["hung"], totals["passed"]) == (0, 1)
        (row,) = stats.group_runs(s, group_by=["scenario"])
        assert (row.counts.hangs, row.counts.runs) == (0, 1)
        job_only = views.RunFilter(job_id=hung.job_id)  # the job filter scans the runs
        (tally,) = views.tally(s, group_by=["scenario"], where=job_only)
        assert (tally.counts.hangs, tally.counts.runs) == (0, 1)
        exported = export.read_chunk(s, where=job_only, after_id=0, limit=10)
        assert [r[0] for r in exported] == [passed.id]  # run_id first
        problems = health.harness_problems(s)
        assert problems.negative_control_hangs == 1
        assert [h["run_id"] for h in problems.recent_hangs] == [hung.id]
        assert problems.recent_hangs[0]["agent"] == "penguin"
        assert rollups.cells(s) == _rebuilt(s)


def _rebuilt(s):
    rollups.rebuild(s)
    return rollups.cells(s)


def test_the_control_hangs_on_a_negative_control_as_everywhere_and_counts(sessions):
    with transaction(sessions) as s:
        pools.set_(s, name="wine", controls=PoolControls(negative_control=True), by="admin")
        agent, _ = register_agent(s, "wine-1", pools=["wine"])
        make_ready_job(s, pools=["wine"])
    with transaction(sessions) as s:
        run, _ = claim(s, agent.id, now=NOW)
        assert _report(s, agent.id, run.id, RunStatus.HUNG).discount is None
        assert rollups.totals(s)["hung"] == 1
        assert health.harness_problems(s).negative_control_hangs == 0


def test_a_control_that_does_not_hang_makes_its_agent_unhealthy_until_a_check_passes(sessions):
    with transaction(sessions) as s:
        agent, _ = register_agent(s, "lab", pools=["arm"])
        fake_build(s, target=agent.target)
        check = _check_now(s, agent)
        make_ready_job(s, pools=["arm"], repeats=2)  # waiting behind the check
    with transaction(sessions) as s:
        run, _ = claim(s, agent.id, now=NOW)
        assert run.job_id == check.job_id  # the check goes first (priority 100)
        assert run.control_chance == 1e-3
        _report(s, agent.id, run.id, RunStatus.PASSED)
    with transaction(sessions) as s:
        done = s.get(HealthCheck, check.id)
        assert done.outcome == CheckOutcome.FAILED
        assert "did not hang" in done.detail
        assert (
            health.conclude(  # concluded once: a second verdict (the sweep's) changes nothing
                s, check=done, outcome=CheckOutcome.INCONCLUSIVE, detail="late", now=NOW
            )
            is False
        )
        assert s.get(HealthCheck, check.id).outcome == CheckOutcome.FAILED
        agent = s.get(Agent, agent.id)
        assert agent.health == AgentHealth.UNHEALTHY
        assert "did not hang" in agent.health_detail
        assert claim(s, agent.id, now=NOW) is None  # two ready runs, none for it
        recheck = _check_now(s, agent, kind=CheckKind.CANARY)
        with pytest.raises(Conflict, match="running already"):
            _check_now(s, agent)
    with transaction(sessions) as s:
        run, _ = claim(s, agent.id, now=NOW)
        assert run.job_id == recheck.job_id
        assert run.control_chance == 1.0
        _report(s, agent.id, run.id, RunStatus.HUNG)
        # An agent uploads its dumps before its result: a hang reported without any is a
        # capture that failed.
        done = s.get(HealthCheck, recheck.id)
        assert done.outcome == CheckOutcome.FAILED
        assert "capture failed: no goroutine dump was captured" in done.detail
        # A failed check's run is no evidence of the control's rate: counted nowhere.
        assert run.discount == Discount.UNHEALTHY_AGENT
        assert rollups.totals(s)["hung"] + rollups.totals(s)["passed"] == 0
        assert rollups.cells(s) == _rebuilt(s)


def test_runs_an_unhealthy_agent_finishes_are_not_counted(sessions):
    with transaction(sessions) as s:
        agent, _ = register_agent(s, "lab", pools=["arm"])
        make_ready_job(s, pools=["arm"], repeats=2)
    with transaction(sessions) as s:
        running, _ = claim(s, agent.id, now=NOW)
        fake_build(s, target=agent.target)
        check = _check_now(s, agent)
        health.conclude(
            s, check=check, outcome=CheckOutcome.FAILED, detail="capture failed", now=NOW
        )
    with transaction(sessions) as s:
        run = _report(s, agent.id, running.id, RunStatus.HUNG)
        assert run.discount == Discount.UNHEALTHY_AGENT
        assert rollups.totals(s)["hung"] == 0
        problems = health.harness_problems(s)
        assert problems.discounted_runs == 1
        assert problems.negative_control_hangs == 0
        assert [a["name"] for a in problems.unhealthy_agents] == ["lab"]
        passing = _check_now(s, s.get(Agent, agent.id))
        health.conclude(s, check=passing, outcome=CheckOutcome.PASSED, detail="ok", now=NOW)
        assert s.get(Agent, agent.id).health == AgentHealth.HEALTHY
    with transaction(sessions) as s:
        second, _ = claim(s, agent.id, now=NOW)
        assert _report(s, agent.id, second.id, RunStatus.HUNG).discount is None
        assert rollups.totals(s)["hung"] == 1


def test_the_sweep_starts_positive_controls_on_schedule_and_rechecks_the_unhealthy(sessions):
    daily = PoolControls(positive_control_every_s=86400, positive_control_chance=1e-3)
    with transaction(sessions) as s:
        pools.set_(s, name="arm", controls=daily, by="admin")
        a, _ = register_agent(s, "a", pools=["arm"])
        register_agent(s, "b", pools=["other"])  # no controls: never checked
        fake_build(s, target=a.target)

    def due(at):
        with transaction(sessions) as s:
            return health.schedule_due(s, now=at, lease_s=1e6, recheck_s=900, max_runs=100)

    (first,) = due(NOW)
    assert due(NOW) == []  # one running already
    with transaction(sessions) as s:
        check = s.get(HealthCheck, first)
        assert (check.kind, check.trigger) == ("positive-control", "schedule")
        health.conclude(s, check=check, outcome=CheckOutcome.PASSED, detail="ok", now=NOW)
    assert due(NOW + timedelta(hours=23)) == []
    (again,) = due(NOW + timedelta(hours=24))
    with transaction(sessions) as s:
        health.conclude(
            s, check=s.get(HealthCheck, again), outcome=CheckOutcome.FAILED, detail="x", now=NOW
        )
    assert due(NOW + timedelta(minutes=10)) == []
    (recheck,) = due(NOW + timedelta(minutes=15))
    with transaction(sessions) as s:
        assert s.get(HealthCheck, recheck).trigger == "recheck"


def test_a_check_nobody_ran_ends_inconclusive_and_leaves_the_health_as_it_was(sessions):
    with transaction(sessions) as s:
        agent, _ = register_agent(s, "lab")
        fake_build(s, target=agent.target)
        check = _check_now(s, agent)
        jobs.cancel(s, job_id=check.job_id)
    with transaction(sessions) as s:
        assert health.close_stale(s, now=NOW) == [check.id]
        assert s.get(HealthCheck, check.id).outcome == CheckOutcome.INCONCLUSIVE
        assert s.get(Agent, agent.id).health == AgentHealth.UNKNOWN


def test_the_canary_is_queued_at_each_start_when_a_pool_asks_for_it(sessions):
    with transaction(sessions) as s:
        pools.set_(s, name="arm", controls=PoolControls(canary_at_start=True), by="admin")
        agent, _ = register_agent(s, "lab", pools=["arm"])
        made = health.on_registered(s, agent=agent, now=NOW, max_runs=100)
        assert made is not None
        assert made.kind == "canary"
        assert made.trigger == "start"
        assert health.on_registered(s, agent=agent, now=NOW, max_runs=100) is None  # one open
        (run,) = s.scalars(select(Run).where(Run.job_id == made.job_id))
        assert (run.scenario, run.control_chance, run.required_agent_id) == (
            "control-deadlock",
            1.0,
            agent.id,
        )
        assert run.status == RunState.PENDING  # until its build exists
        other, _ = register_agent(s, "plain", pools=["x"])
        assert health.on_registered(s, agent=other, now=NOW, max_runs=100) is None


def test_a_check_whose_run_broke_is_inconclusive(sessions):
    with transaction(sessions) as s:
        agent, _ = register_agent(s, "lab")
        fake_build(s, target=agent.target)
        check = _check_now(s, agent)
    with transaction(sessions) as s:
        run, _ = claim(s, agent.id, now=NOW)
        _report(s, agent.id, run.id, RunStatus.ERROR)  # e.g. the agent restarted in it
        done = s.get(HealthCheck, check.id)
        assert done.outcome == CheckOutcome.INCONCLUSIVE
        assert s.get(Agent, agent.id).health == AgentHealth.UNKNOWN


def test_an_unhealthy_agent_no_pool_checks_any_more_is_still_checked_again(sessions):
    with transaction(sessions) as s:
        agent, _ = register_agent(s, "lab", pools=["gone"])
        fake_build(s, target=agent.target)
        check = _check_now(s, agent)
        health.conclude(s, check=check, outcome=CheckOutcome.FAILED, detail="x", now=NOW)
    with transaction(sessions) as s:
        (again,) = health.schedule_due(
            s, now=NOW + timedelta(minutes=15), lease_s=1e6, recheck_s=900, max_runs=100
        )
        assert s.get(HealthCheck, again).trigger == "recheck"


def test_triage_and_buckets_leave_harness_problems_out(sessions):
    from reprofarm_db import analyses, triage

    with transaction(sessions) as s:
        pools.set_(s, name="linux", controls=PoolControls(negative_control=True), by="admin")
        agent, _ = register_agent(s, "penguin", pools=["linux"], os="linux", arch="amd64")
        make_ready_job(s, scenario="pipe-close-race", pools=["linux"], repeats=3)
    for status in (RunStatus.HUNG, RunStatus.HUNG, RunStatus.PASSED):
        with transaction(sessions) as s:
            run, _ = claim(s, agent.id, now=NOW)
            _report(s, agent.id, run.id, status)
            if status == RunStatus.HUNG:
                analyses.label_run(s, run_id=run.id, label=None, signature=None)
    with transaction(sessions) as s:
        assert analyses.buckets(s) == []
        # Two discounted hangs of one signature beside one counted run: no bucket (it once
        # answered 2 hangs in 1 run, and the interval raised).
        assert triage.farm_bucket(s, signature=analyses.UNREADABLE) is None


def test_two_checks_started_at_once_make_one(postgres_url):
    """The sweep, a registration and an admin may start a check of one agent at the same
    moment: the agent's row lock makes the second wait, see the first, and refuse."""
    import threading

    from reprofarm_db.engine import make_engine, make_sessionmaker
    from reprofarm_db.migrate import upgrade

    upgrade(postgres_url)
    sessions = make_sessionmaker(make_engine(postgres_url))
    with transaction(sessions) as s:
        agent, _ = register_agent(s, "lab")
        fake_build(s, target=agent.target)
    started = threading.Barrier(2)
    outcomes: list[str] = []

    def start() -> None:
        try:
            with transaction(sessions) as s:
                started.wait()
                _check_now(s, s.get(Agent, agent.id))
                outcomes.append("started")
        except Conflict:
            outcomes.append("refused")

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused", "started"]
    with transaction(sessions) as s:
        assert len(s.scalars(select(HealthCheck)).all()) == 1
