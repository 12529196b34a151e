"""Studies through the real business functions: cells from the agents online, runs made
as results arrive (leased and reported through the lease path), decisions, the end of
a study that decided, and bad input refused with nothing stored."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from reprofarm_db import analyses, claims, jobs, leases, studies
from reprofarm_db.engine import transaction
from reprofarm_db.errors import Invalid
from reprofarm_db.models import Agent, Job, Outbox, Run
from reprofarm_protocol.analysis import Label
from reprofarm_protocol.jobs import Heartbeat, JobState, RunState
from reprofarm_protocol.queues import TASK_STUDY_STEP
from reprofarm_protocol.runs import RunStatus
from reprofarm_protocol.studies import SearchCreate, VerifyCreate
from sqlalchemy import func, select

from db.tests.test_leases import result
from tests.factories import fake_build, register_agent

LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)
BUG = "control-deadlock"


def _lab(s, *names_and_arches):
    """Agents online now, with a build of the default Go release for their target."""
    made = []
    for name, arch in names_and_arches:
        agent, _ = register_agent(s, name, arch=arch)
        made.append(agent)
    for target in {a.target for a in made}:
        fake_build(s, target=target)
        fake_build(s, target=target, go_version="1.25.5")
    return made


def _create(s, spec):
    job, created = studies.create(
        s,
        spec=spec,
        idempotency_key=None,
        submitted_by=None,
        online_since=LONG_AGO,
        max_runs=10_000,
        webhook_secret_set=False,
    )
    assert created
    from reprofarm_db import builds

    builds.mark_ready_if_built(s, job=job)
    return job


def _solo_study(sessions, spec):
    """One agent online (with builds) and a study of it: (agent, the study's job id)."""
    with transaction(sessions) as s:
        (agent,) = _lab(s, ("solo", "arm64"))
        return agent, _create(s, spec).id


def _play(sessions, agent_id, outcome, *, label=BUG):
    """The agent leases its next run and reports ``outcome`` (a RunStatus, or a callable
    of the leased run giving one); a hang is then labelled as the analyzer would.
    Returns the run's id, or None when nothing was ready for it."""
    now = datetime.now(UTC)
    with transaction(sessions) as s:
        leased = claims.lease_for(s, agent_id=agent_id, now=now, lease_s=60, avoid_grace_s=0)
        if leased is None:
            return None
    status = outcome(leased) if callable(outcome) else outcome
    with transaction(sessions) as s:
        agent = s.get(Agent, agent_id)
        leases.record_result(
            s,
            agent=agent,
            run_id=leased.run_id,
            lease_token=leased.lease_token,
            report=result(status),
            now=now,
        )
        if status is RunStatus.HUNG and label is not None:
            analyses.label_run(
                s, run_id=leased.run_id, label=Label(label), signature=f"stack of {label}"
            )
    return leased


def _step(sessions, job_id):
    with transaction(sessions) as s:
        return studies.step(s, job_id=job_id, max_runs=10_000, replan_max=0)


def _read(sessions, job_id):
    with transaction(sessions) as s:
        return studies.read(s, job_id=job_id)


def _by_chance(leased):
    """The control's behaviour in a 1-second run: chance 1e-3 always hangs, 0 never."""
    return RunStatus.HUNG if leased.control_chance else RunStatus.PASSED


def test_a_verify_study_interleaves_its_arms_on_each_hardware_cell(sessions):
    with transaction(sessions) as s:
        arm, x64 = _lab(s, ("arm", "arm64"), ("x64", "amd64"))
        job = _create(
            s,
            VerifyCreate(
                scenario="control-deadlock",
                duration_s=1,
                cpus=[1, 2],
                baseline={"control_chance": 1e-3, "go_version": "go1.25.5"},
                candidate={"control_chance": 0},
                margin=1,
            ),
        )
        job_id = job.id
        cells = job.cells
        runs = s.scalars(select(Run).where(Run.job_id == job_id).order_by(Run.id)).all()
        # 2 hardware configurations x 2 CPU counts, each with 2 runs in flight per arm
        assert len(cells) == 4
        assert {c["hardware"].split(" (")[0] for c in cells} == {"cpu of arm", "cpu of x64"}
        assert len(runs) == 16
        assert all(r.status == RunState.READY for r in runs)
        baseline = [r for r in runs if r.arm == "baseline"]
        candidate = [r for r in runs if r.arm == "candidate"]
        assert {(r.go_version, r.control_chance) for r in baseline} == {("1.25.5", 1e-3)}
        assert {(r.go_version, r.control_chance) for r in candidate} == {("1.27.3", 0.0)}
        # pinned to the cell's hardware by its fingerprint
        arm_cells = {c["index"] for c in cells if c["hardware_config_id"] == arm.hardware_config_id}
        for r in runs:
            want = arm if r.cell in arm_cells else x64
            assert r.selector["fingerprint"] == want.facts["fingerprint"]
    # the lease carries the arm's own fields
    leased = _play(sessions, arm.id, _by_chance)
    assert leased.control_chance in (1e-3, 0.0)
    with transaction(sessions) as s:
        run = s.get(Run, leased.run_id)
        assert run.cell in arm_cells
        assert leased.build.go_version == run.go_version


def test_verify_ends_fixed_after_enough_clean_candidate_runs_and_cancels_the_rest(sessions):
    agent, job_id = _solo_study(
        sessions,
        VerifyCreate(
            scenario="control-deadlock",
            duration_s=1,
            baseline={"control_chance": 1e-3},
            candidate={"control_chance": 0},
            margin=1,
            in_flight_per_cell=3,
        ),
    )
    for _ in range(60):
        if _play(sessions, agent.id, _by_chance) is None:
            break
        if _step(sessions, job_id).decided:
            break
    study = _read(sessions, job_id)
    assert study.verdict == "fixed", study.reason
    assert study.decided
    assert study.status == JobState.DONE
    # every baseline run hung, no candidate run did: margin 1 needs 0.5^K <= 0.05, K >= 5
    assert study.baseline.hangs == study.baseline.runs >= 5
    assert study.candidate.hangs == 0
    assert study.label == BUG
    assert study.p_value <= 0.05
    with transaction(sessions) as s:
        open_left = s.scalar(
            select(func.count())
            .select_from(Run)
            .where(Run.job_id == job_id, Run.status.in_((RunState.READY, RunState.PENDING)))
        )
        assert open_left == 0  # runs not started were cancelled
        cancelled = s.scalars(
            select(Run.reason).where(Run.job_id == job_id, Run.status == RunState.CANCELLED)
        ).all()
        assert cancelled
        assert set(cancelled) == {"the study decided"}
    # a second step changes nothing
    assert _step(sessions, job_id).decided is False
    assert _read(sessions, job_id).verdict == "fixed"


def test_verify_ends_not_fixed_on_a_candidate_hang_with_the_bugs_label_only(sessions):
    agent, job_id = _solo_study(
        sessions,
        VerifyCreate(
            scenario="control-deadlock",
            duration_s=1,
            baseline={"control_chance": 1e-3},
            candidate={"control_chance": 1e-4},
        ),
    )

    def other_label_for_the_candidate(leased):
        return RunStatus.HUNG

    # The candidate's hangs carry another label: shown, not counted as the bug.
    for _ in range(4):
        leased = _play(sessions, agent.id, other_label_for_the_candidate, label="other-hang")
        with transaction(sessions) as s:
            run = s.get(Run, leased.run_id)
            if run.arm == "baseline":
                analyses.label_run(s, run_id=run.id, label=Label(BUG), signature="stack of it")
        _step(sessions, job_id)
    study = _read(sessions, job_id)
    assert study.verdict == "undecided"
    assert study.candidate.other_hangs == 2
    assert study.candidate.hangs == 0
    # Now one with the bug's label.
    while True:
        leased = _play(sessions, agent.id, RunStatus.HUNG)
        with transaction(sessions) as s:
            if s.get(Run, leased.run_id).arm == "candidate":
                break
    assert _step(sessions, job_id).decided
    study = _read(sessions, job_id)
    assert study.verdict == "not-fixed"
    assert "candidate hung with the bug's label" in study.reason


def test_a_candidate_hang_not_analysed_yet_holds_the_verdict(sessions):
    agent, job_id = _solo_study(
        sessions,
        VerifyCreate(
            scenario="control-deadlock",
            baseline={"control_chance": 1e-3},
            candidate={"control_chance": 0},
            margin=1,
            in_flight_per_cell=1,
        ),
    )
    candidate_hung = False
    for _ in range(40):

        def outcome(leased):
            nonlocal candidate_hung
            if leased.control_chance == 0 and not candidate_hung:
                candidate_hung = True
                return RunStatus.HUNG
            return _by_chance(leased)

        leased = _play(sessions, agent.id, outcome, label=None)
        with transaction(sessions) as s:
            run = s.get(Run, leased.run_id)
            if run.arm == "baseline":
                analyses.label_run(s, run_id=run.id, label=Label(BUG), signature="stack of it")
        _step(sessions, job_id)
        study = _read(sessions, job_id)
        if study.candidate.runs >= 12:
            break
    assert study.candidate.pending == 1
    assert study.verdict == "undecided"
    assert not study.decided
    assert "wait for their dumps' analysis" in study.reason


def test_a_search_decides_each_cell_and_spends_less_on_the_obvious_ones(sessions):
    agent, job_id = _solo_study(
        sessions,
        SearchCreate(
            scenario="control-deadlock",
            duration_s=1,
            control_chance=[0, 1e-3],
            lo=0.05,
            hi=0.5,
            budget={"runs": 200},
        ),
    )
    for _ in range(200):
        if _play(sessions, agent.id, _by_chance) is None:
            if _step(sessions, job_id).decided:
                break
            continue
        if _step(sessions, job_id).decided:
            break
    study = _read(sessions, job_id)
    assert study.decided
    assert study.status == JobState.DONE
    decisions = {c.control_chance: (c.decision, c.runs, c.hangs) for c in study.cells}
    assert decisions[1e-3][0] == "reproduces"
    assert decisions[0.0][0] == "does-not"
    assert decisions[1e-3][1] < decisions[0.0][1]  # hangs decide faster than clean runs
    assert study.runs_uniform is not None
    assert study.runs_used < study.runs_uniform
    assert study.trace
    assert study.trace[-1].value == 2


def test_a_study_never_creates_runs_past_its_budget_and_says_what_would_decide(sessions):
    agent, job_id = _solo_study(
        sessions,
        VerifyCreate(
            scenario="control-deadlock",
            baseline={"control_chance": 1e-3},
            candidate={"control_chance": 0},
            margin=50,
            budget={"runs": 10},
        ),
    )
    for _ in range(30):
        if _play(sessions, agent.id, _by_chance) is None and _step(sessions, job_id).decided:
            break
        _step(sessions, job_id)
    study = _read(sessions, job_id)
    with transaction(sessions) as s:
        made = s.scalar(select(func.count()).select_from(Run).where(Run.job_id == job_id))
    assert made == 10
    assert study.decided
    assert study.verdict == "undecided"
    assert "budget ran out" in study.reason
    assert study.more_clean_runs
    assert study.more_clean_runs > 0


def test_a_result_asks_for_a_step_and_a_decided_study_stops_its_running_runs(sessions):
    with transaction(sessions) as s:
        (agent,) = _lab(s, ("solo", "arm64"))
        job_id = _create(
            s,
            VerifyCreate(
                scenario="control-deadlock",
                baseline={"control_chance": 1e-3},
                candidate={"control_chance": 1e-3, "duration_s": 2},
            ),
        ).id
        steps_before = s.scalar(
            select(func.count()).select_from(Outbox).where(Outbox.task == TASK_STUDY_STEP)
        )
    _play(sessions, agent.id, RunStatus.HUNG)
    with transaction(sessions) as s:
        steps = s.scalar(
            select(func.count()).select_from(Outbox).where(Outbox.task == TASK_STUDY_STEP)
        )
        assert steps == steps_before + 1
        assert s.get(Job, job_id).status == JobState.RUNNING  # a study is not done by results
    now = datetime.now(UTC)
    with transaction(sessions) as s:
        running = claims.lease_for(s, agent_id=agent.id, now=now, lease_s=60, avoid_grace_s=0)
    # End the study by hand through its cancel... no: by its own decision.
    while not _step(sessions, job_id).decided:
        assert _play(sessions, agent.id, RunStatus.HUNG) is not None
    with transaction(sessions) as s:
        reply = leases.heartbeat(
            s,
            agent_id=agent.id,
            run_id=running.run_id,
            lease_token=running.lease_token,
            beat=Heartbeat(iterations=5, elapsed_s=0.5),
            now=now + timedelta(seconds=1),
            lease_s=60,
        )
    assert reply.cancel
    assert reply.lease_valid
    with transaction(sessions) as s:
        leases.record_result(
            s,
            agent=s.get(Agent, agent.id),
            run_id=running.run_id,
            lease_token=running.lease_token,
            report=result(RunStatus.PASSED),
            now=now,
        )
        assert s.get(Run, running.run_id).status == RunState.CANCELLED  # stopped, not counted


def test_bad_studies_are_refused_with_the_field_and_nothing_is_stored(sessions):
    with transaction(sessions) as s, pytest.raises(Invalid, match="pools: no online agent"):
        _create(s, SearchCreate(scenario="control-deadlock", control_chance=[0], pools=["nope"]))
    with transaction(sessions) as s:
        _lab(s, ("solo", "arm64"))
    with transaction(sessions) as s:
        with pytest.raises(Invalid, match="webhook_url: the controller has no"):
            _create(
                s,
                SearchCreate(scenario="control-deadlock", webhook_url="http://127.0.0.1:9/hook"),
            )
        with pytest.raises(Invalid, match="cpus: every cell asks for more CPUs"):
            _create(s, SearchCreate(scenario="control-deadlock", cpus=[64]))
        # A submitter naming the controller's own network: refused (an admin may list it).
        inside = SearchCreate(scenario="control-deadlock", webhook_url="http://169.254.169.254/")
        with pytest.raises(Invalid, match=r"webhook_url: 169\.254\.169\.254 is not a public"):
            studies.create(
                s,
                spec=inside,
                idempotency_key=None,
                submitted_by=None,
                online_since=LONG_AGO,
                max_runs=10_000,
                webhook_secret_set=True,
            )
    with transaction(sessions) as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0
    for bad, field in [
        ({"lo": 0.2, "hi": 0.1}, "lo"),
        ({"repeats": 3}, "repeats"),
        ({"fan_out": "each-agent"}, "fan_out"),
        ({"budget": {"runs": None}}, "budget"),
    ]:
        with pytest.raises(ValidationError, match=field):
            SearchCreate(scenario="control-deadlock", **bad)
    with pytest.raises(ValidationError, match=r"candidate\.workers"):
        VerifyCreate(scenario="control-deadlock", candidate={"workers": 0})
    with pytest.raises(ValidationError, match="go_versions/control_chance"):
        VerifyCreate(scenario="control-deadlock", go_versions=["1.25.5", "1.27.3"])


def test_a_static_job_takes_control_chance_as_an_axis(sessions):
    from reprofarm_protocol.jobs import JobCreate

    with transaction(sessions) as s:
        _lab(s, ("solo", "arm64"))
        job, _ = jobs.create(
            s,
            spec=JobCreate(scenario="control-deadlock", control_chance=[0, 1e-3], cpus=[1, 2]),
            idempotency_key=None,
            max_runs=100,
        )
        chances = s.scalars(select(Run.control_chance).where(Run.job_id == job.id)).all()
        assert sorted(chances) == [0.0, 0.0, 1e-3, 1e-3]
        assert job.spec["control_chance"] == [0.0, 1e-3]
    # a single number is still accepted (a list of one)
    assert JobCreate(scenario="control-deadlock", control_chance=0.5).control_chance == [0.5]


def test_a_lost_study_run_is_replaced_by_the_study_not_retried_by_the_sweep(sessions):
    agent, job_id = _solo_study(
        sessions,
        SearchCreate(scenario="control-deadlock", control_chance=[0], budget={"runs": 3}),
    )
    now = datetime.now(UTC)
    with transaction(sessions) as s:
        claims.lease_for(s, agent_id=agent.id, now=now, lease_s=60, avoid_grace_s=0)
    with transaction(sessions) as s:
        lost = leases.sweep(s, now=now + timedelta(seconds=120), max_attempts=3)
        assert len(lost) == 1
        assert s.scalar(select(func.count()).select_from(Run).where(Run.job_id == job_id)) == 2
    _step(sessions, job_id)  # the lost run used one of the 3 runs: one more is made
    with transaction(sessions) as s:
        statuses = sorted(s.scalars(select(Run.status).where(Run.job_id == job_id)))
    assert statuses == ["lost", "ready", "ready"]


def test_a_study_without_a_run_budget_stops_at_the_jobs_limit(sessions):
    agent, job_id = _solo_study(
        sessions,
        SearchCreate(
            scenario="control-deadlock",
            budget={"runs": None, "run_hours": 100},
            in_flight_per_cell=4,
        ),
    )
    for _ in range(10):
        _play(sessions, agent.id, RunStatus.PASSED)
        with transaction(sessions) as s:
            studies.step(s, job_id=job_id, max_runs=6, replan_max=5)
    with transaction(sessions) as s:
        assert s.scalar(select(func.count()).select_from(Run).where(Run.job_id == job_id)) == 6


def test_a_study_whose_build_never_comes_ends_expired(sessions):
    with transaction(sessions) as s:
        register_agent(s, "solo", arch="arm64")  # no build for it: its runs stay pending
        job, _ = studies.create(
            s,
            spec=SearchCreate(scenario="control-deadlock"),
            idempotency_key=None,
            submitted_by=None,
            online_since=LONG_AGO,
            max_runs=1000,
            webhook_secret_set=False,
        )
        job_id = job.id
    later = datetime.now(UTC) + timedelta(hours=1)
    with transaction(sessions) as s:
        for _ in range(3):
            jobs.replan_stranded(s, now=later, after_s=1, max_replans=0)
    _step(sessions, job_id)
    with transaction(sessions) as s:
        job = s.get(Job, job_id)
        assert job.status == JobState.EXPIRED
        assert "build never came" in studies.read(s, job_id=job_id).reason
        made = s.scalar(select(func.count()).select_from(Run).where(Run.job_id == job_id))
    assert made == 2  # the first runs only: no new pending runs after it gave up
