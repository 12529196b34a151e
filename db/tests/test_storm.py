"""A storm on Postgres: every writer of runs and jobs at once, then the books are checked.

Why a storm and not one test per race: the races found so far (a cancel or an expiry
writing over a run a claim had just leased, a heartbeat landing after the result and
overwriting its numbers, a counted hang turned ``cancelled``) each needed two writers to
meet inside a few milliseconds. Many writers for a bounded time meet in every order.

Actors, each a thread with its own sessions (the api's service functions, as the routers
call them, one transaction per request):
- agents that claim, heartbeat and report, each result raced by a heartbeat sent at the
  same moment; some go silent past their lease and report late;
- a submitter and a planner (jobs created pending, then made ready: the worker's step);
- a canceller; the sweep (lost leases, waiting jobs that expire, settled jobs);
- a labeller re-labelling hung runs (what a re-analysis does).

The books, at the end: every status change (logged by a Postgres trigger, so nothing the
code does escapes it) is a step the state machine allows; no run was leased twice; every
result acknowledged as counted is in the database as sent, and every late one is kept as
sent the first time; no legitimate result was refused; the rollups equal a rebuild from
the runs; every agent's ``current_run_id`` is clear or names its open run.

``REPROFARM_STORM_SECONDS`` (default 12) sets the storm's length; the seed fixes each
actor's choices (thread timing still varies, which is the point).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from reprofarm_db import analyses, builds, claims, jobs, leases, rollups
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.errors import Conflict
from reprofarm_db.migrate import upgrade
from reprofarm_db.models import Agent, Job, Run
from reprofarm_db.settings import ControllerSettings
from reprofarm_protocol.analysis import Label
from reprofarm_protocol.jobs import Heartbeat, JobCreate, JobState, RunReport, RunState
from reprofarm_protocol.runs import RunResult, RunStatus
from reprofarm_worker.tasks import sweep_leases
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import FAKE_SOURCE, fake_build, register_agent

SEED = 20261204
SECONDS = float(os.environ.get("REPROFARM_STORM_SECONDS", "12"))
AGENTS = 6
LEASE_S = 1.5
POOL = "storm"

# The state machine as this test states it, independently of the code's own table:
# None is a row's creation.
RUN_STEPS = {
    (None, "pending"),
    (None, "ready"),  # a retry of a lost run
    ("pending", "ready"),
    ("pending", "cancelled"),
    ("pending", "expired"),
    ("ready", "leased"),
    ("ready", "cancelled"),
    ("ready", "expired"),
    ("leased", "passed"),
    ("leased", "hung"),
    ("leased", "failed"),
    ("leased", "error"),
    ("leased", "cancelled"),  # a result while its job was being cancelled
    ("leased", "lost"),
}
JOB_STEPS = {
    (None, "queued"),
    ("queued", "running"),
    ("queued", "cancelled"),
    ("queued", "expired"),
    ("queued", "done"),
    ("running", "done"),
    ("running", "cancelled"),
    ("running", "expired"),
}

_STATUS_LOG = """
CREATE TABLE storm_log (id bigserial PRIMARY KEY, tbl text, row_id int, old text, new text);
CREATE FUNCTION storm_log_status() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO storm_log (tbl, row_id, old, new) VALUES (TG_TABLE_NAME, NEW.id, NULL, NEW.status);
  ELSIF OLD.status IS DISTINCT FROM NEW.status THEN
    INSERT INTO storm_log (tbl, row_id, old, new)
    VALUES (TG_TABLE_NAME, NEW.id, OLD.status, NEW.status);
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER runs_status_log AFTER INSERT OR UPDATE ON runs
  FOR EACH ROW EXECUTE FUNCTION storm_log_status();
CREATE TRIGGER jobs_status_log AFTER INSERT OR UPDATE ON jobs
  FOR EACH ROW EXECUTE FUNCTION storm_log_status();
"""


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Books:
    """What the actors were told, kept as they were told it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    leased: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    counted: dict[int, dict[str, Any]] = field(default_factory=dict)
    late: dict[int, dict[str, Any]] = field(default_factory=dict)
    refused: list[tuple[int, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    jobs: list[int] = field(default_factory=list)
    actions: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def note(self, action: str) -> None:
        with self.lock:
            self.actions[action] += 1


@pytest.fixture
def storm_db(postgres_url: str) -> Iterator[tuple[Engine, sessionmaker[Session]]]:
    upgrade(postgres_url)
    engine = make_engine(postgres_url, pool_size=AGENTS + 8, max_overflow=8)
    with engine.begin() as conn:
        conn.exec_driver_sql(_STATUS_LOG)
    yield engine, make_sessionmaker(engine)
    engine.dispose()


def _report(rng: random.Random) -> tuple[RunReport, dict[str, Any]]:
    status = rng.choice([RunStatus.PASSED, RunStatus.HUNG, RunStatus.FAILED, RunStatus.ERROR])
    result = RunResult(
        status=status,
        reason=f"storm {rng.randrange(1 << 30)}",
        iterations=rng.randrange(1, 1_000_000),
        duration_s=round(rng.uniform(0.1, 30.0), 3),
        cpu_set=[0],
        requested_cpu_set=[0],
        gomaxprocs=1,
        exit_code=None,
    )
    return RunReport(result=result), result.model_dump(mode="json")


def _forever(books: Books, name: str, deadline: float, step: Callable[[], None]) -> None:
    """Run ``step`` until the deadline; an exception ends the actor and is booked."""
    try:
        while time.monotonic() < deadline:
            step()
    except Exception as exc:  # noqa: BLE001 - booked and asserted on: the test fails with it
        books.errors.append(f"{name}: {type(exc).__name__}: {exc}")


def _agent(
    sessions: sessionmaker[Session], books: Books, agent_id: int, rng: random.Random
) -> Callable[[], None]:
    def beat(run_id: int, token: str, iterations: int) -> None:
        with transaction(sessions) as s:
            leases.heartbeat(
                s,
                agent_id=agent_id,
                run_id=run_id,
                lease_token=token,
                beat=Heartbeat(iterations=iterations, elapsed_s=0.5),
                now=now(),
                lease_s=LEASE_S,
            )

    def report(
        run_id: int, token: str, made: tuple[RunReport, dict[str, Any]], *, repeat: bool = False
    ) -> None:
        sent, payload = made
        try:
            with transaction(sessions) as s:
                agent = s.get(Agent, agent_id)
                assert agent is not None
                _, counted = leases.record_result(
                    s, agent=agent, run_id=run_id, lease_token=token, report=sent, now=now()
                )
        except Conflict as exc:
            with books.lock:
                books.refused.append((run_id, str(exc)))
            return
        with books.lock:
            if counted:
                books.counted[run_id] = payload
            elif not repeat:
                books.late.setdefault(run_id, payload)

    def step() -> None:
        with transaction(sessions) as s:
            leased = claims.lease_for(
                s, agent_id=agent_id, now=now(), lease_s=LEASE_S, avoid_grace_s=0.0
            )
        if leased is None:
            time.sleep(0.005)
            return
        run_id, token = leased.run_id, leased.lease_token
        with books.lock:
            books.leased[run_id].append(agent_id)
        books.note("lease")
        if rng.random() < 0.08:  # goes silent past its lease, then reports late
            time.sleep(LEASE_S * 1.6)
            report(run_id, token, _report(rng))
            books.note("late result")
            return
        for _ in range(rng.randrange(0, 3)):
            beat(run_id, token, rng.randrange(1, 1000))
            books.note("heartbeat")
        # The result and a heartbeat sent at the same moment (an agent's heartbeat
        # thread does not stop for the result): the result must win.
        start = threading.Barrier(2)
        racer = threading.Thread(
            target=lambda: (start.wait(), _guard(books, "racing heartbeat", beat, run_id, token))
        )
        racer.start()
        start.wait()
        made = _report(rng)
        report(run_id, token, made)
        racer.join()
        books.note("result")
        if rng.random() < 0.1:  # a retried post of the same result changes nothing
            report(run_id, token, made, repeat=True)

    return step


def _guard(books: Books, name: str, call: Callable[..., None], *args: Any) -> None:
    try:
        call(*args, 777_777)
    except Exception as exc:  # noqa: BLE001 - booked and asserted on
        books.errors.append(f"{name}: {type(exc).__name__}: {exc}")


def _submitter(
    sessions: sessionmaker[Session], books: Books, rng: random.Random
) -> Callable[[], None]:
    def step() -> None:
        waits = rng.random() < 0.3
        spec = JobCreate(
            scenario="control-deadlock",
            repeats=rng.randrange(10, 40),
            pools=[POOL],
            wait_for_agents_s=rng.uniform(0.3, 1.5) if waits else None,
            priority=rng.randrange(0, 3),
        )
        with transaction(sessions) as s:
            job, _ = jobs.create(s, spec=spec, idempotency_key=None, max_runs=1000)
            job_id = job.id
        with books.lock:
            books.jobs.append(job_id)
        books.note("submit")
        time.sleep(rng.uniform(0.2, 0.6))

    return step


def _planner(
    sessions: sessionmaker[Session], books: Books, rng: random.Random
) -> Callable[[], None]:
    def step() -> None:
        with transaction(sessions) as s:
            queued = list(s.scalars(select(Job).where(Job.status == JobState.QUEUED)))
            for job in queued:
                builds.mark_ready(s, job=job, source_sha256=FAKE_SOURCE, now=now())
        if queued:
            books.note("plan")
        time.sleep(rng.uniform(0.0, 0.05))

    return step


def _canceller(
    sessions: sessionmaker[Session], books: Books, rng: random.Random
) -> Callable[[], None]:
    def step() -> None:
        time.sleep(rng.uniform(0.2, 0.8))
        with transaction(sessions) as s:  # a job still open: most jobs are long done
            candidates = list(
                s.scalars(select(Job.id).where(Job.status.in_(("queued", "running"))))
            )
        if not candidates:
            return
        job_id = rng.choice(candidates)
        try:
            with transaction(sessions) as s:
                jobs.cancel(s, job_id=job_id)
            books.note("cancel")
        except Conflict:
            pass  # already finished: the refusal is the documented answer

    return step


def _sweeper(sessions: sessionmaker[Session], books: Books) -> Callable[[], None]:
    settings = ControllerSettings(max_attempts=3)

    def step() -> None:
        lost = sweep_leases(sessions, settings)  # the worker's own task body
        with transaction(sessions) as s:
            expired = jobs.expire_waiting(s, now=now())
        if lost:
            books.note("lost")
        if expired:
            books.note("expired job")
        time.sleep(0.02)

    return step


def _labeller(
    sessions: sessionmaker[Session], books: Books, rng: random.Random
) -> Callable[[], None]:
    def step() -> None:
        time.sleep(rng.uniform(0.01, 0.05))
        with transaction(sessions) as s:
            hung = list(s.scalars(select(Run.id).where(Run.status == RunState.HUNG).limit(50)))
        if not hung:
            return
        label = rng.choice([Label.CONTROL_DEADLOCK, Label.OTHER_HANG])
        with transaction(sessions) as s:
            analyses.label_run(
                s, run_id=rng.choice(hung), label=label, signature=f"{label.value}:storm"
            )
        books.note("relabel")

    return step


def test_a_storm_of_every_writer_leaves_the_books_straight(storm_db):
    engine, sessions = storm_db
    with transaction(sessions) as s:
        agent_ids = [register_agent(s, f"storm-{i}", pools=[POOL])[0].id for i in range(AGENTS)]
        fake_build(s, target="windows/arm64")
    books = Books()
    deadline = time.monotonic() + SECONDS
    actors: list[tuple[str, Callable[[], None]]] = [
        *((f"agent {a}", _agent(sessions, books, a, random.Random(SEED + a))) for a in agent_ids),
        ("submitter", _submitter(sessions, books, random.Random(SEED - 1))),
        ("planner", _planner(sessions, books, random.Random(SEED - 2))),
        ("canceller", _canceller(sessions, books, random.Random(SEED - 3))),
        ("sweeper", _sweeper(sessions, books)),
        ("labeller", _labeller(sessions, books, random.Random(SEED - 4))),
    ]
    threads = [
        threading.Thread(target=_forever, args=(books, name, deadline, step), name=name)
        for name, step in actors
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=SECONDS + 60)
    assert not any(t.is_alive() for t in threads), "an actor did not stop"
    # The late reporters' leases expire after the storm: one last sweep settles them.
    time.sleep(LEASE_S)
    sweep_leases(sessions, ControllerSettings(max_attempts=3))

    print(f"storm actions: {dict(books.actions)}")
    assert not books.errors, books.errors
    assert books.actions["result"] > 50, books.actions
    assert books.actions["cancel"] > 3, books.actions
    _check_the_books(engine, sessions, books, agent_ids)


def _check_the_books(
    engine: Engine, sessions: sessionmaker[Session], books: Books, agent_ids: list[int]
) -> None:
    with engine.connect() as conn:
        log = conn.execute(text("SELECT tbl, row_id, old, new FROM storm_log ORDER BY id")).all()
    bad_runs = sorted({(o, n) for t, _, o, n in log if t == "runs"} - RUN_STEPS, key=str)
    bad_jobs = sorted({(o, n) for t, _, o, n in log if t == "jobs"} - JOB_STEPS, key=str)
    assert not bad_runs, f"run status changes the state machine forbids: {bad_runs}"
    assert not bad_jobs, f"job status changes the state machine forbids: {bad_jobs}"
    leased_in_log: dict[int, int] = defaultdict(int)
    for t, row_id, _, new in log:
        if t == "runs" and new == "leased":
            leased_in_log[row_id] += 1
    assert all(n == 1 for n in leased_in_log.values()), "a run was leased twice"
    assert all(len(a) == 1 for a in books.leased.values()), "two agents were given one run"

    assert not books.refused, f"legitimate results refused: {books.refused[:5]}"
    with transaction(sessions) as s:
        runs = {r.id: r for r in s.scalars(select(Run).where(Run.id.in_(books.leased)))}
        wrong = []
        for run_id, payload in books.counted.items():
            run = runs[run_id]
            expected = payload["status"]
            if run.cancel_requested and expected != "hung":
                expected = "cancelled"  # by design: a result for a cancelled job's run
            stored = (run.status, run.result, run.iterations, run.duration_s)
            if stored != (expected, payload, payload["iterations"], payload["duration_s"]):
                wrong.append((run_id, stored[0], stored[2], expected, payload["iterations"]))
        assert not wrong, f"{len(wrong)} acknowledged results not stored as sent: {wrong[:5]}"
        late_wrong = [
            (run_id, runs[run_id].status)
            for run_id, payload in books.late.items()
            if runs[run_id].status != RunState.LOST or runs[run_id].late_result != payload
        ]
        assert not late_wrong, f"late results not kept as first sent: {late_wrong[:5]}"

        kept = rollups.cells(s)
    with sessions() as s:  # a rebuild in a transaction that is rolled back
        rollups.rebuild(s)
        scanned = rollups.cells(s)
        s.rollback()
    # Seconds are float sums in another order (a relabel's -x then +x can leave 1e-14 in
    # an emptied cell): equal to 1e-9, and a cell absent on one side is all zeros.
    zeros = (0.0,) * len(rollups.COUNTERS)
    differ = {
        key: (kept.get(key), scanned.get(key))
        for key in kept.keys() | scanned.keys()
        if kept.get(key, zeros) != pytest.approx(scanned.get(key, zeros), rel=1e-9, abs=1e-6)
    }
    assert not differ, f"the rollups disagree with a scan of the runs: {differ}"

    with transaction(sessions) as s:
        finished = select(Job.id).where(Job.status.in_(("done", "cancelled", "expired")))
        strays = s.scalars(
            select(Run.id).where(Run.status.in_(("pending", "ready")), Run.job_id.in_(finished))
        ).all()
        assert not strays, f"runs not started in finished jobs: {strays[:5]}"
        flagged = s.scalars(
            select(Run.id)
            .join(Job, Job.id == Run.job_id)
            .where(Run.cancel_requested.is_(True), Job.status != "cancelled")
        ).all()
        assert not flagged, f"runs stored as cancelled whose job was not: {flagged[:5]}"
        for agent in s.scalars(select(Agent).where(Agent.id.in_(agent_ids))):
            if agent.current_run_id is None:
                continue
            run = s.get(Run, agent.current_run_id)
            assert run is not None
            assert (run.status, run.agent_id) == (RunState.LEASED, agent.id), (
                f"agent {agent.name} names run {run.id}, which is {run.status}"
            )
