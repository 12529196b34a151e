"""The report agents_load.py prints: the latency table, throughput, errors,
lost leases, the processes' CPU and memory, and the closing JSON line (its
fields are defined in docs/operations.md, "Load: simulated agents")."""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

from load_agent import Load
from load_metrics import ProcSampler, percentile

MAX_LAG_P99_MS = 50.0
"""A run whose generator woke this late (p99) measured its own delay too: invalid."""


def lag_p99s(lags: dict[str, list[float]]) -> dict[str, float]:
    """Each process's event-loop lag p99 (ms), by process name."""
    return {name: percentile(sorted(values), 99) for name, values in lags.items()}


def worst_lag_p99(lags: dict[str, list[float]]) -> float:
    """The largest of the processes' lag p99s (NaN if none measured any): a run
    is valid only if every process kept up, and a p99 over the union of the
    processes' samples would let three quiet generators hide a fourth that
    lagged (its agents' latencies carry its delay all the same)."""
    measured = [p99 for p99 in lag_p99s(lags).values() if not math.isnan(p99)]
    return max(measured, default=math.nan)


ENDPOINTS = [
    "register",
    "lease-run",
    "lease-rtt",
    "lease-204",
    "lease",
    "heartbeat",
    "binary",
    "upload",
    "result",
    "results",
    "submit",
    "stats",
    "jobs",
    "agents",
]


def report(
    args: argparse.Namespace,
    load: Load,
    sampler: ProcSampler,
    *,
    lost: dict[str, int] | None,
    window_s: float,
    requests: int,
    generator_cpu: dict[str, float],
    lags: dict[str, list[float]],
    bare_cpu_ms: float,
    steady: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Print the report; return the summary (the JSON line). ``generator_cpu``
    (CPU seconds over the window) and ``lags`` (ms) are by process: the parent
    and each generator."""
    _print_requests(args, load, lost=lost, window_s=window_s, requests=requests)
    others = _print_processes(sampler, window_s=window_s, generator_cpu=generator_cpu, lags=lags)
    api_names = [n for n in sampler.pids if n.startswith("api-")]
    api_cpu_ms = sum(sampler.cpu_s(n) for n in api_names) * 1000 / max(1, requests)
    # The idle processes' own CPU is taken off the bare figure: it can come out as 0.
    ratio = f"{api_cpu_ms / bare_cpu_ms:.1f}x" if bare_cpu_ms > 0 else "too small to compare"
    print(
        f"api CPU per request: {api_cpu_ms:.2f} ms under this load, {bare_cpu_ms:.2f} ms on "
        f"GET /health (the same processes, before the load): {ratio}"
    )
    steady_ms = _steady_cpu_ms(sampler, api_names, steady or {}, total_requests=requests)
    if steady_ms is not None:
        print(
            f"api CPU per request once every agent had registered (long-polls, heartbeats, "
            f"results, dashboards): {steady_ms:.2f} ms"
        )
    # In ingest mode the parent times no request (no submitter, no dashboards):
    # its lag is printed, not judged.
    judged = {k: v for k, v in lags.items() if not (args.ingest and k == "parent")}
    lag_p99 = worst_lag_p99(judged)
    valid = lag_p99 <= MAX_LAG_P99_MS
    if not valid:
        print(
            f"INVALID RUN: a generator process's event-loop lag p99 is {lag_p99:.0f} ms (> "
            f"{MAX_LAG_P99_MS:.0f} ms): its latencies include its own delay; run fewer agents, "
            "more --generators, or on a quieter machine"
        )
    rec = load.rec
    # The headline: what an agent waits for, failures included (with the time
    # they took to fail): heartbeats, and lease replies that were not an empty
    # long-poll (a run, from when it was ready; or a failure, from the request).
    headline = {
        "heartbeat": rec.latencies.get("heartbeat", []) + rec.failed_ms.get("heartbeat", []),
        "lease": rec.latencies.get("lease-run", []) + rec.failed_ms.get("lease", []),
    }
    p99 = {k: _nan0(percentile(sorted(v), 99)) for k, v in headline.items()}
    worst = max(p99, key=lambda k: p99[k])
    cores = os.cpu_count() or 1
    return {
        "mode": "ingest" if args.ingest else "agents",
        "code": args.code,
        "agents": args.agents,
        "generators": args.generators,
        "registered": load.registered,
        "api_processes": args.api_processes,
        "seconds": round(window_s, 1),
        "ingest_batch": args.ingest_batch if args.ingest else None,
        "p99_ms": round(p99[worst], 1),
        "p99_endpoint": worst,
        "p99_ms_by_endpoint": {
            k: round(percentile(sorted(v), 99), 1) for k, v in rec.latencies.items() if v
        },
        "errors": sum(rec.errors.values()),
        "requests": requests,
        "requests_per_s": round(requests / window_s, 1),
        "results": load.results,
        "results_per_s": round(load.results / window_s, 1),
        "leases_lost": lost["unexpected"] if lost else None,
        "api_cpu_s": [round(sampler.cpu_s(n), 1) for n in api_names],
        "api_cpu_ms_per_request": round(api_cpu_ms, 2),
        "bare_cpu_ms_per_request": round(bare_cpu_ms, 2),
        "steady_api_cpu_ms_per_request": None if steady_ms is None else round(steady_ms, 2),
        "api_rss_max_mb": [round(sampler.rss_mb(n)) for n in api_names],
        "postgres_cpu_s": round(sampler.postgres_cpu_s, 1),
        "pg_backends_max": sampler.backends_max,
        "generator_cpu_share": round(sum(generator_cpu.values()) / window_s / cores, 3),
        "generator_lag_p99_ms": round(lag_p99, 1),
        "generator_lag_p99_ms_by_process": {k: round(v, 1) for k, v in lag_p99s(lags).items()},
        "valid": valid,
        "machine_busy": round(sampler.machine_busy, 3),
        "others_cpu_share": round(others / window_s / cores, 3),
    }


def _steady_cpu_ms(
    sampler: ProcSampler, api_names: list[str], steady: dict[str, float], *, total_requests: int
) -> float | None:
    """The api CPU per request after the mark ``once_registered`` took (None: no mark,
    or fewer than 100 requests after it)."""
    if "requests" not in steady:
        return None
    requests = total_requests - steady["requests"]
    if requests < 100:
        return None
    cpu = sum(sampler.cpu_s(n) for n in api_names) - steady["api_cpu_s"]
    return cpu * 1000 / requests


def _print_requests(
    args: argparse.Namespace,
    load: Load,
    *,
    lost: dict[str, int] | None,
    window_s: float,
    requests: int,
) -> None:
    rec = load.rec
    print(
        f"\n{'ingest' if args.ingest else 'agents'}: {args.agents} agents ({load.registered} "
        f"registered) on {args.api_processes} api processes for {window_s:.0f}s"
        + (f", results in batches of {args.ingest_batch}" if args.ingest else "")
        + "; heartbeat "
        f"{args.heartbeat_s:g}s (lease {load.lease_s:g}s), long-poll {args.wait_s:g}s"
        + ("" if args.ingest else f", runs {args.run_s}s, ~{args.running_fraction:.0%} busy")
    )
    print("\n".join(rec.table(ENDPOINTS)))
    split = ", ".join(
        f"{k} p50 {rec.p(k, 50):.0f} / p99 {rec.p(k, 99):.0f} ms"
        for k in ("ready-claim", "claim-reply")
    )
    print(f"lease-run split: {split}")
    print(
        f"throughput: {requests / window_s:.0f} requests/s, {load.results / window_s:.1f} "
        f"results/s ({load.results} results, {len(load.leases)} leases)"
    )
    failures = ", ".join(f"{e} {s}: {n}" for (e, s), n in sorted(rec.errors.items()))
    print(f"errors: {sum(rec.errors.values())}" + (f" ({failures})" if failures else ""))
    for (endpoint, what), example in sorted(rec.examples.items()):
        print(f"  first {endpoint} {what}: {example}")
    print(
        (
            f"leases lost: {lost['unexpected']} while their agent was heartbeating, "
            f"{lost['given_up']} after it gave up its result"
            if lost
            else "leases lost: unknown (the database was unreachable at the end)"
        )
        + f"; heartbeats answered lease_valid=false: {load.lease_invalid}; "
        f"results not counted: {load.uncounted_results}"
    )


def _print_processes(
    sampler: ProcSampler,
    *,
    window_s: float,
    generator_cpu: dict[str, float],
    lags: dict[str, list[float]],
) -> float:
    """Print CPU and memory per process; return the CPU seconds other processes
    of the machine used meanwhile (it is shared)."""
    for name in [*(n for n in sampler.pids if n.startswith("api-")), "worker", "beat"]:
        cpu = sampler.cpu_s(name)
        print(
            f"{name}: {cpu:.1f} CPU s ({cpu / window_s:.0%} of a core), "
            f"max RSS {sampler.rss_mb(name):.0f} MB"
        )
    print(
        f"postgres: {sampler.postgres_cpu_s:.1f} CPU s in this database's backends; backends max "
        f"{sampler.backends_max} here, {sampler.server_backends_max} on the server "
        f"(max_connections {sampler.max_connections})"
        + (f"; {sampler.missed_counts} samples without a count" if sampler.missed_counts else "")
    )
    for name, cpu in generator_cpu.items():
        values = sorted(lags.get(name, []))
        print(
            f"{name}: {cpu:.1f} CPU s ({cpu / window_s:.0%} of a core); event-loop lag "
            f"p99 {percentile(values, 99):.0f} ms, max {percentile(values, 100):.0f} ms"
        )
    cores = os.cpu_count() or 1
    generators = sum(generator_cpu.values())
    ours = sum(sampler.cpu_s(n) for n in sampler.pids) + sampler.postgres_cpu_s + generators
    others = max(0.0, sampler.machine_busy_s - ours)
    print(
        f"generator processes: {generators:.1f} CPU s = {generators / window_s / cores:.0%} of "
        f"the machine ({cores} cores); machine busy {sampler.machine_busy:.0%}, of which "
        f"{others:.0f} CPU s ({others / window_s / cores:.0%}) by processes outside this "
        "benchmark"
    )
    return others


def _nan0(x: float) -> float:
    return 0.0 if x != x else x
