"""The dashboard's api calls at the farm's real size, on the real Postgres.

    uv run python bench/dashboard_queries.py [--runs 1000000] [--hardware 2000] [--agents 1000]
    uv run python bench/dashboard_queries.py --database-url URL   # an already loaded database

Creates a scratch database, loads a farm with COPY (hardware configurations, agents of
which some are offline, busy or waiting for a reboot, jobs with one of the largest size
allowed, runs in every state over 90 days, labels and signatures, dumps with their
analyses), then calls, through the real app, each request a page of the dashboard makes
and prints the median and the worst of several, then one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from reprofarm_api.app import create_app
from reprofarm_db import rollups, tokens
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.migrate import upgrade
from reprofarm_db.settings import ControllerSettings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fixtures import scratch_database

BIG_JOB = 1
"""Job 1 has 10,000 runs (the most a job may have): the job page's worst case."""
BIG_JOB_RUNS = 10_000
SCENARIOS = ("pipe-close-race", "socket-pipe-mix", "control-deadlock")
GO_VERSIONS = ("1.25.5", "1.26.4", "1.27.3")
CPUS = ("1", "2", "4", "8", r"\N")
AFFINITIES = ("compact", "spread", "pcores")
MODELS = (
    ("Snapdragon X Elite X1E78100", "arm64", 12, "none"),
    ("Snapdragon X Plus X1P42100", "arm64", 8, "none"),
    ("Apple M2 Pro", "arm64", 8, "parallels"),
    ("Intel Core i7-1365U", "amd64", 12, "none"),
    ("Intel Xeon Gold 6338", "amd64", 8, "hyperv"),
    ("AMD EPYC 7763", "amd64", 4, "kvm"),
    ("AMD Ryzen 9 7950X", "amd64", 32, "none"),
    ("Intel Core i5-8250U", "amd64", 8, "vmware"),
)
SIGNATURES = (
    ("cancelioex-sync-io", "cancelioex-sync-io:internal/poll.(*FD).Read<-syscall.ReadFile"),
    ("cancelioex-sync-io", "cancelioex-sync-io:internal/poll.(*FD).Write<-syscall.WriteFile"),
    ("close-waits-sync-io", "close-waits-sync-io:os.(*File).Close<-internal/poll.(*FD).Close"),
    ("control-deadlock", "control-deadlock:sync.(*Mutex).Lock x2"),
    ("other-hang", "other-hang:unreadable-dumps"),
)


def _key(signature: str) -> str:
    return hashlib.sha256(signature.encode()).hexdigest()[:16]


def _copy(conn: psycopg.Connection[Any], table: str, columns: str, rows: Iterator[str]) -> None:
    buf = io.StringIO()
    buf.writelines(rows)
    buf.seek(0)
    with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        copy.write(buf.read())


@dataclass
class Shape:
    runs: int
    hardware: int
    agents: int

    @property
    def jobs(self) -> int:
        return max(2, self.runs // 500)


def _pool(agent: int) -> str:
    return "windows-arm64" if MODELS[agent % len(MODELS)][1] == "arm64" else "windows-x64"


def _hardware_rows(shape: Shape, now: datetime) -> Iterator[str]:
    for i in range(1, shape.hardware + 1):
        model, arch, cpus, hypervisor = MODELS[i % len(MODELS)]
        build = f"10.0.{22621 + (i // len(MODELS)) % 900}.{i % 4000}"
        description = json.dumps({"os_version": build, "cpu_model": model, "arch": arch})
        first = (now - timedelta(days=120 - i % 100)).isoformat()
        yield (
            f"{i}\t{hashlib.sha256(str(i).encode()).hexdigest()}\twindows\t{build}\t{arch}\t"
            f"{model}\t{cpus}\t{cpus // 2 or 1}\t{hypervisor}\t{description}\t{first}\n"
        )


def _agent_rows(shape: Shape, now: datetime, busy: dict[int, int]) -> Iterator[str]:
    rng = random.Random(2)
    for i in range(1, shape.agents + 1):
        _model, arch, cpus, _hv = MODELS[i % len(MODELS)]
        offline = rng.random() < 0.1
        seen = now - (timedelta(hours=rng.randint(1, 300)) if offline else timedelta(seconds=5))
        reboot = rng.random() < 0.02
        facts = json.dumps({"arch": arch, "os": "windows"})
        pool = _pool(i)
        run = busy.get(i, r"\N")
        yield (
            f'{i}\tlab-{i:04d}\t["{pool}"]\t{i}\twindows/{arch}\t{cpus}\t{facts}\t0.1.0\t'
            f"{(now - timedelta(days=100)).isoformat()}\t{seen.isoformat()}\t"
            f"{'t' if reboot else 'f'}\t{run}\t{rng.randint(0, 3)}\n"
        )


def _run_rows(shape: Shape, now: datetime, busy: dict[int, int]) -> Iterator[str]:
    """Runs over 90 days, the oldest first; a hardware configuration above the agent
    count is an agent's earlier one (an OS update changes the fingerprint)."""
    rng = random.Random(1)
    states = ("passed", "hung", "failed", "error", "lost", "cancelled", "expired")
    weights = (86, 6, 2, 2, 1, 2, 1)
    old_configs = shape.hardware - shape.agents
    for i in range(1, shape.runs + 1):
        job = (
            BIG_JOB
            if i <= BIG_JOB_RUNS
            else 2 + (i - BIG_JOB_RUNS) * (shape.jobs - 1) // (shape.runs - BIG_JOB_RUNS + 1)
        )
        age = 1 - i / shape.runs
        agent = rng.randint(1, shape.agents)
        config = agent
        if agent <= old_configs and rng.random() < age:
            config = shape.agents + agent
        status = rng.choices(states, weights)[0]
        if (job == BIG_JOB and rng.random() < 0.05) or i > shape.runs - 2000:
            status = rng.choice(("ready", "leased", "pending"))
        finished = now - timedelta(days=90 * age, seconds=rng.randint(0, 3600))
        leased = finished - timedelta(seconds=rng.randint(10, 900))
        label = signature = key = r"\N"
        if status == "hung" and rng.random() < 0.9:
            label, signature = SIGNATURES[rng.choices(range(5), (50, 20, 10, 15, 5))[0]]
            key = _key(signature)
        elif status in ("passed", "failed"):
            label = signature = "no-hang"
            key = _key(signature)
        open_ = status in ("ready", "pending", "leased")
        if status == "leased":
            busy.setdefault(agent, i)
        yield (
            "\t".join(
                (
                    str(i),
                    str(job),
                    "1",
                    status,
                    "0",
                    SCENARIOS[rng.choices(range(3), (50, 30, 20))[0]],
                    GO_VERSIONS[rng.randint(0, 2)],
                    rng.choice(CPUS),
                    rng.choice(AFFINITIES),
                    "0",
                    _pool(agent),
                    r"\N" if status in ("ready", "pending") else str(agent),
                    r"\N" if status in ("ready", "pending") else str(config),
                    "0" if open_ else str(rng.randint(1000, 2_000_000)),
                    "0" if open_ else f"{rng.uniform(10, 600):.1f}",
                    "stall" if status == "hung" else "",
                    "{}",
                    "f",
                    r"\N" if status in ("ready", "pending") else leased.isoformat(),
                    r"\N" if open_ else finished.isoformat(),
                    label,
                    signature,
                    key,
                )
            )
            + "\n"
        )


def _artifact_rows(conn: psycopg.Connection[Any]) -> tuple[Iterator[str], Iterator[str]]:
    """Three artifacts per hung run (goroutines, minidump, stdout), an analysis per dump."""
    hung = conn.execute(
        "SELECT id, label, signature FROM runs WHERE status = 'hung' ORDER BY id"
    ).fetchall()
    artifacts, analyses = [], []
    artifact_id = 0
    for run_id, label, signature in hung:
        for name, kind, size in (
            ("goroutines-1-1-stall.txt", "goroutines", 40_000),
            ("process-1.dmp.gz", "minidump", 6_900_000),
            ("stdout.jsonl", "stdout", 9_000),
        ):
            artifact_id += 1
            sha = hashlib.sha256(f"{run_id}{name}".encode()).hexdigest()
            artifacts.append(
                f"{artifact_id}\t{run_id}\t{name}\t{kind}\t{sha}\t{size}\t{size}\tt\t"
                f"/srv/artifacts/{sha}\t2026-11-01T00:00:00+00:00\n"
            )
            if kind != "stdout" and label is not None:
                report = json.dumps(
                    {"kind": kind, "label": label, "signature": signature, "rules_version": 4}
                )
                analyses.append(
                    f"{artifact_id}\t{artifact_id}\t{run_id}\t{kind}\t{label}\t{signature}\t4\t"
                    f"{report}\t\\N\t2026-11-01T00:00:00+00:00\n"
                )
    return iter(artifacts), iter(analyses)


def load(url: str, shape: Shape) -> None:
    now = datetime.now(UTC)
    busy: dict[int, int] = {}
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        # Consistent by construction: foreign-key triggers off for the load (a million
        # row-by-row checks would take minutes).
        conn.execute("SET session_replication_role = replica")
        _copy(
            conn,
            "hardware_configs",
            "id, fingerprint, os, os_version, arch, cpu_model, logical_cpus, physical_cores,"
            " hypervisor, description, first_seen",
            _hardware_rows(shape, now),
        )
        # Agents before runs (foreign keys), with their busy run set afterwards.
        _copy(
            conn,
            "agents",
            "id, name, pools, hardware_config_id, target, logical_cpus, facts, agent_version,"
            " registered_at, last_seen, needs_reboot, current_run_id, reboots",
            _agent_rows(shape, now, {}),
        )
        _copy(
            conn,
            "jobs",
            "id, spec, status, skipped, targets, priority, created_at",
            (
                f'{j}\t{{"scenario": "{SCENARIOS[j % 3]}", "repeats": 10}}\t'
                f"{'running' if j in (BIG_JOB, shape.jobs) else 'done'}\t[]\t[]\t0\t"
                f"{(now - timedelta(days=90 * (1 - j / shape.jobs))).isoformat()}\n"
                for j in range(1, shape.jobs + 1)
            ),
        )
        _copy(
            conn,
            "runs",
            "id, job_id, attempt, status, priority, scenario, go_version, cpus, affinity,"
            " repeat_index, pool, agent_id, hardware_config_id, iterations, duration_s, reason,"
            " selector, cancel_requested, leased_at, finished_at, label, signature,"
            " signature_key",
            _run_rows(shape, now, busy),
        )
        with conn.cursor() as cur:
            cur.executemany(
                "UPDATE agents SET current_run_id = %s WHERE id = %s",
                [(run, agent) for agent, run in busy.items()],
            )
        artifacts, analyses = _artifact_rows(conn)
        _copy(
            conn,
            "artifacts",
            "id, run_id, name, kind, sha256, bytes, received, complete, path, created_at",
            artifacts,
        )
        _copy(
            conn,
            "analyses",
            "id, artifact_id, run_id, kind, label, signature, rules_version, report, error,"
            " analyzed_at",
            analyses,
        )
        for table in ("hardware_configs", "agents", "jobs", "runs", "artifacts", "analyses"):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT max(id) FROM {table}))"
            )
        conn.execute("ANALYZE")
    engine = make_engine(url)
    with transaction(make_sessionmaker(engine)) as session:
        rollups.rebuild(session)  # as `reprofarm db rebuild-rollups` does after a bulk load
    engine.dispose()


def _settings(url: str, data_dir: Path) -> ControllerSettings:
    return ControllerSettings(data_dir=data_dir, database_url=url)


@dataclass
class Call:
    page: str
    name: str
    path: str
    kept: bool = False  # asked again with the same data: the kept answer


def calls(url: str) -> list[Call]:
    """The requests each page makes (the overview's in parallel, from the browser)."""
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        hung_run = conn.execute(
            "SELECT run_id FROM artifacts WHERE kind = 'goroutines' ORDER BY id DESC LIMIT 1"
        ).fetchone()[0]
        artifact = conn.execute(
            "SELECT artifact_id FROM analyses ORDER BY id DESC LIMIT 1"
        ).fetchone()[0]
        fingerprint = conn.execute(
            "SELECT h.fingerprint FROM runs r JOIN hardware_configs h"
            " ON h.id = r.hardware_config_id WHERE r.id = %s",
            (hung_run,),
        ).fetchone()[0]
    week = (datetime.now(UTC) - timedelta(days=7)).isoformat().replace("+00:00", "Z")
    v = "/api/v1/views"
    return [
        Call("every page", "live (changed)", "/api/v1/live"),
        Call("every page", "whoami", "/api/v1/whoami"),
        Call("overview", "map by CPU count", f"{v}/overview"),
        Call("another tab", "map by CPU count, data unchanged", f"{v}/overview", kept=True),
        Call("overview", "Go comparison", f"{v}/go-comparison"),
        Call("overview", "latest jobs", f"{v}/jobs?limit=5"),
        Call("overview", "map, scenario filter", f"{v}/overview?scenario=pipe-close-race"),
        Call("overview", "map, CPUs x affinity", f"{v}/overview?columns=cpus,affinity"),
        Call("overview", "map, label filter", f"{v}/overview?label=cancelioex-sync-io"),
        Call("overview", "map, last 7 days", f"{v}/overview?since={week}"),
        Call("overview", "Go comparison, 7 days", f"{v}/go-comparison?since={week}"),
        Call("job", "job and its cells (10,000 runs)", f"{v}/jobs/{BIG_JOB}"),
        Call("job", "runs page 1", f"{v}/jobs/{BIG_JOB}/runs"),
        Call("job", "runs by iterations", f"{v}/jobs/{BIG_JOB}/runs?sort=iterations&desc=true"),
        Call("job", "hung runs", f"{v}/jobs/{BIG_JOB}/runs?status=hung"),
        Call("jobs", "jobs page", f"{v}/jobs?limit=25"),
        Call("run", "run view", f"{v}/runs/{hung_run}"),
        Call("run", "analysis", f"/api/v1/artifacts/{artifact}/analysis"),
        Call("hardware", "hardware view", f"{v}/hardware/{fingerprint}"),
        Call("hardware", "Go comparison there", f"{v}/go-comparison?hardware={fingerprint}"),
        Call("agents", "agents (1,000)", "/api/v1/agents"),
        Call("signatures", "buckets", "/api/v1/signatures"),
    ]


@contextmanager
def _client(url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    app = create_app(_settings(url, Path(tempfile.mkdtemp())), relay=False)
    with TestClient(app) as client:
        with transaction(app.state.sessions) as s:
            token = tokens.create(s, name="bench", role="viewer")
        yield client, {"Authorization": f"Bearer {token}"}


def measure(url: str, repeat: int) -> dict[str, dict[str, float]]:
    figures: dict[str, dict[str, float]] = {}
    with _client(url) as (client, headers):
        for call in calls(url):
            samples = []
            for i in range(repeat + 1):
                # A parameter the api ignores makes every sample a new question: the
                # overview's answers are kept until the runs change, and this measures
                # the computation, not the kept answer (that is "another tab" below).
                bust = "" if call.kept else ("&" if "?" in call.path else "?") + f"sample={i}"
                started = time.perf_counter()
                r = client.get(call.path + bust, headers=headers)
                elapsed = time.perf_counter() - started
                assert r.status_code == 200, f"{call.path}: {r.status_code} {r.text[:300]}"
                if i:  # the first call warms the connection pool and caches
                    samples.append(elapsed * 1000)
            name = f"{call.page}: {call.name}"
            figures[name] = {
                "median_ms": round(statistics.median(samples)),
                "worst_ms": round(max(samples)),
                "bytes": len(r.content),
            }
            print(
                f"{name:<48} median {figures[name]['median_ms']:>6} ms"
                f"  worst {figures[name]['worst_ms']:>6} ms  {len(r.content):>8} bytes"
            )
    return figures


def _baseline(url: str) -> float:
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        samples = []
        for _ in range(3):
            started = time.perf_counter()
            conn.execute("SELECT count(*) FROM runs").fetchone()
            samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--hardware", type=int, default=2_000)
    parser.add_argument("--agents", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database-url", help="measure this already loaded database")
    args = parser.parse_args()
    shape = Shape(runs=args.runs, hardware=args.hardware, agents=args.agents)
    with contextlib.ExitStack() as stack:
        url = args.database_url
        if url is None:
            url = stack.enter_context(scratch_database("reprofarm_dashboard_bench"))
            upgrade(url)
            started = time.perf_counter()
            load(url, shape)
            print(f"loaded {shape} in {time.perf_counter() - started:.0f} s")
        base = _baseline(url)
        print(f"baseline: SELECT count(*) FROM runs takes {base:.0f} ms here, now")
        figures = measure(url, args.repeat)
    # A page's requests one after another (the browser sends the overview's in parallel).
    pages: dict[str, float] = {}
    for name, f in figures.items():
        page = name.split(":")[0]
        if "filter" not in name and "7 days" not in name and "x affinity" not in name:
            pages[page] = pages.get(page, 0) + f["median_ms"]
    summary = {
        "shape": vars(shape),
        "count_ms": round(base),
        "load_avg": [round(x, 1) for x in os.getloadavg()],
        "page_ms": pages,
        "calls": figures,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
