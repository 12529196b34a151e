"""Agent health: checks that the harness on each machine detects a hang and captures it.

A check is a job of one ``control-deadlock`` run pinned to the agent, at the highest
priority. Its outcome comes from the run and its dumps (``conclude_if_decided``):

- it must hang: a control run that passes means this machine's hang detection (or the
  control itself) is broken, and its clean runs say nothing;
- its goroutine dump must parse as the control's deadlock, and each process dump it was
  asked for must parse: an agent whose captures fail leaves hangs nobody can triage.

A failed check makes the agent ``unhealthy``: it leases only its next check (the sweep
starts one every ``health_recheck_s``; an admin may start one at once), and every run it
finishes while unhealthy is stored with ``discount`` and is not counted. A passed check
makes it ``healthy`` again. Lost, cancelled and expired checks are inconclusive: they say
nothing of the agent, whose health stays as it was.

Negative controls: a hang of a bug scenario on an agent of a negative-control pool is the
harness's fault (those machines cannot have the bug); it is stored with a discount too,
and flagged as a harness problem by ``harness_problems``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from reprofarm_protocol.analysis import Label
from reprofarm_protocol.controls import (
    CANARY_CHANCE,
    CONTROL_SCENARIO,
    AgentHealth,
    CheckKind,
    CheckOutcome,
    CheckTrigger,
    Discount,
    PoolControls,
)
from reprofarm_protocol.jobs import COUNTED_RUN_STATES, FINISHED_JOB_STATES, JobCreate, RunState
from reprofarm_protocol.runs import ArtifactKind
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from reprofarm_db import agents as agents_
from reprofarm_db import jobs, pools
from reprofarm_db.analyses import ANALYSED_KINDS
from reprofarm_db.errors import Conflict
from reprofarm_db.models import (
    Agent,
    Artifact,
    ArtifactAnalysis,
    HealthCheck,
    Job,
    Run,
)

CHECK_PRIORITY = 100
"""The highest a job may ask for: an agent's check goes before its queue."""
CHECK_STALL_TIMEOUT_S = 10.0
"""The control hangs within milliseconds of its run: ten seconds of stall is a hang."""
CHECK_WAIT_S = 12 * 3600.0
"""A check nobody leased within 12 hours (the agent went away) expires: inconclusive. It
waits behind the agent's current run, which may last hours; while it waits, no other check
of the agent starts."""
CHECK_PROCESS_DUMPS = 1
ANALYSIS_PATIENCE = timedelta(minutes=15)
"""A hung check whose dumps are still not analysed this long after its run ended (no
worker analysed them) is inconclusive, so the agent can be checked again."""
_PROCESS_KINDS = (ArtifactKind.MINIDUMP.value, ArtifactKind.CORE.value)


def open_check(session: Session, *, agent_id: int) -> HealthCheck | None:
    return session.scalar(
        select(HealthCheck).where(
            HealthCheck.agent_id == agent_id, HealthCheck.finished_at.is_(None)
        )
    )


def start(
    session: Session,
    *,
    agent: Agent,
    kind: CheckKind,
    trigger: CheckTrigger,
    controls: PoolControls,
    now: datetime,
    max_runs: int,
) -> HealthCheck:
    """Start a check of this agent (its job and run, in the caller's transaction).
    Raises Conflict when one is already running or the agent waits for a reboot. The
    agent's row is locked first: two starts at once (the sweep, a registration, an admin)
    take turns, and the second sees the first's check."""
    session.execute(select(Agent.id).where(Agent.id == agent.id).with_for_update())
    running = open_check(session, agent_id=agent.id)
    if running is not None:
        raise Conflict(f"agent {agent.name!r} has check {running.id} running already")
    if agent.needs_reboot:
        raise Conflict(f"agent {agent.name!r} waits for a reboot; it leases nothing until then")
    canary = kind is CheckKind.CANARY
    spec = JobCreate(
        scenario=CONTROL_SCENARIO,
        agents=[agent.name],
        go_versions=[controls.go_version],
        duration_s=2.0 if canary else controls.positive_control_duration_s,
        stall_timeout_s=CHECK_STALL_TIMEOUT_S,
        control_chance=[CANARY_CHANCE if canary else controls.positive_control_chance],
        process_dumps=CHECK_PROCESS_DUMPS,
        priority=CHECK_PRIORITY,
        wait_for_agents_s=CHECK_WAIT_S,
    )
    job, _created = jobs.create(session, spec=spec, idempotency_key=None, max_runs=max_runs)
    check = HealthCheck(
        agent_id=agent.id,
        job_id=job.id,
        kind=kind.value,
        trigger=trigger.value,
        created_at=now,
        detail="",
    )
    session.add(check)
    session.flush()
    return check


class Registering(Protocol):
    """What the canary check reads of an agent just registered (a ``Registered``, or an
    ``Agent``)."""

    @property
    def id(self) -> int: ...
    @property
    def pools(self) -> list[str]: ...
    @property
    def needs_reboot(self) -> bool: ...


def on_registered(
    session: Session, *, agent: Registering, now: datetime, max_runs: int
) -> HealthCheck | None:
    """The capture canary at agent start, when one of its pools asks for it. Only the
    agent's own pools' settings are read, and the agent itself only when a canary is
    due: a registration storm of agents whose pools ask for none reads one small row set."""
    controls = pools.for_agent(agent, pools.of_names(session, names=agent.pools))
    if controls.canary is None or agent.needs_reboot:
        return None
    if open_check(session, agent_id=agent.id) is not None:
        return None
    row = session.get(Agent, agent.id, populate_existing=True)
    assert row is not None  # registered in this transaction
    return start(
        session,
        agent=row,
        kind=CheckKind.CANARY,
        trigger=CheckTrigger.START,
        controls=controls.canary,
        now=now,
        max_runs=max_runs,
    )


def schedule_due(
    session: Session, *, now: datetime, lease_s: float, recheck_s: float, max_runs: int
) -> list[int]:
    """Start the checks that are due (the sweep calls this): the positive control of each
    online agent whose pools schedule one, and a recheck of each unhealthy agent every
    ``recheck_s``. Returns the checks started."""
    settings = pools.list_(session)
    checking = any(s.positive_control_every_s or s.canary_at_start for s in settings)
    unhealthy = session.scalar(
        select(func.count()).where(Agent.health == AgentHealth.UNHEALTHY.value)
    )
    if not checking and not unhealthy:
        return []
    started: list[int] = []
    online = agents_.online_since(now=now, lease_s=lease_s)
    running = set(
        session.scalars(select(HealthCheck.agent_id).where(HealthCheck.finished_at.is_(None)))
    )
    last_positive = _last_by_agent(session, kind=CheckKind.POSITIVE_CONTROL, decided=True)
    last_finished = _last_by_agent(session, kind=None, decided=False)
    for agent in session.scalars(select(Agent).where(Agent.last_seen > online).order_by(Agent.id)):
        if agent.id in running or agent.needs_reboot:
            continue
        controls = pools.for_agent(agent, settings)
        check = _due(
            agent,
            controls,
            now=now,
            recheck_s=recheck_s,
            last_positive=last_positive.get(agent.id),
            last_finished=last_finished.get(agent.id),
        )
        if check is not None:
            kind, trigger, using = check
            made = start(
                session,
                agent=agent,
                kind=kind,
                trigger=trigger,
                controls=using,
                now=now,
                max_runs=max_runs,
            )
            started.append(made.id)
    return started


def _due(
    agent: Agent,
    controls: pools.AgentControls,
    *,
    now: datetime,
    recheck_s: float,
    last_positive: datetime | None,
    last_finished: datetime | None,
) -> tuple[CheckKind, CheckTrigger, PoolControls] | None:
    # An unhealthy agent is always checked again (with the defaults when no pool of its
    # says how): it leases nothing else, and nobody else would bring it back.
    using = controls.positive or controls.canary or PoolControls()
    kind = (
        CheckKind.CANARY
        if controls.positive is None and controls.canary
        else (CheckKind.POSITIVE_CONTROL)
    )
    if agent.health == AgentHealth.UNHEALTHY:
        if last_finished is None or now - last_finished >= timedelta(seconds=recheck_s):
            return kind, CheckTrigger.RECHECK, using
        return None
    positive = controls.positive
    if positive is None or positive.positive_control_every_s is None:
        return None
    every = timedelta(seconds=positive.positive_control_every_s)
    if last_positive is None or now - last_positive >= every:
        return CheckKind.POSITIVE_CONTROL, CheckTrigger.SCHEDULE, positive
    return None


def _last_by_agent(
    session: Session, *, kind: CheckKind | None, decided: bool
) -> dict[int, datetime]:
    """When each agent's last check (of ``kind``) ended; ``decided``: passed or failed only,
    so a check that expired behind a long run is made again at the next sweep, not a whole
    schedule period later."""
    query = select(HealthCheck.agent_id, func.max(HealthCheck.finished_at)).group_by(
        HealthCheck.agent_id
    )
    if kind is not None:
        query = query.where(HealthCheck.kind == kind.value)
    if decided:
        query = query.where(
            HealthCheck.outcome.in_((CheckOutcome.PASSED.value, CheckOutcome.FAILED.value))
        )
    return {agent_id: when for agent_id, when in session.execute(query) if when is not None}


class MaybeCheckRun(Protocol):
    """What tells whether a run may be a check's (a ``Run``, or a result's row)."""

    @property
    def scenario(self) -> str: ...
    @property
    def required_agent_id(self) -> int | None: ...
    @property
    def job_id(self) -> int: ...


def may_be_check(run: MaybeCheckRun) -> bool:
    """Only a control run pinned to an agent can be a check's: every other run is told
    apart without a query."""
    return run.scenario == CONTROL_SCENARIO and run.required_agent_id is not None


def _check_of(session: Session, run: MaybeCheckRun) -> HealthCheck | None:
    """The open check this run is for."""
    if not may_be_check(run):
        return None
    return session.scalar(
        select(HealthCheck).where(
            HealthCheck.job_id == run.job_id, HealthCheck.finished_at.is_(None)
        )
    )


def discount_for(
    session: Session, *, agent: Agent, run: MaybeCheckRun, status: RunState
) -> Discount | None:
    """Why a result just received will not count, or None. A check's own run counts: it is
    a control run like any other, and its outcome is judged by the check."""
    if _check_of(session, run) is not None:
        return None
    bug_hang = status == RunState.HUNG and run.scenario != CONTROL_SCENARIO
    if bug_hang and pools.is_negative(agent, pools.negative_pools(session)):
        return Discount.NEGATIVE_CONTROL
    if agent.health == AgentHealth.UNHEALTHY:
        return Discount.UNHEALTHY_AGENT
    return None


def conclude_if_decided(session: Session, *, run: Run, now: datetime) -> CheckOutcome | None:
    """After a check's run ended, or one of its dumps was analysed: the outcome, once the
    run and its reports decide it (None: not a check, or not decided yet)."""
    check = _check_of(session, run)
    if check is None:
        return None
    verdict = _verdict(session, run)
    if verdict is None:
        return None
    outcome, detail = verdict
    conclude(session, check=check, outcome=outcome, detail=detail, now=now)
    return outcome


def _verdict(session: Session, run: Run) -> tuple[CheckOutcome, str] | None:
    chance = run.control_chance
    if run.status in (RunState.PENDING, RunState.READY, RunState.LEASED, RunState.LOST):
        return None  # not ended, or lost and retried (its job ends it if not)
    if run.status in (RunState.CANCELLED, RunState.EXPIRED):
        return CheckOutcome.INCONCLUSIVE, f"its run was {run.status}"
    if run.status == RunState.PASSED:
        return (
            CheckOutcome.FAILED,
            f"the control did not hang in {run.duration_s:.1f} s at chance {chance} "
            f"({run.iterations} iterations): hang detection on this agent is not working",
        )
    if run.status == RunState.ERROR:
        # The run itself broke (the agent restarted in it, a placement refused): it says
        # nothing of detection or capture.
        return CheckOutcome.INCONCLUSIVE, f"its run ended error: {run.reason[:300]}"
    if run.status != RunState.HUNG:
        return CheckOutcome.FAILED, f"the control run ended {run.status}: {run.reason[:300]}"
    return _capture_verdict(session, run)


def _capture_verdict(session: Session, run: Run) -> tuple[CheckOutcome, str] | None:
    """A hung check passes when its goroutine dump reads as the control's deadlock and
    every process dump asked for was captured and reads."""
    dumps = session.execute(
        select(Artifact.id, Artifact.kind, Artifact.name).where(
            Artifact.run_id == run.id,
            Artifact.complete.is_(True),
            Artifact.kind.in_(ANALYSED_KINDS),
        )
    ).all()
    reports = {
        r.artifact_id: r
        for r in session.scalars(select(ArtifactAnalysis).where(ArtifactAnalysis.run_id == run.id))
    }
    if any(d.id not in reports for d in dumps):
        return None  # the worker has not read them all yet
    problems: list[str] = []
    goroutines = [reports[d.id] for d in dumps if d.kind == ArtifactKind.GOROUTINES.value]
    process = [(d.name, reports[d.id]) for d in dumps if d.kind in _PROCESS_KINDS]
    if not goroutines:
        problems.append("no goroutine dump was captured")
    elif not any(r.label == Label.CONTROL_DEADLOCK.value for r in goroutines):
        first = goroutines[0]
        problems.append(
            f"the goroutine dump {'did not parse: ' + first.error if first.error else ''}"
            f"{'' if first.error else f'reads as {first.label}, not the control deadlock'}"
        )
    if not process:
        problems.append(f"no process dump was captured ({CHECK_PROCESS_DUMPS} asked for)")
    problems.extend(_process_dump_problem(name, r) for name, r in process)
    problems = [p for p in problems if p]
    if problems:
        return CheckOutcome.FAILED, "capture failed: " + "; ".join(problems)
    return (
        CheckOutcome.PASSED,
        f"hung at chance {run.control_chance}; {len(goroutines)} goroutine dump and "
        f"{len(process)} process dump read",
    )


def _process_dump_problem(name: str, report: ArtifactAnalysis) -> str:
    """A process dump parses when it was read and lists the process's threads: a file with
    a minidump's magic and nothing behind it is read, but shows nothing to triage."""
    if report.error:
        return f"process dump {name} did not parse: {report.error}"
    if not (report.report or {}).get("threads"):
        said = (report.report or {}).get("problems") or ["no thread list"]
        return f"process dump {name} did not parse: it shows no thread ({said[0]})"
    return ""


def conclude(
    session: Session, *, check: HealthCheck, outcome: CheckOutcome, detail: str, now: datetime
) -> bool:
    """Record a check's outcome, once: its row is locked and read again, and a check another
    transaction concluded meanwhile (the analysis and the sweep's patience crossing) is left
    as that one wrote it (False). A passed or failed one sets its agent's health; a failed
    one's runs stop counting, like every run of an unhealthy agent (a control that did not
    hang is no evidence of the control's rate)."""
    locked = session.scalar(
        select(HealthCheck)
        .where(HealthCheck.id == check.id, HealthCheck.finished_at.is_(None))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if locked is None:
        return False
    check = locked
    check.finished_at = now
    check.outcome = outcome.value
    check.detail = detail[:2000]
    if outcome is CheckOutcome.INCONCLUSIVE:
        return True
    if outcome is CheckOutcome.FAILED:
        for run in session.scalars(
            select(Run).where(Run.job_id == check.job_id, Run.status.in_(COUNTED_RUN_STATES))
        ):
            run.discount = Discount.UNHEALTHY_AGENT.value
    agent = session.get(Agent, check.agent_id, with_for_update=True)
    if agent is None:
        return True
    health = AgentHealth.HEALTHY if outcome is CheckOutcome.PASSED else AgentHealth.UNHEALTHY
    if agent.health != health.value:
        agent.health_changed_at = now
    agent.health = health.value
    agent.health_detail = f"{check.kind} check {check.id}: {detail}"[:2000]
    return True


def close_stale(session: Session, *, now: datetime) -> list[int]:
    """Checks that can no longer decide: their job finished without a verdict (every
    attempt lost, expired, cancelled), or their dumps were never analysed. Inconclusive."""
    closed: list[int] = []
    rows = session.execute(
        select(HealthCheck, Job.status, Job.finished_at)
        .join(Job, Job.id == HealthCheck.job_id)
        .where(HealthCheck.finished_at.is_(None), Job.status.in_(FINISHED_JOB_STATES))
    ).all()
    for check, status, finished_at in rows:
        runs = list(session.scalars(select(Run).where(Run.job_id == check.job_id).order_by(Run.id)))
        decided = [r for r in runs if _verdict(session, r) is not None]
        if decided:
            verdict = _verdict(session, decided[-1])
            assert verdict is not None
            conclude(session, check=check, outcome=verdict[0], detail=verdict[1], now=now)
        elif any(r.status == RunState.HUNG for r in runs):
            if finished_at is not None and now - finished_at < ANALYSIS_PATIENCE:
                continue
            conclude(
                session,
                check=check,
                outcome=CheckOutcome.INCONCLUSIVE,
                detail="its dumps were not analysed in time (is a worker running?)",
                now=now,
            )
        else:
            conclude(
                session,
                check=check,
                outcome=CheckOutcome.INCONCLUSIVE,
                detail=f"its job ended {status} without a result",
                now=now,
            )
        closed.append(check.id)
    return closed


def checks_of(session: Session, *, agent_id: int, limit: int = 20) -> list[HealthCheck]:
    return list(
        session.scalars(
            select(HealthCheck)
            .where(HealthCheck.agent_id == agent_id)
            .order_by(HealthCheck.id.desc())
            .limit(limit)
        )
    )


@dataclass
class HarnessProblems:
    """What the overview and the statistics flag instead of counting: hangs of bug
    scenarios on negative controls, and agents whose checks failed."""

    negative_control_hangs: int = 0
    discounted_runs: int = 0
    recent_hangs: list[dict[str, Any]] = field(default_factory=list)
    unhealthy_agents: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "negative_control_hangs": self.negative_control_hangs,
            "discounted_runs": self.discounted_runs,
            "recent_hangs": self.recent_hangs,
            "unhealthy_agents": self.unhealthy_agents,
        }


def harness_problems(
    session: Session, *, scenario: str | None = None, job_id: int | None = None, recent: int = 10
) -> HarnessProblems:
    """Read from the few discounted runs (indexed), never from the counted ones."""
    where: list[ColumnElement[bool]] = [Run.discount.is_not(None)]
    if scenario is not None:
        where.append(Run.scenario == scenario)
    if job_id is not None:
        where.append(Run.job_id == job_id)
    out = HarnessProblems()
    for discount, n in session.execute(
        select(Run.discount, func.count()).where(*where).group_by(Run.discount)
    ):
        out.discounted_runs += n
        if discount == Discount.NEGATIVE_CONTROL.value:
            out.negative_control_hangs = n
    names = dict(session.execute(select(Agent.id, Agent.name)).all()) if out.discounted_runs else {}
    for run in session.scalars(
        select(Run)
        .where(*where, Run.discount == Discount.NEGATIVE_CONTROL.value)
        .order_by(Run.id.desc())
        .limit(recent)
    ):
        out.recent_hangs.append(
            {
                "run_id": run.id,
                "job_id": run.job_id,
                "agent": names.get(run.agent_id or 0, ""),
                "scenario": run.scenario,
                "label": run.label,
                "finished_at": run.finished_at,
            }
        )
    out.unhealthy_agents = [
        {
            "id": a.id,
            "name": a.name,
            "detail": a.health_detail,
            "since": a.health_changed_at,
        }
        for a in session.scalars(
            select(Agent).where(Agent.health == AgentHealth.UNHEALTHY.value).order_by(Agent.name)
        )
    ]
    return out
