"""Latency from submitting a job to an idle agent starting hangtest, on a
farm of real processes: distributed (api, Celery worker and beat on Postgres and
a private Redis, one agent) or embedded (`reprofarm up`: SQLite, no Redis).

    uv run python bench/submit_to_start.py [--jobs 5] [--mode distributed|embedded]

One warm-up job builds hangtest first; then each job's latency is the time
from its creation (the api's clock) to hangtest's own `start` event (read from
the run's stdout artifact), split at the lease.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.e2e.farm import Farm, RedisServer, free_port, wait_for
from tests.fixtures import scratch_database


class EmbeddedFarm:
    """`reprofarm up` in a temporary data dir, driven like a Farm (url, call, runs)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin = ""
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.root / "up.log").open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "reprofarm_cli",
                "up",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.root / "data"),
                "--agent-pool",
                "bench",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        token = self.root / "data" / "admin-token"
        wait_for("reprofarm up", lambda: token.exists() and token.read_text().strip(), 180)
        self.admin = token.read_text().strip()
        wait_for("its agent", self._agents, timeout=180)

    def _agents(self) -> Any:
        try:
            return self.call("GET", "/api/v1/agents")
        except httpx.HTTPError:
            return None  # up is still starting

    def stop(self) -> None:
        if self.process is None:
            return
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        r = httpx.request(
            method,
            self.url + path,
            timeout=30,
            headers={"Authorization": f"Bearer {self.admin}"},
            **kwargs,
        )
        r.raise_for_status()
        return r.json()

    def runs(self, job_id: int) -> list[dict[str, Any]]:
        """Every run of the job: the list is paged, followed to its last page."""
        runs: list[dict[str, Any]] = []
        path: str | None = f"/api/v1/jobs/{job_id}/runs?limit=500"
        while path is not None:
            page = self.call("GET", path)
            runs.extend(page["runs"])
            path = page["next"]
        return runs

    def wait_job_done(self, job_id: int) -> dict[str, Any]:
        return wait_for(
            "the job",
            lambda: (j := self.call("GET", f"/api/v1/jobs/{job_id}"))["status"] == "done" and j,
            timeout=240,
        )


def measure(farm: Any, jobs: int) -> tuple[list[float], list[float]]:
    to_lease, to_start = [], []
    for i in range(jobs + 1):
        job = farm.call(
            "POST",
            "/api/v1/jobs",
            json={"scenario": "pipe-close-race", "pools": ["bench"], "duration_s": 1, "workers": 2},
        )
        farm.wait_job_done(job["id"])
        (run,) = farm.runs(job["id"])
        stdout = next(a for a in run["artifacts"] if a["kind"] == "stdout")
        text = httpx.get(
            farm.url + stdout["url"], headers={"Authorization": f"Bearer {farm.admin}"}
        ).text
        start = next(json.loads(line) for line in text.splitlines() if '"event":"start"' in line)
        created = datetime.fromisoformat(job["created_at"])
        leased = datetime.fromisoformat(run["leased_at"])
        started = datetime.fromisoformat(start["t"].replace("Z", "+00:00"))
        label = "warm-up (builds hangtest)" if i == 0 else f"job {i}"
        print(
            f"{label}: leased after {(leased - created).total_seconds():.3f}s, "
            f"hangtest started after {(started - created).total_seconds():.3f}s",
            flush=True,
        )
        if i:
            to_lease.append((leased - created).total_seconds())
            to_start.append((started - created).total_seconds())
        time.sleep(1.5)  # the agent is back in its long-poll, idle
    return to_lease, to_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument("--mode", choices=["distributed", "embedded"], default="distributed")
    args = parser.parse_args()
    if args.mode == "embedded":
        with tempfile.TemporaryDirectory() as tmp:
            embedded = EmbeddedFarm(Path(tmp))
            try:
                embedded.start()
                to_lease, to_start = measure(embedded, args.jobs)
            finally:
                embedded.stop()
        report(args.mode, args.jobs, to_lease, to_start)
        return
    with scratch_database("reprofarm_bench") as url, tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp))
        redis.start()
        farm = Farm(
            root=Path(tmp),
            database_url=url,
            redis=redis,
            lease_s=30,
        )
        try:
            farm.prepare()
            farm.start_api()
            farm.start("worker", ["worker", "--concurrency", "2"])
            farm.start("beat", ["beat"])
            farm.start_agent("idle", ["bench"])
            wait_for("agent", lambda: farm.call("GET", "/api/v1/agents"), timeout=60)
            to_lease, to_start = measure(farm, args.jobs)
        finally:
            farm.stop_all()
            redis.stop()
    report(args.mode, args.jobs, to_lease, to_start)


def report(mode: str, jobs: int, to_lease: list[float], to_start: list[float]) -> None:
    print(
        f"{mode}: median submit -> lease {statistics.median(to_lease):.3f}s, "
        f"submit -> hangtest start {statistics.median(to_start):.3f}s over {jobs} jobs",
        flush=True,
    )
    print(
        json.dumps(
            {
                "mode": mode,
                "jobs": jobs,
                "median_lease_s": round(statistics.median(to_lease), 3),
                "median_start_s": round(statistics.median(to_start), 3),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
