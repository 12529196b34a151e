"""Real Celery worker processes for the tests of queues and redelivery, started the
way the farm starts them (``reprofarm worker ...``), and the database state they
work on: a leased run whose dumps are slow to read (FIFOs nobody writes: the
analysis blocks opening them, as a reader stuck on a large dump would)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from reprofarm_agent.build import hangtest_source_dir, source_sha256
from reprofarm_db import artifacts, builds, claims, jobs
from reprofarm_db.engine import transaction
from reprofarm_db.models import Agent
from reprofarm_protocol.jobs import JobCreate
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import fake_build, register_agent


def start_worker(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``reprofarm <args>`` in its own process group, its output in ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "reprofarm_cli", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> None:
    """Signal the worker's whole group (its pool threads' analysis children have
    groups of their own and end when their parent does); SIGKILL after 15 s."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_for(what: str, done: Callable[[], bool], log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"{what}: not after {timeout_s} s\n" + tail(log)
        time.sleep(0.2)


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"


def worker_env(data: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPROFARM_")}
    env.update(REPROFARM_DATA_DIR=str(data), PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
    env.update({f"REPROFARM_{k.upper()}": v for k, v in settings.items()})
    return env


def leased_run_with_dumps(
    sessions: sessionmaker[Session], folder: Path, dumps: dict[str, Path | None]
) -> tuple[int, list[int]]:
    """A run leased by an agent, with one complete ``goroutines`` artifact per entry of
    ``dumps``: the file given, or a FIFO nobody writes (None). Returns the run and the
    artifacts. A build of the current hangtest source exists, so planning any job of
    this agent's pool makes its runs ready without running Go."""
    with transaction(sessions) as s:
        agent, _ = register_agent(s, "lab", pools=["p"])
        job, _ = jobs.create(
            s,
            spec=JobCreate(scenario="control-deadlock", pools=["p"], duration_s=5),
            idempotency_key=None,
            max_runs=10,
        )
        fake_build(s, source_sha256=source_sha256(hangtest_source_dir()))
        builds.mark_ready(s, job=job, source_sha256=source_sha256(hangtest_source_dir()))
    with transaction(sessions) as s:
        run, _build, secret = claims.claim_objects(
            s, agent=s.get(Agent, agent.id), now=datetime.now(UTC), lease_s=600, avoid_grace_s=0
        )
        run_id = run.id
    ids = []
    for name, source in dumps.items():
        blob = folder / name
        if source is None:
            os.mkfifo(blob)
        else:
            blob.write_bytes(source.read_bytes())
        with transaction(sessions) as s:
            row, _ = artifacts.open_upload(
                s,
                agent_id=agent.id,
                run_id=run_id,
                lease_token=secret,
                name=name,
                kind="goroutines",
                sha256="0" * 64,
                size=0 if source is None else blob.stat().st_size,
                path=str(blob),
                limits=artifacts.RunLimits(artifacts=16, bytes=1 << 40),
            )
            artifacts.record_progress(s, artifact_id=row.id, received=row.bytes, blob=str(blob))
            ids.append(row.id)
    return run_id, ids


def pending_job(sessions: sessionmaker[Session]) -> int:
    """A job of pool ``p`` not planned yet: its runs are pending until a plan."""
    with transaction(sessions) as s:
        job, _ = jobs.create(
            s,
            spec=JobCreate(scenario="control-deadlock", pools=["p"], duration_s=5),
            idempotency_key=None,
            max_runs=10,
        )
        return job.id
