"""The farm agents_load.py drives: a scratch Postgres database, a private Redis,
N api processes with the same settings, a Celery worker and beat, and hangtest
builds recorded without Go (so planning a job never compiles anything)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from reprofarm_agent.build import hangtest_source_dir, source_sha256
from reprofarm_db import builds, jobs, tokens
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.models import Run
from reprofarm_protocol.jobs import JobCreate
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.e2e.farm import Farm, RedisServer, free_port, wait_for
from tests.factories import fake_build
from tests.fixtures import scratch_database

POOL = "load"


@dataclass
class LoadFarm:
    farm: Farm
    api_urls: list[str]
    database_url: str
    viewer: str

    @property
    def database(self) -> str:
        return self.database_url.rsplit("/", 1)[1]

    def pids(self) -> dict[str, int]:
        """Each process is its own session leader (Farm), so its pid is the
        server's: uvicorn runs in the process `reprofarm api` started."""
        return {name: p.pid for name, p in self.farm.processes.items()}

    def seed_ready_runs(self, runs: int, *, scenario: str) -> None:
        """Ready runs for the ingest mode, no api request spent on them: one job
        of one run through the business functions (created, planned), then
        copies of that run in one INSERT (the ORM makes ~500 runs/s here)."""
        engine = make_engine(self.database_url)
        with transaction(make_sessionmaker(engine)) as s:
            job, _ = jobs.create(
                s,
                spec=JobCreate(scenario=scenario, pools=[POOL], duration_s=1),
                idempotency_key=None,
                max_runs=1,
            )
            builds.mark_ready(s, job=job, source_sha256=source_sha256(hangtest_source_dir()))
            s.flush()
            columns = [c.name for c in Run.__table__.columns if c.name != "id"]
            copied = ", ".join("g" if c == "repeat_index" else c for c in columns)
            s.execute(
                text(
                    f"INSERT INTO runs ({', '.join(columns)}) SELECT {copied} FROM runs,"
                    " generate_series(1, :n) AS g WHERE job_id = :job"
                ),
                {"n": runs - 1, "job": job.id},
            )
        engine.dispose()


def _record_builds(url: str, targets: list[str], binary: Path) -> str:
    """A fake build per target under the *current* hangtest source hash: the
    worker plans jobs against that hash, and a build recorded under another
    (fake_build's FAKE_SOURCE) would make it compile Go for real. Returns a
    viewer token for the dashboard reads."""
    src = source_sha256(hangtest_source_dir())
    engine = make_engine(url)
    with transaction(make_sessionmaker(engine)) as s:
        for target in targets:
            fake_build(s, target=target, path=binary).source_sha256 = src
        viewer = tokens.create(s, name="load dashboards", role="viewer")
    engine.dispose()
    return viewer


@contextmanager
def running_farm(
    root: Path,
    *,
    api_processes: int,
    lease_s: float,
    targets: list[str],
    max_runs_per_job: int = 10_000,
) -> Iterator[LoadFarm]:
    """Start everything; stop it and drop the database on exit. The settings
    are the defaults but the lease (4 heartbeat periods, as the api says) and
    the largest job (ingest seeds big ones)."""
    env = {
        "REPROFARM_AVOID_GRACE_S": "30",
        "REPROFARM_SWEEP_INTERVAL_S": "5",
        "REPROFARM_MAX_RUNS_PER_JOB": str(max_runs_per_job),
    }
    with scratch_database("reprofarm_load") as url:
        redis = RedisServer(root)
        redis.start()
        farm = Farm(root=root, database_url=url, redis=redis, lease_s=lease_s)
        try:
            farm.prepare()
            binary = root / "hangtest.bin"
            binary.write_bytes(b"not really hangtest\n" * 100)
            viewer = _record_builds(url, targets, binary)
            ports = [free_port() for _ in range(api_processes)]
            for i, port in enumerate(ports):
                farm.start(f"api-{i}", ["api", "--port", str(port)], **env)
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            for u in urls:
                wait_for(f"{u}/health", lambda u=u: _healthy(u), timeout=60)
            farm.start("worker", ["worker", "--concurrency", "2"], **env)
            farm.start("beat", ["beat"], **env)
            # Celery says so in its log once it consumes; jobs submitted before
            # would wait for it, and the first seconds of load would be idle.
            log = root / "worker.log"
            wait_for("the worker", lambda: b" ready." in log.read_bytes(), timeout=120)
            yield LoadFarm(farm=farm, api_urls=urls, database_url=url, viewer=viewer)
        finally:
            farm.stop_all()
            redis.stop()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
