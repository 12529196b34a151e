"""What agents_load.py measures: request latencies and errors per endpoint, and
the CPU and memory of the farm's processes, sampled from /proc.

Latencies are kept whole (a 10,000-agent, 300 s run makes a few hundred
thousand samples: a few MB), so percentiles are exact (nearest rank).
"""

from __future__ import annotations

import asyncio
import math
import os
import ssl
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

_TICK = os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Recorder:
    """Latencies (ms) and failures per endpoint; a failure is an HTTP status the
    endpoint should not answer, or the exception's class (ReadTimeout...)."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    failed_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    examples: dict[tuple[str, str], str] = field(default_factory=dict)
    requests: int = 0

    def ok(self, endpoint: str, ms: float) -> None:
        self.requests += 1
        self.latencies[endpoint].append(ms)

    def failed(self, endpoint: str, what: str, ms: float, detail: str = "") -> None:
        """``ms``: how long it took to fail. ``detail`` (an exception's message,
        a response body) is kept for the first failure of each kind."""
        self.requests += 1
        self.errors[(endpoint, what)] += 1
        self.failed_ms[endpoint].append(ms)
        self.examples.setdefault((endpoint, what), detail[:200])

    def refused(self, endpoint: str, what: str, detail: str = "") -> None:
        """One item of a batch the api refused (the request itself succeeded)."""
        self.errors[(endpoint, what)] += 1
        self.examples.setdefault((endpoint, what), detail[:200])

    def absorb(self, other: Recorder) -> None:
        """Add another generator process's samples and counts to these: the
        percentiles are then over the union of both processes' samples."""
        for endpoint, values in other.latencies.items():
            self.latencies.setdefault(endpoint, []).extend(values)
        for endpoint, values in other.failed_ms.items():
            self.failed_ms.setdefault(endpoint, []).extend(values)
        self.errors.update(other.errors)
        for kind, example in other.examples.items():
            self.examples.setdefault(kind, example)
        self.requests += other.requests

    def p(self, endpoint: str, q: float) -> float:
        return percentile(sorted(self.latencies.get(endpoint, [])), q)

    def table(self, endpoints: list[str]) -> list[str]:
        lines = [
            f"{'endpoint':<14}{'n':>8}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}"
            f"{'max ms':>10}{'errors':>8}"
        ]
        for name in endpoints:
            values = sorted(self.latencies.get(name, []))
            failed = sum(n for (e, _), n in self.errors.items() if e == name)
            if not values and not failed:
                continue
            cells = "".join(
                f"{percentile(values, q):>10.0f}" if values else f"{'-':>10}"
                for q in (50, 95, 99, 100)
            )
            lines.append(f"{name:<14}{len(values):>8}{cells}{failed:>8}")
        return lines


async def loop_lag(lags: list[float]) -> None:
    """How late this process's event loop wakes a 100 ms sleep, in ms: if it is
    late, the latencies it measures are partly its own."""
    while True:
        start = time.perf_counter()
        await asyncio.sleep(0.1)
        lags.append((time.perf_counter() - start - 0.1) * 1000)


def own_cpu_s() -> float:
    """User+system CPU seconds this process used so far (all its threads)."""
    t = os.times()
    return t.user + t.system


def process_cpu_s(pids: list[int]) -> float:
    """User+system CPU seconds the live processes ``pids`` used so far."""
    return sum(got[0] for pid in pids if (got := _cpu_and_rss(pid)) is not None)


def _cpu_and_rss(pid: int) -> tuple[float, int] | None:
    """(user+system CPU seconds, resident kB) of a live process, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # Fields after the command name, which may hold spaces: ") S ppid ..."; utime
    # and stime are fields 14 and 15 of proc(5), i.e. 11 and 12 after the ")".
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICK
    rss = next((int(line.split()[1]) for line in status.splitlines() if line[:6] == "VmRSS:"), 0)
    return cpu, rss


def _postgres_backends(database: str) -> list[int]:
    """Pids of the Postgres backends serving ``database`` (their process title
    is "postgres: user database host(port) state")."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if title.startswith(b"postgres: ") and f" {database} ".encode() in title:
            pids.append(int(entry.name))
    return pids


@dataclass
class _Usage:
    first_cpu: float
    last_cpu: float
    max_rss_kb: int


@dataclass
class ProcSampler:
    """CPU seconds used during the load (last sample minus first) and the largest
    resident set seen, per named process; and the CPU of the Postgres backends
    of one database (summed over the backends seen: one that exits between two
    samples loses at most a sample period of CPU)."""

    pids: dict[str, int]
    database: str
    admin_url: str
    usage: dict[str, _Usage] = field(default_factory=dict)
    _backends: dict[int, tuple[float, float]] = field(default_factory=dict)
    backends_max: int = 0
    server_backends_max: int = 0
    max_connections: int = 0
    missed_counts: int = 0  # samples without a backend count (Postgres unreachable)
    _conn: Any = None
    _machine_first: tuple[int, int] | None = None
    _machine_last: tuple[int, int] | None = None

    def sample(self) -> None:
        for name, pid in self.pids.items():
            got = _cpu_and_rss(pid)
            if got is None:
                continue
            cpu, rss = got
            seen = self.usage.get(name)
            if seen is None:
                self.usage[name] = _Usage(cpu, cpu, rss)
            else:
                seen.last_cpu = cpu
                seen.max_rss_kb = max(seen.max_rss_kb, rss)
        self._count_backends()
        for pid in _postgres_backends(self.database):
            got = _cpu_and_rss(pid)
            if got is not None:
                first, _ = self._backends.get(pid, (got[0], got[0]))
                self._backends[pid] = (first, got[0])
        machine = _machine_busy()
        if self._machine_first is None:
            self._machine_first = machine
        self._machine_last = machine

    def restart(self) -> None:
        """Sample, and count CPU from here on (the measured window starts)."""
        self.sample()
        for u in self.usage.values():
            u.first_cpu = u.last_cpu
        self._backends = {pid: (last, last) for pid, (_, last) in self._backends.items()}
        self._machine_first = self._machine_last

    def _count_backends(self) -> None:
        """Client backends of the database and of the whole server (max_connections
        counts them all), from pg_stat_activity over a connection of our own to
        the admin database (so not among the database's backends)."""
        try:
            if self._conn is None:
                self._conn = psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5)
                self.max_connections = int(self._conn.execute("SHOW max_connections").fetchone()[0])
            ours, everyone = self._conn.execute(
                "SELECT count(*) FILTER (WHERE datname = %s), count(*) FROM pg_stat_activity"
                " WHERE backend_type = 'client backend'",
                (self.database,),
            ).fetchone()
        except psycopg.OperationalError:
            # Postgres restarted or refused us (a shared server): this sample has
            # no count (reported as missed_counts); connect again next time.
            self.missed_counts += 1
            self.close()
            return
        self.backends_max = max(self.backends_max, ours)
        self.server_backends_max = max(self.server_backends_max, everyone)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def cpu_s(self, name: str) -> float:
        u = self.usage.get(name)
        return u.last_cpu - u.first_cpu if u else math.nan

    def rss_mb(self, name: str) -> float:
        u = self.usage.get(name)
        return u.max_rss_kb / 1024 if u else math.nan

    @property
    def postgres_cpu_s(self) -> float:
        return sum(last - first for first, last in self._backends.values())

    @property
    def machine_busy_s(self) -> float:
        """CPU seconds all processes of the machine used between the first and
        last sample (other work on a shared machine included)."""
        if self._machine_first is None or self._machine_last is None:
            return math.nan
        return (self._machine_last[0] - self._machine_first[0]) / _TICK

    @property
    def machine_busy(self) -> float:
        """Share of all CPUs busy between the first and last sample (0..1)."""
        if self._machine_first is None or self._machine_last is None:
            return math.nan
        busy = self._machine_last[0] - self._machine_first[0]
        total = self._machine_last[1] - self._machine_first[1]
        return busy / total if total else math.nan


def _machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from the first line of /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


async def bare_cpu_ms(
    urls: list[str], pids: list[int], *, per_process: int = 1000, concurrency: int = 8
) -> float:
    """The api processes' CPU per request (ms) on GET /health, the barest endpoint
    that still takes a database slot and one round trip (no token, no ORM): the
    floor under every other request's cost, measured on the same processes as
    the load. Their idle CPU (the outbox relay, the work re-check) over a second
    before is taken off at that rate."""
    tls = ssl.create_default_context()
    idle0, t0 = process_cpu_s(pids), time.monotonic()
    await asyncio.sleep(1.0)
    idle_rate = (process_cpu_s(pids) - idle0) / (time.monotonic() - t0)

    async def hammer(url: str, n: int) -> None:
        async with httpx.AsyncClient(base_url=url, verify=tls, timeout=30) as client:
            for _ in range(n):
                (await client.get("/health")).raise_for_status()

    cpu0, t0 = process_cpu_s(pids), time.monotonic()
    await asyncio.gather(
        *(hammer(u, per_process // concurrency) for u in urls for _ in range(concurrency))
    )
    cpu, elapsed = process_cpu_s(pids) - cpu0, time.monotonic() - t0
    requests = len(urls) * concurrency * (per_process // concurrency)
    return max(0.0, cpu - idle_rate * elapsed) * 1000 / requests
