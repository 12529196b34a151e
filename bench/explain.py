"""explain at a million runs, on the real Postgres.

    uv run python bench/explain.py [--runs 1000000] [--configs 2000]

Creates a scratch database, loads the runs with COPY over 2,000 hardware
configurations (two machines each) and 6 factors with known effects (arch, hypervisor,
CPU model, CPU count, affinity, Go version: one CPU and virtualisation raise the odds,
nothing else does), rebuilds the rollups as `reprofarm db rebuild-rollups` does after a
bulk load, and times ``explain`` (the function /api/v1/explain calls): the rates query
and the model apart. Target: under 2 s. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import sys
import time
from pathlib import Path

import psycopg
from reprofarm_db import explain, rollups, views
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.migrate import upgrade

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fixtures import scratch_database

ARCHES = ("amd64", "arm64")
HYPERVISORS = ("none", "hyper-v", "kvm")
MODELS = 24
BASE_ODDS = 0.01


def _odds(cpus: int, hypervisor: str) -> float:
    """The truth the report should find: 1 CPU x3, a VM x2, the rest no effect."""
    return BASE_ODDS * (3.0 if cpus == 1 else 1.0) * (2.0 if hypervisor != "none" else 1.0)


def load(url: str, runs: int, configs: int) -> None:
    rng = random.Random(1)
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        hardware = io.StringIO()
        agents = io.StringIO()
        facts = []
        for i in range(configs):
            model = i % MODELS
            arch = ARCHES[model % 2]  # a CPU model has one architecture
            hypervisor = HYPERVISORS[(i // MODELS) % 3]  # every model on every kind
            facts.append(hypervisor)
            hardware.write(
                f"{i + 1}\t{i:064d}\twindows\t10.0\t{arch}\tcpu model {model}\t8\t8\t"
                f'{hypervisor}\t{{"efficiency_classes": [0]}}\t2026-12-01\n'
            )
            for m in (0, 1):
                agents.write(
                    f"{2 * i + m + 1}\tagent-{2 * i + m + 1}\t[]\t{i + 1}\twindows/{arch}\t8\t"
                    "{}\tb\t2026-12-01\t2026-12-01\tf\n"
                )
        with conn.cursor().copy(
            "COPY hardware_configs (id, fingerprint, os, os_version, arch, cpu_model,"
            " logical_cpus, physical_cores, hypervisor, description, first_seen) FROM STDIN"
        ) as copy:
            copy.write(hardware.getvalue())
        with conn.cursor().copy(
            "COPY agents (id, name, pools, hardware_config_id, target, logical_cpus, facts,"
            " agent_version, registered_at, last_seen, needs_reboot) FROM STDIN"
        ) as copy:
            copy.write(agents.getvalue())
        conn.execute(
            "INSERT INTO jobs (id, spec, status, skipped, targets, priority, created_at)"
            " VALUES (1, '{}', 'done', '[]', '[]', 0, now())"
        )
        buf = io.StringIO()
        for i in range(runs):
            config = rng.randrange(configs)
            agent = 2 * config + rng.randint(0, 1) + 1
            cpus = rng.choice([1, 2, 4, 8])
            odds = _odds(cpus, facts[config])
            status = "hung" if rng.random() < odds / (1 + odds) else "passed"
            buf.write(
                f"{i + 1}\t1\t1\t{status}\t0\tpipe-close-race\t1.2{rng.randint(5, 7)}.0\t"
                f"{cpus}\t{rng.choice(['compact', 'spread'])}\t0\t{agent}\t{config + 1}\t"
                f"{rng.randint(1000, 9999)}\t{rng.uniform(10, 600):.1f}\t\t{{}}\tf\n"
            )
        with conn.cursor().copy(
            "COPY runs (id, job_id, attempt, status, priority, scenario, go_version, cpus,"
            " affinity, repeat_index, agent_id, hardware_config_id, iterations, duration_s,"
            " reason, selector, cancel_requested) FROM STDIN"
        ) as copy:
            copy.write(buf.getvalue())
        conn.execute("ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--configs", type=int, default=2000)
    args = parser.parse_args()
    with scratch_database("reprofarm_bench_explain") as url:
        upgrade(url)
        started = time.perf_counter()
        load(url, args.runs, args.configs)
        print(
            f"loaded {args.runs} runs on {args.configs} configurations in "
            f"{time.perf_counter() - started:.1f}s"
        )
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        with transaction(sessions) as s:
            cells = rollups.rebuild(s)
        print(f"rollups rebuilt: {cells} cells")
        totals, queries = [], []
        for _ in range(3):
            with transaction(sessions) as s:
                started = time.perf_counter()
                views.rates(s, group_by=explain._RUN_KEYS, where=views.RunFilter())
                queries.append(time.perf_counter() - started)
                started = time.perf_counter()
                report = explain.explain(s)
                totals.append(time.perf_counter() - started)
        engine.dispose()
    total, query = statistics.median(totals), statistics.median(queries)
    print(
        f"explain: {total * 1000:.0f} ms (rates query {query * 1000:.0f} ms, model "
        f"{(total - query) * 1000:.0f} ms) over {report.cells} cells; target < 2000 ms"
    )
    for f in report.factors:
        effects = ", ".join(
            f"{lv.level}: {lv.odds_ratio:.2f} [{lv.ci95_low:.2f}, {lv.ci95_high:.2f}]"
            for lv in f.levels
            if not lv.reference and lv.odds_ratio is not None
        )
        print(f"  {f.factor:<12} q={f.q:.3g}  {effects[:150]}")
    for a in report.aliasing:
        print(f"  aliased: {a.says}")
    print(
        json.dumps(
            {
                "runs": args.runs,
                "configs": args.configs,
                "factors": len(report.factors),
                "explain_ms": round(total * 1000, 1),
                "rates_query_ms": round(query * 1000, 1),
                "model_ms": round((total - query) * 1000, 1),
                "found": [f.factor for f in report.factors if f.q is not None and f.q < 0.05],
            }
        )
    )


if __name__ == "__main__":
    main()
