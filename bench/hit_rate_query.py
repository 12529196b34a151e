"""Hit-rate statistics at a million runs, on the real Postgres.

    uv run python bench/hit_rate_query.py [--runs 1000000]

Creates a scratch database, loads the runs with COPY, and times the statistics
query (the same function the api's /stats calls) for two groupings, against a
baseline measured in the same run: a plain COUNT(*) over the runs table.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from reprofarm_db import stats
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.migrate import upgrade
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fixtures import scratch_database


def timed(fn: Callable[[], object], repeat: int = 5) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def load(url: str, runs: int) -> None:
    rng = random.Random(1)
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        for i in range(20):
            conn.execute(
                "INSERT INTO hardware_configs (id, fingerprint, os, os_version, arch, cpu_model,"
                " logical_cpus, physical_cores, hypervisor, description, first_seen) VALUES"
                " (%s, %s, 'windows', '10.0', 'arm64', %s, 8, 8, 'none', '{}', now())",
                (i + 1, f"{i:064d}", f"cpu {i}"),
            )
            conn.execute(
                "INSERT INTO agents (id, name, pools, hardware_config_id, target,"
                " logical_cpus, facts, agent_version, registered_at, last_seen,"
                " needs_reboot) VALUES (%s, %s, '[]', %s, 'windows/arm64', 8,"
                " '{}', 'b', now(), now(), false)",
                (i + 1, f"agent-{i + 1}", i + 1),
            )
        conn.execute(
            "INSERT INTO jobs (id, spec, status, skipped, targets, priority, created_at)"
            " VALUES (1, '{}', 'done', '[]', '[]', 0, now())"
        )
        buf = io.StringIO()
        for i in range(runs):
            status = rng.choices(["passed", "hung", "failed", "error", "lost"], [90, 5, 2, 2, 1])[0]
            buf.write(
                f"{i + 1}\t1\t1\t{status}\t0\tpipe-close-race\t1.2{rng.randint(5, 7)}.0\t"
                f"{rng.choice([1, 2, 4, 8])}\t{rng.choice(['compact', 'spread'])}\t0\t"
                f"{rng.randint(1, 20)}\t{rng.randint(1, 20)}\t{rng.randint(1000, 9999)}\t"
                f"{rng.uniform(10, 600):.1f}\t\t{{}}\tf\n"
            )
        buf.seek(0)
        with conn.cursor().copy(
            "COPY runs (id, job_id, attempt, status, priority, scenario, go_version, cpus,"
            " affinity, repeat_index, agent_id, hardware_config_id, iterations, duration_s,"
            " reason, selector, cancel_requested) FROM STDIN"
        ) as copy:
            copy.write(buf.read())
        conn.execute("ANALYZE runs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    args = parser.parse_args()
    with scratch_database("reprofarm_bench") as url:
        upgrade(url)
        started = time.perf_counter()
        load(url, args.runs)
        print(f"loaded {args.runs} runs in {time.perf_counter() - started:.1f}s")
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)

        def query(keys: list[str]) -> Callable[[], object]:
            def run() -> object:
                with transaction(sessions) as s:
                    return [r.as_dict() for r in stats.group_runs(s, group_by=keys)]

            return run

        def count() -> object:
            with transaction(sessions) as s:
                return s.execute(text("SELECT count(*) FROM runs")).scalar()

        base = timed(count)
        print(f"baseline COUNT(*) over {args.runs} runs: {base * 1000:.0f} ms")
        for keys in (["hardware"], ["hardware", "cpus", "affinity", "go_version", "scenario"]):
            t = timed(query(keys))
            print(f"stats by {','.join(keys)}: {t * 1000:.0f} ms ({t / base:.1f}x the COUNT)")
        engine.dispose()


if __name__ == "__main__":
    main()
