"""Load from many simulated agents on a farm of real processes: N api processes,
a Celery worker and beat, on a scratch Postgres database and a private Redis.

    uv run python bench/agents_load.py --agents 200 --seconds 60
    uv run python bench/agents_load.py --agents 10000 --seconds 300 --api-processes 2
    uv run python bench/agents_load.py --ingest --agents 32 --seconds 60

Agents (one connection each, spread round-robin over the api processes,
registrations ramped over --ramp-s) do what real agents do:
register with their own machine secret and one of --hardware-configs hardware
configurations, long-poll for leases, fetch the build once, heartbeat while a
run lasts, upload a goroutine dump, post the result. A submitter keeps about
--running-fraction of them busy; dashboards read stats, jobs and a page of 100 agents.
Builds are recorded without Go, so no job ever compiles.

The agents run in --generators processes (load_generators.py: agent i in
generator i mod K, each with its own event loop); this process starts the farm,
samples its processes' CPU, runs the submitter and dashboards, and merges what
the generators measured. A run is `valid` only if no process's event loop
lagged: the lag reported is the largest of the per-process p99s.

--ingest measures result ingestion instead: the agents register, then each
leases --ingest-batch runs and posts their results in one call (POST
/agents/me/results), as fast as the api answers, for --seconds,
while about --ingest-backlog ready runs wait (jobs of half that many runs are
added straight into the database as they are taken: the lease query's cost
grows with the ready runs, see docs/operations.md).

The last line is one JSON object; docs/operations.md ("Load: simulated agents")
defines its fields.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from load_agent import TLS, Load
from load_farm import POOL, LoadFarm, running_farm
from load_fleet import FleetSpec
from load_generators import Generators, default_generators, running_generators
from load_metrics import ProcSampler, bare_cpu_ms, loop_lag, own_cpu_s
from load_report import report

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fixtures import PG_ADMIN

REPO = Path(__file__).resolve().parent.parent

ARTIFACT = (
    REPO / "analyzer/tests/corpus/goroutines/hangtest-pipe-close-race-sigquit-go1.27-linux.txt"
)
SCENARIO = "pipe-close-race"
TARGETS = ["windows/amd64", "windows/arm64"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=200, help="simulated agents")
    p.add_argument("--seconds", type=float, default=60, help="length of the load (after start-up)")
    p.add_argument("--api-processes", type=int, default=2, help="`reprofarm api` processes")
    p.add_argument("--running-fraction", type=float, default=0.1, help="agents kept busy")
    p.add_argument("--heartbeat-s", type=float, default=15, help="heartbeat period; lease = 4x")
    p.add_argument("--run-s", default="30,90", help="simulated run length: MIN,MAX seconds")
    p.add_argument(
        "--wait-s", type=float, default=50, help="lease long-poll wait (the agent's default)"
    )
    p.add_argument(
        "--ramp-s", type=float, help="spread registrations over this (default N/10, <= S/2)"
    )
    p.add_argument("--hardware-configs", type=int, default=300, help="distinct hardware (<=336)")
    p.add_argument("--hang-fraction", type=float, default=0.05, help="results that are hangs")
    p.add_argument("--submit-every", type=float, default=5, help="submitter period, seconds")
    p.add_argument("--dashboards", type=int, default=2, help="dashboards reading in a loop")
    p.add_argument("--dashboard-every", type=float, default=5, help="their refresh period")
    p.add_argument("--ingest", action="store_true", help="lease and report as fast as possible")
    p.add_argument(
        "--ingest-backlog", type=int, default=2000, help="ingest: ready runs kept waiting"
    )
    p.add_argument(
        "--ingest-batch",
        type=int,
        default=10,
        help="ingest: runs an agent leases before it posts their results in one "
        "POST /agents/me/results (1: each alone, POST /runs/{id}/result)",
    )
    p.add_argument(
        "--generators",
        type=int,
        help="processes the agents are split over (default: one per 2,500 agents, rounded up)",
    )
    p.add_argument("--keep-logs", type=Path, help="copy the farm's process logs here")
    args = p.parse_args()
    if args.generators is None:
        args.generators = default_generators(args.agents)
    if not 1 <= args.generators <= args.agents:
        p.error(f"--generators must be between 1 and --agents ({args.agents})")
    lo, hi = (float(x) for x in args.run_s.split(","))
    args.run_range = (lo, hi)
    if args.ramp_s is None:
        # 10 registrations/s: faster ones (25/s) stalled the api on this 2-core
        # machine (docs/operations.md, "Load: simulated agents").
        args.ramp_s = min(args.agents / 10, args.seconds / 2)
    return args


def code_fingerprint() -> str:
    """A hash of the controller's sources (api, db, worker) as they are on disk
    now, to tell which code a set of figures measured (no git needed)."""
    digest = hashlib.sha256()
    for package in ("api/reprofarm_api", "db/reprofarm_db", "worker/reprofarm_worker"):
        for path in sorted((REPO / package).rglob("*.py")):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def raise_fd_limit(args: argparse.Namespace) -> int:
    """Each agent holds a socket in its generator process and one in an api
    process: raise the soft limit to the hard one (the api and generator
    processes, all started later, inherit it), and refuse to start when the
    busiest of them cannot hold its share plus 500 for everything else."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    share = max(math.ceil(args.agents / n) for n in (args.generators, args.api_processes))
    if share + 500 > hard:
        sys.exit(
            f"{args.agents} agents over {args.generators} generator and {args.api_processes} api "
            f"processes need ~{share + 500} file descriptors in one; the hard limit is {hard}"
        )
    return hard


def fleet_spec(args: argparse.Namespace, lf: LoadFarm) -> FleetSpec:
    return FleetSpec(
        agents=args.agents,
        api_urls=lf.api_urls,
        enrollment=lf.farm.enroll,
        hardware_configs=args.hardware_configs,
        ramp_s=args.ramp_s,
        wait_s=args.wait_s,
        heartbeat_s=args.heartbeat_s,
        run_s=args.run_range,
        hang_fraction=args.hang_fraction,
        artifact=ARTIFACT.read_bytes(),
        ingest=args.ingest,
        ingest_batch=args.ingest_batch,
    )


async def submitter(
    load: Load, gens: Generators, url: str, admin: str, target: int, every: float
) -> None:
    """Every ``every`` s, submit a job of as many runs as it takes to keep
    ``target`` agents busy: target - busy - (submitted runs not leased yet)."""
    submitted = 0
    async with httpx.AsyncClient(base_url=url, verify=TLS, timeout=120) as client:
        while not load.over:
            deficit = target - gens.busy - (submitted - gens.leased_first_attempts)
            if deficit > 0 and gens.registered:
                repeats = min(deficit, 10_000)
                body = {"scenario": SCENARIO, "pools": [POOL], "repeats": repeats, "duration_s": 60}
                await _timed(load, client, "submit", "POST", "/api/v1/jobs", admin, json=body)
                submitted += repeats
            await asyncio.sleep(every)


async def dashboard(load: Load, url: str, viewer: str, every: float) -> None:
    async with httpx.AsyncClient(base_url=url, verify=TLS, timeout=120) as client:
        while not load.over:
            for endpoint, path in (
                ("stats", "/api/v1/stats?group_by=hardware"),
                ("jobs", "/api/v1/jobs"),
                ("agents", "/api/v1/agents/page?limit=100"),
            ):
                await _timed(load, client, endpoint, "GET", path, viewer)
            await asyncio.sleep(every)


async def _timed(
    load: Load,
    client: httpx.AsyncClient,
    endpoint: str,
    method: str,
    path: str,
    token: str,
    **kw: Any,
) -> None:
    start = time.perf_counter()
    try:
        r = await client.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)
    except httpx.HTTPError as exc:
        ms = (time.perf_counter() - start) * 1000
        load.rec.failed(endpoint, type(exc).__name__, ms, repr(exc.__context__ or exc))
        return
    ms = (time.perf_counter() - start) * 1000
    if r.status_code >= 300:
        load.rec.failed(endpoint, str(r.status_code), ms, r.text)
    else:
        load.rec.ok(endpoint, ms)


async def top_up(gens: Generators, lf: LoadFarm, backlog: int) -> None:
    """Ingest: add a job of backlog/2 ready runs whenever fewer than backlog/2 of
    those seeded are still waiting (seeded minus leased, as the agents count)."""
    seeded = 2 * (backlog // 2)
    while True:
        await asyncio.sleep(0.1)
        if seeded - gens.leased_first_attempts < backlog // 2:
            await asyncio.to_thread(lf.seed_ready_runs, backlog // 2, scenario=SCENARIO)
            seeded += backlog // 2


async def sample_every(sampler: ProcSampler, period: float) -> None:
    while True:
        await asyncio.to_thread(sampler.sample)
        await asyncio.sleep(period)


async def once_registered(
    gens: Generators, load: Load, sampler: ProcSampler, total: int, mark: dict[str, float]
) -> None:
    """Note the api processes' CPU and the requests made when the last agent has
    registered: the window after it is the steady state (long-polls and heartbeats),
    without the registration storm, which costs far more per request. (The
    generators' counts reach this process within 0.1 s: a few requests early.)"""
    while gens.registered < total:
        await asyncio.sleep(0.2)
    await asyncio.to_thread(sampler.sample)
    mark["api_cpu_s"] = sum(sampler.cpu_s(n) for n in sampler.pids if n.startswith("api-"))
    mark["requests"] = gens.requests + load.rec.requests


async def progress(gens: Generators, load: Load, started: float, total: int) -> None:
    while True:
        await asyncio.sleep(10)
        errors = gens.errors + sum(load.rec.errors.values())
        print(
            f"t={time.monotonic() - started:.0f}s registered {gens.registered}/{total} "
            f"busy {gens.busy} results {gens.results} "
            f"requests {gens.requests + load.rec.requests} errors {errors}",
            file=sys.stderr,
            flush=True,
        )


@dataclass
class _Window:
    """The measured window, as this process saw it open."""

    start: float  # time.monotonic()
    cpu_s: float  # this process's CPU then
    requests: int  # every process's requests then


async def drive(args: argparse.Namespace, lf: LoadFarm) -> dict[str, Any]:
    """Start the generator processes (the agents) and, here, the submitter and
    dashboards or the ingest top-up; wait out the window, stop everything,
    merge what the generators measured, and report. This process only
    coordinates: the agents' loops and their latencies are the generators'."""
    fleet = fleet_spec(args, lf)
    load = fleet.new_load()  # this process's requests (submits, dashboards), then everyone's
    api_pids = [pid for name, pid in lf.pids().items() if name.startswith("api-")]
    bare_ms = await bare_cpu_ms(lf.api_urls, api_pids)
    print(f"bare: {bare_ms:.2f} ms of api CPU per GET /health", file=sys.stderr, flush=True)
    sampler = ProcSampler(pids=lf.pids(), database=lf.database, admin_url=PG_ADMIN)
    lags: dict[str, list[float]] = {"parent": []}
    steady: dict[str, float] = {}
    with running_generators(fleet, args.generators) as gens:
        await gens.ready()
        started = time.monotonic()
        gens.begin(started)
        background = [
            asyncio.create_task(sample_every(sampler, 1.0)),
            asyncio.create_task(progress(gens, load, started, args.agents)),
            asyncio.create_task(loop_lag(lags["parent"])),
        ]
        window = await _open_window(args, lf, gens, load, sampler, background, steady)
        while not load.over and not (args.ingest and gens.finished):
            gens.check_alive()
            await asyncio.sleep(0.2)
        window_end, cpu_end = time.monotonic(), own_cpu_s()
        gens.stop()
        for t in background:
            t.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await asyncio.to_thread(sampler.sample)
        reports = await gens.collect()
    generator_cpu = {"parent": cpu_end - window.cpu_s}
    for k, got in enumerate(reports):
        load.absorb(got.load)
        lags[f"generator-{k}"] = got.lags
        generator_cpu[f"generator-{k}"] = got.cpu_s
    window_end = min(window_end, load.exhausted_at or math.inf)
    try:
        lost: dict[str, int] | None = await asyncio.to_thread(_finish_leases, lf.database_url, load)
    except psycopg.OperationalError as exc:  # a shared Postgres restarted under us
        print(f"no lease-run latencies nor lost leases: {exc}", file=sys.stderr)
        lost = None
    sampler.close()
    return report(
        args,
        load,
        sampler,
        lost=lost,
        window_s=window_end - window.start,
        requests=load.rec.requests - window.requests,
        generator_cpu=generator_cpu,
        lags=lags,
        bare_cpu_ms=bare_ms,
        steady=steady,
    )


async def _open_window(
    args: argparse.Namespace,
    lf: LoadFarm,
    gens: Generators,
    load: Load,
    sampler: ProcSampler,
    background: list[asyncio.Task[None]],
    steady: dict[str, float],
) -> _Window:
    """Agents mode: the window opens with the ramp, and the submitter and
    dashboards start. Ingest: it opens once the agents have registered and the
    backlog is seeded."""
    if args.ingest:
        await _ingest_start(args, lf, gens, background)
        await asyncio.to_thread(sampler.restart)  # the window's CPU starts here
        window = _Window(time.monotonic(), own_cpu_s(), gens.requests + load.rec.requests)
    else:
        window = _Window(time.monotonic(), own_cpu_s(), 0)
        target = max(1, round(args.running_fraction * args.agents))
        background.append(
            asyncio.create_task(once_registered(gens, load, sampler, args.agents, steady))
        )
        background.append(
            asyncio.create_task(
                submitter(load, gens, lf.api_urls[0], lf.farm.admin, target, args.submit_every)
            )
        )
        for d in range(args.dashboards):
            url = lf.api_urls[d % len(lf.api_urls)]
            background.append(
                asyncio.create_task(dashboard(load, url, lf.viewer, args.dashboard_every))
            )
    load.deadline = window.start + args.seconds
    gens.go(load.deadline)
    return window


async def _ingest_start(
    args: argparse.Namespace, lf: LoadFarm, gens: Generators, background: list[asyncio.Task[None]]
) -> None:
    """Wait for the registrations (at most ramp + 120 s: an api that cannot
    register them all is measured with those it did), then seed the backlog."""
    give_up = time.monotonic() + args.ramp_s + 120
    while gens.registered < args.agents and time.monotonic() < give_up:
        gens.check_alive()
        await asyncio.sleep(0.2)
    if gens.registered < args.agents:
        print(f"only {gens.registered}/{args.agents} agents registered", file=sys.stderr)
    for _ in range(2):
        await asyncio.to_thread(lf.seed_ready_runs, args.ingest_backlog // 2, scenario=SCENARIO)
    background.append(asyncio.create_task(top_up(gens, lf, args.ingest_backlog)))


def _finish_leases(database_url: str, load: Load) -> dict[str, int]:
    """From the database, at the end: when each leased run became ready (for the
    lease-run latency) and which runs were lost (their lease expired)."""
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        ready: dict[int, float] = dict(
            conn.execute(
                "SELECT id, extract(epoch FROM ready_at)::float8 FROM runs WHERE id = ANY(%s)",
                ([seen.run_id for seen in load.leases],),
            ).fetchall()
        )
        lost = [r for (r,) in conn.execute("SELECT id FROM runs WHERE status = 'lost'")]
    for seen in load.leases:
        became = ready.get(seen.run_id)
        if became is None:
            continue
        asked = max(seen.sent, became)
        load.rec.latencies["lease-run"].append((seen.received - asked) * 1000)
        load.rec.latencies["ready-claim"].append(max(0.0, seen.claimed - asked) * 1000)
        load.rec.latencies["claim-reply"].append((seen.received - seen.claimed) * 1000)
    abandoned = sum(1 for r in lost if r in load.abandoned)
    return {"lost": len(lost), "given_up": abandoned, "unexpected": len(lost) - abandoned}


def main() -> None:
    args = parse_args()
    args.code = code_fingerprint()  # before the api processes start
    raise_fd_limit(args)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.monotonic()
        try:
            with running_farm(
                root,
                api_processes=args.api_processes,
                lease_s=4 * args.heartbeat_s,
                targets=TARGETS,
                max_runs_per_job=10_000,
            ) as lf:
                pids = ", ".join(f"{n} {p}" for n, p in lf.pids().items())
                print(
                    f"farm up in {time.monotonic() - t:.0f}s ({pids}); database {lf.database}",
                    file=sys.stderr,
                    flush=True,
                )
                summary = asyncio.run(drive(args, lf))
        finally:
            if args.keep_logs:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for log in root.glob("*.log"):
                    (args.keep_logs / log.name).write_bytes(log.read_bytes())
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
