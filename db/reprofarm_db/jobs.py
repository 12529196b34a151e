"""Jobs: expanding the matrix into runs, submitting, cancelling, progress."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from reprofarm_protocol.jobs import (
    FINISHED_JOB_STATES,
    NOT_STARTED_RUN_STATES,
    OPEN_RUN_STATES,
    FanOut,
    JobCreate,
    JobState,
    RunState,
)
from reprofarm_protocol.queues import TASK_PLAN_JOB, TASK_STUDY_STEP
from reprofarm_protocol.studies import JobKind
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from reprofarm_db import agents as agents_
from reprofarm_db import outbox
from reprofarm_db.errors import Conflict, Invalid, NotFound
from reprofarm_db.models import Job, Run, utcnow
from reprofarm_db.states import lock_job, locked_runs, move_job, move_run


@dataclass(frozen=True)
class Cell:
    """One run to create."""

    target: str  # "any agent", "pool windows-arm64", "agent lab-7"
    go_version: str
    cpus: int | None
    affinity: str
    repeat_index: int
    pool: str | None
    required_agent_id: int | None
    control_chance: float | None = None


@dataclass
class Expansion:
    cells: list[Cell] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    eligible: list[agents_.AgentTraits] = field(default_factory=list)

    @property
    def targets(self) -> list[str]:
        """Build targets: one per OS/arch among the eligible agents."""
        return sorted({a.target for a in self.eligible})


def target_label(*, pool: str | None, agent: str | None) -> str:
    """How a job's matrix names where a cell runs: ``agent lab-7``, ``pool arm64`` or
    ``any agent`` (the dry run, the job page and skipped cells all say it this way)."""
    if agent is not None:
        return f"agent {agent}"
    return f"pool {pool}" if pool is not None else "any agent"


# (label, pool, required agent id, candidate agents) of one target group.
Group = tuple[str, str | None, int | None, list[agents_.AgentTraits]]


def target_groups(spec: JobCreate, eligible: Sequence[agents_.AgentTraits]) -> list[Group]:
    """(label, pool, required agent, candidates) for each target group. A job that
    waits for agents keeps pools no agent serves yet (their first agent may come)."""
    waiting = spec.wait_for_agents_s is not None
    if spec.fan_out is FanOut.EACH_AGENT:
        if not eligible:
            raise Invalid("fan_out", "each-agent needs registered agents to fan out to")
        return [(target_label(pool=None, agent=a.name), None, a.id, [a]) for a in eligible]
    groups: list[Group] = []
    for pool in spec.pools:
        members = [a for a in eligible if pool in a.pools]
        if members or waiting:
            groups.append((target_label(pool=pool, agent=None), pool, None, members))
    for name in spec.agents:
        named = [a for a in eligible if a.name == name]
        if not named:
            raise Invalid("agents", f"no eligible agent is named {name!r}")
        groups.append((target_label(pool=None, agent=name), None, named[0].id, named))
    if not spec.pools and not spec.agents:
        groups.append((target_label(pool=None, agent=None), None, None, list(eligible)))
    return groups


def _too_large(spec: JobCreate, groups: list[Group], *, max_runs: int) -> Invalid:
    """The refusal of a job past ``max_runs``, naming the axis that multiplies it
    most (the field to change), with the whole product in the message."""
    factors = {
        "repeats": spec.repeats,
        "cpus": len(spec.cpus),
        "affinities": len(spec.affinities),
        "go_versions": len(spec.go_versions),
        "control_chance": len(spec.chances()),
        "pools" if spec.fan_out is FanOut.ANY_AGENT else "fan_out": len(groups),
    }
    largest = max(factors, key=lambda k: factors[k])
    shape = " x ".join(f"{n} {k}" for k, n in factors.items())
    return Invalid(
        largest,
        f"the job expands to more than {max_runs} runs ({shape}, less skipped cells); "
        f"ask for fewer {largest}",
    )


def expand(
    spec: JobCreate,
    agents: Sequence[agents_.AgentTraits],
    *,
    max_runs: int,
    online_since: datetime | None = None,
) -> Expansion:
    """The runs a job asks for. Only agents seen since ``online_since`` (when
    given) are eligible, unless the job waits for agents: then every registered
    matching agent is, and a pool no agent serves yet still gets its cells.
    Cells no eligible agent can run (more CPUs than it has) are skipped with the
    reason; a job past ``max_runs`` is refused."""
    waiting = spec.wait_for_agents_s is not None
    out = Expansion(
        eligible=[
            a
            for a in agents
            if agents_.matches(a, pools=spec.pools, names=spec.agents, selector=spec.selector)
            and (waiting or online_since is None or a.last_seen >= online_since)
        ]
    )
    if not out.eligible and not waiting:
        raise Invalid(
            "pools",
            f"no online agent matches pools {spec.pools}, agents {spec.agents} "
            f"and selector {spec.selector} (or let the job wait: wait_for_agents_s)",
        )
    groups = target_groups(spec, out.eligible)
    for label, pool, agent_id, members in groups:
        most = max((a.logical_cpus for a in members), default=None)
        for go in spec.go_versions:
            for cpus in spec.cpus:
                count = None if cpus == "all" else int(cpus)
                if count is not None and most is not None and count > most:
                    out.skipped.append(
                        {
                            "target": label,
                            "go_version": go,
                            "cpus": count,
                            "reason": f"asked for {count} CPUs; agents there have at most {most}",
                        }
                    )
                    continue
                for affinity in spec.affinities:
                    for chance in spec.chances():
                        out.cells.extend(
                            Cell(label, go, count, affinity, r, pool, agent_id, chance)
                            for r in range(min(spec.repeats, max_runs + 1))
                        )
                        if len(out.cells) > max_runs:
                            raise _too_large(spec, groups, max_runs=max_runs)
    if not out.cells:
        raise Invalid("cpus", "every cell was skipped: " + out.skipped[0]["reason"])
    return out


def candidates(
    session: Session, spec: JobCreate, *, online_since: datetime | None
) -> list[agents_.AgentSummary]:
    """The agents ``expand`` chooses from: only those online, unless the job waits for
    agents (then every registered one may be)."""
    waiting = spec.wait_for_agents_s is not None
    return agents_.summaries(session, seen_since=None if waiting else online_since)


def create(
    session: Session,
    *,
    spec: JobCreate,
    idempotency_key: str | None,
    max_runs: int,
    submitted_by: int | None = None,
    online_since: datetime | None = None,
) -> tuple[Job, bool]:
    """Store the job and its runs in the caller's transaction, with the task
    that plans it in the outbox. Returns (job, created); a repeated key returns
    the first job, and a key reused for another spec is a Conflict."""
    spec_json = spec.model_dump(mode="json")
    existing = find_by_key(session, key=idempotency_key, submitted_by=submitted_by, spec=spec_json)
    if existing is not None:
        return existing, False
    expansion = expand(
        spec,
        candidates(session, spec, online_since=online_since),
        max_runs=max_runs,
        online_since=online_since,
    )
    wait = spec.wait_for_agents_s
    job = Job(
        expires_at=utcnow() + timedelta(seconds=wait) if wait is not None else None,
        idempotency_key=idempotency_key,
        submitted_by=submitted_by,
        spec=spec_json,
        status=JobState.QUEUED,
        skipped=expansion.skipped,
        targets=expansion.targets,
        priority=spec.priority,
    )
    session.add(job)
    session.flush()
    session.add_all(
        Run(
            job_id=job.id,
            status=RunState.PENDING,
            priority=spec.priority,
            scenario=spec.scenario,
            go_version=c.go_version,
            cpus=c.cpus,
            min_cpus=c.cpus,
            affinity=c.affinity,
            control_chance=c.control_chance,
            repeat_index=c.repeat_index,
            pool=c.pool,
            required_agent_id=c.required_agent_id,
            selector=spec.selector,
        )
        for c in expansion.cells
    )
    outbox.add(session, task=TASK_PLAN_JOB, args=[job.id])
    session.flush()
    return job, True


def spec_of_arm(spec: dict[str, Any], *, arm: str | None) -> dict[str, Any]:
    """A job's spec as a run of ``arm`` (a verify study's baseline or candidate; None:
    any other run) is leased with: the arm's fields over the job's."""
    if arm is None:
        return spec
    fields = {k: v for k, v in spec[arm].items() if k not in ("go_version", "control_chance")}
    return {**spec, **fields}


def chance_of(spec: dict[str, Any], *, control_chance: float | None) -> float | None:
    """A run's control chance: its own (``control_chance``), or, for a run stored
    before the chance was an axis (NULL), its job's single number."""
    if control_chance is not None:
        return control_chance
    return legacy_chance(spec)


def legacy_chance(spec: dict[str, Any]) -> float | None:
    """A job's single control chance, as jobs stored it before the chance was an axis
    (a list now, which gives no one number)."""
    legacy = spec.get("control_chance")
    return float(legacy) if isinstance(legacy, int | float) else None


def find_by_key(
    session: Session,
    *,
    key: str | None,
    submitted_by: int | None,
    spec: dict[str, Any],
    model: type[BaseModel] = JobCreate,
) -> Job | None:
    """The job an Idempotency-Key already made for this submitter, if any; the key reused
    for another spec is a Conflict. The stored spec is compared as ``model`` reads it now:
    a job stored before a field changed shape (``control_chance`` was one number) or
    before a field was added (its default) is the same job when resubmitted."""
    if key is None:
        return None
    existing = session.scalar(
        select(Job).where(Job.idempotency_key == key, Job.submitted_by == submitted_by)
    )
    if existing is not None and existing.spec != spec and _as_now(existing.spec, model) != spec:
        raise Conflict(f"Idempotency-Key {key!r} was used for a different job ({existing.id})")
    return existing


def _as_now(stored: dict[str, Any], model: type[BaseModel]) -> dict[str, Any] | None:
    try:
        return model.model_validate(stored).model_dump(mode="json")
    except ValueError:
        return None  # a shape this release no longer reads: a different job


def cells_as_dicts(expansion: Expansion) -> list[dict[str, Any]]:
    return [asdict(c) for c in expansion.cells]


def get_or_raise(session: Session, *, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    return job


def list_(session: Session, *, limit: int = 50, offset: int = 0) -> list[Job]:
    return list(session.scalars(select(Job).order_by(Job.id.desc()).limit(limit).offset(offset)))


def run_counts(session: Session, *, job_id: int) -> dict[str, int]:
    rows = session.execute(
        select(Run.status, func.count()).where(Run.job_id == job_id).group_by(Run.status)
    )
    counts = {state.value: 0 for state in RunState}
    for status, n in rows:
        counts[status] = n
    return counts


def open_run_counts(session: Session) -> dict[str, int]:
    """Runs pending, ready and leased, farm-wide: each an index range of (status, ...),
    cheap however many finished runs the farm keeps."""
    counts = {}
    for state in sorted(OPEN_RUN_STATES):
        counts[state.value] = (
            session.scalar(select(func.count()).select_from(Run).where(Run.status == state)) or 0
        )
    return counts


def refresh_status(session: Session, *, job_id: int) -> None:
    """A job is done once no run of it can still change; ``expired`` if every run
    expired (it waited for agents and none came). A job finished meanwhile (cancelled,
    or finished by a concurrent result) stays as it is: the step is conditional."""
    # Asked at every result: one probe of (job_id, status), not a count of the job.
    still_open = session.scalar(
        select(Run.id).where(Run.job_id == job_id, Run.status.in_(OPEN_RUN_STATES)).limit(1)
    )
    if still_open is not None:
        return
    if session.scalar(select(Job.kind).where(Job.id == job_id)) != JobKind.MATRIX:
        # A study ends when it decides, not when its runs in flight do.
        outbox.add(session, task=TASK_STUDY_STEP, args=[job_id])
        return
    counts = run_counts(session, job_id=job_id)
    expired_only = counts[RunState.EXPIRED] == sum(counts.values())
    to = JobState.EXPIRED if expired_only else JobState.DONE
    move_job(session, job_id=job_id, to=to, now=utcnow())


def finish_settled(session: Session) -> list[int]:
    """Running jobs with no open run left end now. ``refresh_status`` does this at
    each result, but two last results committed at once each see the other's run
    still open; the sweep settles such a job within its interval. Stray runs not
    started in cancelled jobs are ended too."""
    still_open = (
        select(Run.id).where(Run.job_id == Job.id, Run.status.in_(OPEN_RUN_STATES)).exists()
    )
    has_runs = select(Run.id).where(Run.job_id == Job.id).exists()
    settled = list(
        session.scalars(
            select(Job.id).where(
                Job.status == JobState.RUNNING, Job.kind == JobKind.MATRIX, has_runs, ~still_open
            )
        )
    )
    for job_id in settled:
        refresh_status(session, job_id=job_id)
    _end_strays(session)
    return settled


def _end_strays(session: Session) -> None:
    """Runs not started in a cancelled job end ``cancelled``: a lost run's retry is
    created by the sweep without the job's lock, so it can commit just after a cancel
    that could not see it. Claims never take such a run; this ends it."""
    cancelled = select(Job.id).where(Job.status == JobState.CANCELLED)
    now = utcnow()
    for run in locked_runs(
        session, Run.status.in_(NOT_STARTED_RUN_STATES), Run.job_id.in_(cancelled)
    ):
        move_run(
            run, RunState.CANCELLED, finished_at=now, reason="job cancelled before the run started"
        )


def expire_waiting(session: Session, *, now: datetime) -> list[int]:
    """Runs of jobs whose wait for agents is over and that no agent took end
    ``expired``, each with the reason of its cell. Once per job: retries of runs
    that did start (lost, re-queued) are not expired. Returns the jobs touched.

    The job is locked, then its runs not started: a claim that leased one meanwhile
    has committed by the time its lock is ours, and the run, leased, is left alone."""
    touched = []
    for job in session.scalars(
        select(Job)
        .where(Job.expires_at.is_not(None), Job.expires_at < now)
        .with_for_update()
        .execution_options(populate_existing=True)
    ):
        wait = job.spec.get("wait_for_agents_s")
        for run in locked_runs(
            session, Run.job_id == job.id, Run.status.in_(NOT_STARTED_RUN_STATES)
        ):
            where = f"pool {run.pool}" if run.pool else "matching the job"
            move_run(
                run,
                RunState.EXPIRED,
                finished_at=now,
                reason=f"no agent {where} took this run within the job's wait of {wait:g}s",
            )
        job.expires_at = None
        session.flush()
        refresh_status(session, job_id=job.id)
        touched.append(job.id)
    return touched


def cancel(session: Session, *, job_id: int) -> Job:
    """Runs not started are cancelled; running ones learn it from their job at their
    next heartbeat (and a result that did not hang is stored ``cancelled``).

    The job is locked first (planning and the expiry lock it too), then its runs not
    started. Runs that agents hold are not locked: the job's status is what tells them,
    so a cancel never waits on, or writes over, a claim, a heartbeat or a result."""
    job = lock_job(session, job_id=job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    if job.status in FINISHED_JOB_STATES:
        raise Conflict(f"job {job_id} is already {job.status}")
    now = utcnow()
    for run in locked_runs(session, Run.job_id == job_id, Run.status.in_(NOT_STARTED_RUN_STATES)):
        move_run(
            run, RunState.CANCELLED, finished_at=now, reason="job cancelled before the run started"
        )
    session.flush()
    move_job(session, job_id=job_id, to=JobState.CANCELLED, now=now)
    return job


def replan_stranded(
    session: Session, *, now: datetime, after_s: float, max_replans: int
) -> tuple[list[int], list[int]]:
    """Jobs left queued, or with runs still pending, ``after_s`` past their submission (or
    their last re-plan) are planned again: their plan or build task was lost with a worker
    that died (kombu's file transport, in the embedded mode, does not hand a task a dead
    worker held to another). Planning is idempotent, and a build is a cache lookup when it
    exists. After ``max_replans`` the runs still pending end ``expired``, with the builds
    that never came as the reason. Returns (jobs re-planned, jobs given up on)."""
    since = now - timedelta(seconds=after_s)
    pending = select(Run.id).where(Run.job_id == Job.id, Run.status == RunState.PENDING).exists()
    query = (
        select(Job)
        .where(
            Job.status.in_((JobState.QUEUED, JobState.RUNNING)),
            or_(Job.status == JobState.QUEUED, pending),
            func.coalesce(Job.replanned_at, Job.created_at) < since,
        )
        .order_by(Job.id)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    replanned, abandoned = [], []
    for job in session.scalars(query.execution_options(populate_existing=True)):
        job.replanned_at = now
        if job.replans < max_replans:
            job.replans += 1
            outbox.add(session, task=TASK_PLAN_JOB, args=[job.id])
            replanned.append(job.id)
            continue
        reason = (
            f"its hangtest build never came: planning was sent again {job.replans} times "
            f"(REPROFARM_REPLAN_MAX); see the worker's log for the build's error"
        )
        for run in locked_runs(session, Run.job_id == job.id, Run.status == RunState.PENDING):
            move_run(run, RunState.EXPIRED, finished_at=now, reason=reason)
        session.flush()
        refresh_status(session, job_id=job.id)
        abandoned.append(job.id)
    return replanned, abandoned
