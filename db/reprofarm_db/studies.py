"""Studies: jobs whose runs are made as evidence arrives (reprofarm_protocol.studies).

- ``create`` (the api, at submit): the cells, from the matrix's axes and the hardware
  configurations of the agents online now, and each cell's first runs.
- ``step`` (the worker, after each of the study's results and at every sweep): read
  what the runs say (``study_view.evaluate``); if the study decided, or spent its
  budget, end it: runs not started are cancelled, the job is done, and runs still out
  learn it at their next heartbeat; otherwise top its cells up to their runs in flight.

A step is safe to run twice and at any time: it takes the job's lock, and everything
it decides comes from the runs, so a restart of the api or the worker loses nothing.
Lock order as ``jobs.cancel``: the job, then its runs not started."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from reprofarm_protocol import webhook_targets
from reprofarm_protocol.jobs import (
    FINISHED_JOB_STATES,
    NOT_STARTED_RUN_STATES,
    JobCreate,
    JobState,
    RunState,
)
from reprofarm_protocol.queues import TASK_PLAN_JOB, TASK_STUDY_STEP, TASK_STUDY_WEBHOOK
from reprofarm_protocol.studies import (
    Arm,
    JobKind,
    SearchCreate,
    StudyCreate,
    StudyRead,
    VerifyCreate,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from reprofarm_db import agents as agents_
from reprofarm_db import builds, jobs, outbox
from reprofarm_db import study_rules as rules
from reprofarm_db.errors import Invalid, NotFound
from reprofarm_db.models import Agent, Job, Run, utcnow
from reprofarm_db.states import lock_job, locked_runs, move_job, move_run
from reprofarm_db.study_view import Evaluation, RunFact, as_decided, evaluate, search_rule

MAX_CELLS = 2000
SLOTS_PER_AGENT = 2
"""A search keeps this many runs open per agent of a hardware configuration (its
current run and the next), shared among that configuration's undecided cells."""

_SPEC = TypeAdapter[VerifyCreate | SearchCreate](StudyCreate)


def parse_spec(job: Job) -> VerifyCreate | SearchCreate:
    return _SPEC.validate_python(job.spec)


def _as_job(spec: VerifyCreate | SearchCreate) -> JobCreate:
    return JobCreate.model_validate(spec.model_dump(include=set(JobCreate.model_fields)))


def plan_cells(
    session: Session, *, spec: VerifyCreate | SearchCreate, online_since: datetime
) -> tuple[list[dict[str, Any]], list[Agent]]:
    """The study's cells: per target group (pool, agent or any), per hardware
    configuration among its online agents, every Go version x CPU count x affinity x
    chance; and those agents. A cell's runs are pinned to its configuration by the
    fingerprint selector."""
    as_job = _as_job(spec)
    eligible = [
        a
        for a in agents_.list_(session)
        if agents_.matches(a, pools=spec.pools, names=spec.agents, selector=spec.selector)
        and a.last_seen >= online_since
    ]
    if not eligible:
        raise Invalid(
            "pools",
            f"no online agent matches pools {spec.pools}, agents {spec.agents} and selector "
            f"{spec.selector}: a study's cells are the hardware of the agents online now",
        )
    names = agents_.hardware_names(session, ids={a.hardware_config_id for a in eligible})
    cells: list[dict[str, Any]] = []
    for label, pool, agent_id, members in jobs.target_groups(as_job, eligible):
        by_hardware: dict[int, list[agents_.AgentTraits]] = defaultdict(list)
        for agent in members:
            by_hardware[agent.hardware_config_id].append(agent)
        for hw_id, agents in sorted(by_hardware.items()):
            fingerprint, hardware = names[hw_id]
            most = max(a.logical_cpus for a in agents)
            for go in spec.go_versions:
                for cpus in spec.cpus:
                    count = None if cpus == "all" else int(cpus)
                    if count is not None and count > most:
                        continue
                    for affinity in spec.affinities:
                        for chance in spec.chances():
                            cells.append(
                                {
                                    "index": len(cells),
                                    "target": label,
                                    "pool": pool,
                                    "agent_id": agent_id,
                                    "hardware_config_id": hw_id,
                                    "fingerprint": fingerprint,
                                    "hardware": hardware,
                                    "agents": len(agents),
                                    "go_version": go,
                                    "cpus": count,
                                    "affinity": affinity,
                                    "control_chance": chance,
                                }
                            )
                            if len(cells) > MAX_CELLS:
                                raise Invalid(
                                    "cpus",
                                    f"the study has more than {MAX_CELLS} cells; ask for "
                                    f"fewer CPU counts, affinities, Go versions or chances",
                                )
    if not cells:
        raise Invalid("cpus", "every cell asks for more CPUs than the matching agents have")
    return cells, eligible


def create(
    session: Session,
    *,
    spec: VerifyCreate | SearchCreate,
    idempotency_key: str | None,
    submitted_by: int | None,
    online_since: datetime,
    max_runs: int,
    webhook_secret_set: bool,
    webhook_hosts: Collection[str] = (),
) -> tuple[Job, bool]:
    """Store the study, its cells and their first runs in the caller's transaction, with
    the task that plans their builds in the outbox. Returns (job, created), as
    ``jobs.create`` does for an Idempotency-Key."""
    spec_json = spec.model_dump(mode="json")
    existing = jobs.find_by_key(
        session,
        key=idempotency_key,
        submitted_by=submitted_by,
        spec=spec_json,
        model=type(spec),
    )
    if existing is not None:
        return existing, False
    if spec.budget.runs is not None and spec.budget.runs > max_runs:
        raise Invalid("budget.runs", f"at most {max_runs} runs a job (REPROFARM_MAX_RUNS_PER_JOB)")
    if spec.webhook_url is not None and not webhook_secret_set:
        raise Invalid(
            "webhook_url",
            "the controller has no REPROFARM_WEBHOOK_SECRET to sign webhooks with",
        )
    if spec.webhook_url is not None and spec.webhook_url.host is not None:
        try:
            webhook_targets.check_host(spec.webhook_url.host, allowed=webhook_hosts)
        except webhook_targets.ForbiddenTarget as exc:
            raise Invalid("webhook_url", str(exc)) from exc
    cells, eligible = plan_cells(session, spec=spec, online_since=online_since)
    job = Job(
        kind=spec.kind,
        idempotency_key=idempotency_key,
        submitted_by=submitted_by,
        spec=spec_json,
        cells=cells,
        status=JobState.QUEUED,
        # A hardware configuration is one OS and architecture: one build target.
        targets=sorted({a.target for a in eligible if a.hardware_config_id in _hw(cells)}),
        priority=spec.priority,
    )
    session.add(job)
    session.flush()
    _top_up(session, job, spec, _evaluate(session, job, spec, trace=False))
    outbox.add(session, task=TASK_PLAN_JOB, args=[job.id])
    session.flush()
    return job, True


def _hw(cells: list[dict[str, Any]]) -> set[int]:
    return {int(c["hardware_config_id"]) for c in cells}


def facts(session: Session, *, job_id: int) -> list[RunFact]:
    """The study's runs in the order they finished (open runs last)."""
    rows = session.execute(
        select(
            Run.id,
            Run.cell,
            Run.arm,
            Run.status,
            Run.label,
            Run.signature_key,
            Run.agent_id,
            Run.duration_s,
            Run.leased_at,
            Run.finished_at,
            Run.discount,
        )
        .where(Run.job_id == job_id, Run.cell.is_not(None))
        .order_by(Run.finished_at.is_(None), Run.finished_at, Run.id)
    )
    return [
        RunFact(
            run_id=row.id,
            cell=row.cell,
            arm=row.arm,
            status=row.status,
            label=row.label,
            signature_key=row.signature_key,
            agent_id=row.agent_id,
            duration_s=float(row.duration_s or 0.0),
            started=row.leased_at is not None,
            finished_at=row.finished_at,
            discounted=row.discount is not None,
        )
        for row in rows
        if row.cell is not None
    ]


def _evaluate(
    session: Session,
    job: Job,
    spec: VerifyCreate | SearchCreate,
    *,
    trace: bool,
    now: datetime | None = None,
) -> Evaluation:
    """What the study's runs say now; for a study that decided, what they said when it
    did: runs that ended after the decision (those that were out) are left out, and the
    reason says how many, so a hang found while stopping never rewrites the answer."""
    runs = facts(session, job_id=job.id)
    decided_at = job.decided_at
    late = 0
    if decided_at is not None:
        runs, late = as_decided(runs, decided_at)
    evaluation = evaluate(
        job_id=job.id,
        status=job.status,
        spec=spec,
        spec_json=job.spec,
        cells=job.cells or [],
        facts=runs,
        now=decided_at or now or utcnow(),
        trace=trace,
    )
    if late:
        evaluation.read.reason += f" ({late} runs out at the decision ended later: not counted)"
    if job.status == JobState.CANCELLED and not evaluation.read.decided:
        evaluation.read.reason = f"cancelled before it decided ({evaluation.read.reason})"
    elif job.status == JobState.EXPIRED and job.study is not None:
        evaluation.read.reason = str(job.study["reason"])
    return evaluation


def read(session: Session, *, job_id: int) -> StudyRead:
    """The study as it stands, recomputed from its runs."""
    job = session.get(Job, job_id)
    if job is None or job.kind == JobKind.MATRIX:
        raise NotFound(f"study {job_id} does not exist")
    return _evaluate(session, job, parse_spec(job), trace=True).read


@dataclass(frozen=True)
class Step:
    ready: int  # runs made ready (agents to wake)
    decided: bool


def step(
    session: Session,
    *,
    job_id: int,
    max_runs: int,
    replan_max: int,
    now: datetime | None = None,
) -> Step:
    """One step of a study (the worker's task): end it if it decided or spent its
    budget, else top its cells up (never past ``max_runs`` runs in all, the limit of
    every job). A finished or unknown job is left alone. A study whose builds never
    came (its runs expired after ``replan_max`` re-plans) ends expired."""
    job = lock_job(session, job_id=job_id)
    if job is None or job.kind == JobKind.MATRIX or job.status in FINISHED_JOB_STATES:
        return Step(0, False)
    spec = parse_spec(job)
    now = now or utcnow()
    evaluation = _evaluate(session, job, spec, trace=False, now=now)
    if evaluation.read.decided:
        _finish(session, job, spec, evaluation.read, now=now)
        return Step(0, True)
    if job.replans >= replan_max and _builds_never_came(session, job_id=job.id):
        evaluation.read.reason = "its hangtest build never came (see the worker's log)"
        _finish(session, job, spec, evaluation.read, now=now, to=JobState.EXPIRED)
        return Step(0, True)
    left = max(0, max_runs - evaluation.runs_made)
    if evaluation.budget_left is None or evaluation.budget_left > left:
        evaluation.budget_left = left
    _top_up(session, job, spec, evaluation)
    job.study = evaluation.read.model_dump(mode="json")
    session.flush()
    return Step(builds.mark_ready_if_built(session, job=job), False)


def _builds_never_came(session: Session, *, job_id: int) -> bool:
    """The sweep gave up on this job's builds: it expired runs still pending."""
    return (
        session.scalar(
            select(Run.id).where(Run.job_id == job_id, Run.status == RunState.EXPIRED).limit(1)
        )
        is not None
    )


def _finish(
    session: Session,
    job: Job,
    spec: VerifyCreate | SearchCreate,
    read: StudyRead,
    now: datetime,
    to: JobState = JobState.DONE,
) -> None:
    for run in locked_runs(session, Run.job_id == job.id, Run.status.in_(NOT_STARTED_RUN_STATES)):
        move_run(run, RunState.CANCELLED, finished_at=now, reason="the study decided")
    job.study = read.model_copy(update={"status": to, "decided": True}).model_dump(mode="json")
    job.decided_at = now
    session.flush()
    move_job(session, job_id=job.id, to=to, now=now)
    if spec.webhook_url is not None:
        outbox.add(session, task=TASK_STUDY_WEBHOOK, args=[job.id])


def _top_up(
    session: Session, job: Job, spec: VerifyCreate | SearchCreate, evaluation: Evaluation
) -> int:
    """New runs where cells are short of their runs in flight, within the budget."""
    left = evaluation.budget_left
    hours_left = evaluation.hours_left
    if hours_left is not None:
        # Runs out now will spend about their length each: no new run past the budget.
        length_s = max(float(spec.duration_s or 0.0), 1.0)
        out_now = sum(evaluation.open_by_cell.values())
        affordable = max(0, int(hours_left * 3600 / length_s) - out_now)
        left = affordable if left is None else min(left, affordable)
    wanted = (
        _verify_wants(spec, evaluation)
        if isinstance(spec, VerifyCreate)
        else _search_wants(job, spec, evaluation)
    )
    cells = job.cells or []
    made = 0
    for cell_index, arm in wanted:
        if left is not None and made >= left:
            break
        session.add(_new_run(job, spec, cells[cell_index], arm))
        made += 1
    if made:
        session.flush()
    return made


def _verify_wants(spec: VerifyCreate, evaluation: Evaluation) -> list[tuple[int, str | None]]:
    """Per active cell, baseline and candidate alternately, up to the runs in flight:
    the arms are interleaved on the same cells and agents."""
    wants: list[tuple[int, str | None]] = []
    for cell in evaluation.active_cells:
        short = {
            arm: spec.in_flight_per_cell - evaluation.open_by_cell.get((cell, arm), 0)
            for arm in (Arm.BASELINE.value, Arm.CANDIDATE.value)
        }
        for k in range(max(short.values(), default=0)):
            wants.extend((cell, arm) for arm, n in short.items() if k < n)
    return wants


def _search_wants(
    job: Job, spec: SearchCreate, evaluation: Evaluation
) -> list[tuple[int, str | None]]:
    """Per hardware group, fill its agents' slots (``SLOTS_PER_AGENT`` each) with runs of
    its undecided cells, the most informative first (``study_rules.pick_cells``), no
    cell past its runs in flight. The draw is seeded by the study and its runs, so a
    step taken twice on the same runs makes the same choice."""
    rule = search_rule(spec)
    cells = job.cells or []
    by_index = {c.index: c for c in evaluation.read.cells}
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i in evaluation.pick_order:
        groups[(cells[i]["target"], cells[i]["fingerprint"])].append(i)
    rng = random.Random(f"{job.id}:{evaluation.read.runs_used}")  # noqa: S311 - a draw, not a secret
    wants: list[tuple[int, str | None]] = []
    for members in groups.values():
        agents = max(int(cells[members[0]]["agents"]), 1)
        slots = max(SLOTS_PER_AGENT * agents, spec.in_flight_per_cell)
        open_now = {i: evaluation.open_by_cell.get((i, None), 0) for i in members}
        free = slots - sum(open_now.values())
        if free <= 0:
            continue
        counts = [(by_index[i].hangs, by_index[i].runs) for i in members]
        phis = [by_index[i].phi for i in members]
        for pick in rules.pick_cells(counts, free * 4, rule, rng, phi=phis):
            i = members[pick]
            if open_now[i] < spec.in_flight_per_cell:
                open_now[i] += 1
                wants.append((i, None))
                free -= 1
                if free == 0:
                    break
    return wants


def _new_run(
    job: Job, spec: VerifyCreate | SearchCreate, cell: dict[str, Any], arm: str | None
) -> Run:
    go, chance = cell["go_version"], cell["control_chance"]
    if isinstance(spec, VerifyCreate) and arm is not None:
        arm_job = spec.arm_spec(arm)
        go = arm_job.go_versions[0]
        chance = arm_job.chances()[0]
    return Run(
        job_id=job.id,
        status=RunState.PENDING,
        priority=job.priority,
        scenario=spec.scenario,
        go_version=go,
        cpus=cell["cpus"],
        min_cpus=cell["cpus"],
        affinity=cell["affinity"],
        control_chance=chance,
        pool=cell["pool"],
        required_agent_id=cell["agent_id"],
        selector={**spec.selector, "fingerprint": cell["fingerprint"]},
        arm=arm,
        cell=cell["index"],
    )


def running(session: Session) -> list[int]:
    """Studies not finished: the sweep steps each (a result's own step may have been
    lost with a worker, and a study waiting on an analysis needs a later look)."""
    return list(
        session.scalars(
            select(Job.id).where(
                Job.kind != JobKind.MATRIX, Job.status.in_((JobState.QUEUED, JobState.RUNNING))
            )
        )
    )


def note_run_ended(session: Session, *, job_id: int) -> None:
    """A study's run ended (a result, a lost lease, an analysis): its study takes a step."""
    outbox.add(session, task=TASK_STUDY_STEP, args=[job_id])
