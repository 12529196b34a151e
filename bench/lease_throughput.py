"""Lease and result throughput with many concurrent agents, on the real api
(uvicorn) and Postgres.

    uv run python bench/lease_throughput.py [--agents 16] [--runs 2000]

Every agent thread leases a run and posts its result until none is left. The
baseline, measured in the same run with the same threads, is GET /health (a
request that also opens a transaction): the ratio says what leasing costs.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx
from reprofarm_db import builds, jobs, tokens
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.migrate import upgrade
from reprofarm_protocol.jobs import JobCreate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.factories import FAKE_SOURCE, fake_build, register_agent
from tests.fixtures import scratch_database

RESULT = {
    "result": {
        "status": "passed",
        "reason": "bench",
        "iterations": 1,
        "duration_s": 1.0,
        "cpu_set": [0],
        "requested_cpu_set": [0],
        "gomaxprocs": 1,
        "exit_code": 0,
    }
}


def seed(url: str, n_agents: int, n_runs: int, binary: Path) -> list[str]:
    sessions = make_sessionmaker(make_engine(url))
    with transaction(sessions) as s:
        agent_tokens = [register_agent(s, f"a{i}", pools=["p"], cpus=8)[1] for i in range(n_agents)]
        job, _ = jobs.create(
            s,
            spec=JobCreate(scenario="pipe-close-race", pools=["p"], repeats=n_runs),
            idempotency_key=None,
            max_runs=n_runs,
        )
        fake_build(s, path=binary)
        builds.mark_ready(s, job=job, source_sha256=FAKE_SOURCE)
        tokens.create(s, name="bench", role="admin")
    return agent_tokens


def hammer(url: str, agent_tokens: list[str], work: str) -> tuple[int, float]:
    done = 0
    lock = threading.Lock()

    def agent(token: str) -> None:
        nonlocal done
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as http:
            while True:
                if work == "health":
                    http.get("/health")
                    with lock:
                        done += 1
                        if done >= 2000:
                            return
                    continue
                r = http.post("/api/v1/agents/me/lease", json={"wait_s": 0})
                if r.status_code == 204:
                    return
                leased = r.json()
                http.post(
                    f"/api/v1/runs/{leased['run_id']}/result",
                    json=RESULT,
                    headers={"X-Lease-Token": leased["lease_token"]},
                ).raise_for_status()
                with lock:
                    done += 1

    threads = [threading.Thread(target=agent, args=(t,)) for t in agent_tokens]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=16)
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    with scratch_database("reprofarm_bench") as url, TemporaryDirectory() as tmp:
        binary = Path(tmp) / "hangtest.exe"
        binary.write_bytes(b"bench")
        upgrade(url)
        agent_tokens = seed(url, args.agents, args.runs, binary)
        port = 8700 + secrets.randbelow(200)
        env = {
            **os.environ,
            "REPROFARM_DATABASE_URL": url,
            "REPROFARM_DATA_DIR": tmp,
            "REPROFARM_BROKER_URL": "redis://127.0.0.1:6379/15",
        }
        api = subprocess.Popen(
            [sys.executable, "-m", "reprofarm_cli", "api", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    if httpx.get(base + "/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            n, secs = hammer(base, agent_tokens, "health")
            health_rate = n / secs
            print(f"baseline GET /health, {args.agents} clients: {health_rate:.0f} req/s")
            n, secs = hammer(base, agent_tokens, "lease")
            rate = n / secs
            print(
                f"{args.agents} agents leased and reported {n} runs in {secs:.1f}s: "
                f"{rate:.0f} runs/s = {2 * rate:.0f} req/s "
                f"({2 * rate / health_rate:.2f}x the /health rate)"
            )
        finally:
            api.terminate()
            api.wait()


if __name__ == "__main__":
    main()
