"""The one way a run's or a job's status changes.

Why: every writer of a run (a claim, a heartbeat, a result, the sweep, a cancel, an expiry,
planning, a re-analysis) runs in its own transaction, and two of them used to decide on
reads the other had already made stale; the later write won silently (a cancel overwrote a
run a claim had just leased, so the agent's hang was refused; a counted hang became
``cancelled``). The steps allowed are listed once, in ``reprofarm_protocol.jobs``
(``RUN_TRANSITIONS``, ``JOB_TRANSITIONS``); this module makes them the only ones taken:

- ``move_run`` is how a writer changes a run's status. It applies a step only if the run
  is in a state that allows it, and returns False when it refuses (nothing is changed).
  Writers that decide on many runs lock them first (``locked_runs``), so what they read is
  what they write over.
- ``Run.status`` is the mapper's version column (``models.Run``): every UPDATE of a run
  says ``WHERE id = :id AND status = :status_as_read``. A write that was decided on a stale
  read of a run matches no row and its transaction fails (``StaleDataError``, turned into
  a 409 at the api's edge) instead of winning.
- An attribute listener checks every assignment to ``Run.status`` of a stored run against
  the table and raises ``IllegalTransitionError`` for any other step, so code that bypasses
  ``move_run`` cannot take a forbidden step either.
- The hot path's steps are SQL statements, not assignments: the claim (ready -> leased,
  ``claims``) and a result (leased -> ended, ``leases.record_result``) are conditional
  UPDATEs (``WHERE status = 'ready'`` / ``'leased'``), and each module checks at import
  that ``may_move`` allows its step.
- Jobs carry no rollups, so ``move_job`` is one conditional UPDATE (``WHERE status IN``
  the states that allow the step); assigning ``Job.status`` of a stored job directly
  raises. A job's row is locked (``lock_job``) by every writer that then decides on its
  runs not started: planning, cancel and the expiry of waiting jobs. Writers that hold a
  leased run take its agent and then its job (``move_job``); no job-holder waits for a
  leased run, so these orders do not meet in a cycle (docs/architecture.md lists them).

Creating rows is not a step: runs are created ``pending`` (a job) or ``ready`` (a lost
run's retry), jobs ``queued``; tests insert histories directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from reprofarm_protocol.jobs import JOB_TRANSITIONS, RUN_TRANSITIONS, JobState, RunState
from sqlalchemy import ColumnElement, event, inspect, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.base import NEVER_SET, NO_VALUE

from reprofarm_db.models import Job, Run


class IllegalTransitionError(RuntimeError):
    """Code tried a step the state machine forbids: a bug, never a user's error."""


def may_move(current: str, to: RunState) -> bool:
    """Whether a run in ``current`` may step to ``to``."""
    return to in RUN_TRANSITIONS.get(RunState(current), frozenset())


def move_run(run: Run, to: RunState, **values: Any) -> bool:
    """Step a run to ``to`` and set ``values`` with it, if its state allows; False (and
    nothing changed) if it does not. The caller holds the run's row lock, or relies on
    the version check at flush, which fails the transaction if the run changed since it
    was read."""
    if not may_move(run.status, to):
        return False
    run.status = to
    for name, value in values.items():
        setattr(run, name, value)
    return True


def locked_runs(
    session: Session, *where: ColumnElement[bool], skip_locked: bool = False
) -> list[Run]:
    """Runs matching ``where``, locked and read as committed (``FOR UPDATE``; in Postgres a
    row changed while we waited for its lock is matched again against ``where``).
    ``skip_locked`` leaves rows other transactions hold. SQLite's transactions hold the
    one write lock from BEGIN (engine.py), so there a plain read is already current."""
    query = select(Run).where(*where).order_by(Run.id).execution_options(populate_existing=True)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=skip_locked)
    return list(session.scalars(query))


def lock_job(session: Session, *, job_id: int) -> Job | None:
    """The job, its row locked and read as committed (pending changes are flushed
    first), or None if it does not exist."""
    return session.scalar(
        select(Job)
        .where(Job.id == job_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def move_job(session: Session, *, job_id: int, to: JobState, now: datetime | None = None) -> bool:
    """Step a job to ``to`` if, as committed, it is in a state that allows it: one
    conditional UPDATE, so a step decided on a stale read changes nothing. Sets
    ``finished_at`` (``now``) when ``to`` finishes the job and ``planned_at`` when it
    starts it. Returns whether the step was taken; the session's copy of the job follows."""
    sources = [state for state, targets in JOB_TRANSITIONS.items() if to in targets]
    values: dict[str, Any] = {"status": to}
    if now is not None:
        values["planned_at" if to is JobState.RUNNING else "finished_at"] = now
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(sources))
        .values(**values)
        .execution_options(synchronize_session="fetch")
    )
    return bool(getattr(done, "rowcount", 0))


def check_runs(runs: Iterable[Run]) -> list[str]:
    """Runs whose stored status is not a state of the machine (a test's sanity check)."""
    known = {s.value for s in RunState}
    return [f"run {r.id}: {r.status!r}" for r in runs if r.status not in known]


@event.listens_for(Run.status, "set", propagate=True)
def _check_run_step(target: Run, value: str, old: Any, _initiator: Any) -> None:
    if not inspect(target).has_identity or old in (NO_VALUE, NEVER_SET) or old == value:
        return  # a new row (creation is not a step), or no change
    if not may_move(old, RunState(value)):
        raise IllegalTransitionError(f"run {target.id}: {old} -> {value} is not a step runs take")


@event.listens_for(Job.status, "set", propagate=True)
def _check_job_step(target: Job, value: str, old: Any, _initiator: Any) -> None:
    if not inspect(target).has_identity or old in (NO_VALUE, NEVER_SET) or old == value:
        return
    raise IllegalTransitionError(
        f"job {target.id}: {old} -> {value} assigned directly; jobs change through move_job"
    )
