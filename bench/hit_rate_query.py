"""Hit-rate statistics at a million runs, on the real Postgres.

    uv run python bench/hit_rate_query.py [--runs 1000000]

Creates a scratch database, loads the runs with COPY (then rebuilds the rollups,
as `reprofarm db rebuild-rollups` does after a bulk load), and times the statistics
(the function the api's /stats calls) for groupings of one to five keys, from the
rollups and, for reference, from a full scan, against a baseline measured in the
same run: a plain COUNT(*) over the runs table. It checks that both give the same
rows. The last line is one JSON object: `runs`, `worst_ms` (the slowest grouping's
median time from the rollups) and the rest of the figures.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from reprofarm_db import rollups, stats
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.migrate import upgrade
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fixtures import scratch_database

GROUPINGS = (
    ["hardware"],
    ["hardware", "go_version"],
    ["hardware", "cpus", "affinity"],
    ["hardware", "cpus", "affinity", "go_version"],
    ["hardware", "cpus", "affinity", "go_version", "scenario"],
    ["agent", "cpus", "affinity", "go_version", "label"],
)


def _rounded(row: dict[str, object]) -> dict[str, object]:
    """Floats summed in another order differ in their last bits: compare 9 digits."""
    return {k: float(f"{v:.9g}") if isinstance(v, float) else v for k, v in row.items()}


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
        started = time.perf_counter()
        with transaction(sessions) as s:
            cells = rollups.rebuild(s)
        print(f"rollups rebuilt: {cells} cells in {time.perf_counter() - started:.1f}s")

        def query(keys: list[str], source: str) -> Callable[[], object]:
            def run() -> object:
                with transaction(sessions) as s:
                    rows = stats.group_runs(s, group_by=keys, source=source)
                    return sorted(str(_rounded(r.as_dict())) for r in rows)

            return run

        def count() -> object:
            with transaction(sessions) as s:
                return s.execute(text("SELECT count(*) FROM runs")).scalar()

        base = timed(count)
        print(f"baseline COUNT(*) over {args.runs} runs: {base * 1000:.0f} ms")
        figures: dict[str, float] = {}
        for keys in GROUPINGS:
            name = ",".join(keys)
            fast = timed(query(keys, "rollups"))
            scan = timed(query(keys, "scan"), repeat=1)
            same = query(keys, "rollups")() == query(keys, "scan")()
            figures[name] = fast * 1000
            print(
                f"stats by {name}: rollups {fast * 1000:.1f} ms, scan {scan * 1000:.0f} ms "
                f"({scan / fast:.0f}x), same rows: {same}"
            )
            if not same:
                raise SystemExit(f"rollups and scan disagree for {name}")
        engine.dispose()
    print(
        json.dumps(
            {
                "runs": args.runs,
                "cells": cells,
                "worst_ms": round(max(figures.values()), 1),
                "baseline_count_ms": round(base * 1000, 1),
                "by_grouping_ms": {k: round(v, 1) for k, v in figures.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
