"""Latency from submitting a job to an idle agent starting hangtest, on a
farm of real processes (api, Celery worker and beat on Postgres and a private
Redis, one agent).

    uv run python bench/submit_to_start.py [--jobs 5]

One warm-up job builds hangtest first; then each job's latency is the time
from its creation (the api's clock) to hangtest's own `start` event (read from
the run's stdout artifact), split at the lease.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.e2e.farm import Farm, RedisServer, wait_for
from tests.fixtures import scratch_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5)
    args = parser.parse_args()
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
            to_lease, to_start = [], []
            for i in range(args.jobs + 1):
                job = farm.call(
                    "POST",
                    "/api/v1/jobs",
                    json={
                        "scenario": "pipe-close-race",
                        "pools": ["bench"],
                        "duration_s": 1,
                        "workers": 2,
                    },
                )
                farm.wait_job_done(job["id"])
                (run,) = farm.runs(job["id"])
                stdout = next(a for a in run["artifacts"] if a["kind"] == "stdout")
                text = httpx.get(
                    farm.url + stdout["url"], headers={"Authorization": f"Bearer {farm.admin}"}
                ).text
                start = next(
                    json.loads(line) for line in text.splitlines() if '"event":"start"' in line
                )
                created = datetime.fromisoformat(job["created_at"])
                leased = datetime.fromisoformat(run["leased_at"])
                started = datetime.fromisoformat(start["t"].replace("Z", "+00:00"))
                label = "warm-up (builds hangtest)" if i == 0 else f"job {i}"
                print(
                    f"{label}: leased after {(leased - created).total_seconds():.2f}s, "
                    f"hangtest started after {(started - created).total_seconds():.2f}s",
                    flush=True,
                )
                if i:
                    to_lease.append((leased - created).total_seconds())
                    to_start.append((started - created).total_seconds())
            print(
                f"median submit -> lease {statistics.median(to_lease):.2f}s, "
                f"submit -> hangtest start {statistics.median(to_start):.2f}s "
                f"over {args.jobs} jobs"
            )
        finally:
            farm.stop_all()
            redis.stop()


if __name__ == "__main__":
    main()
