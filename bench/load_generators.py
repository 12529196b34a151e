"""The simulated agents of agents_load.py, split over K generator processes.

One asyncio process cannot drive 10,000 agents: its event loop lagged 16 s p99
(docs/operations.md), so the latencies it took were its own. Each generator is a
process of its own (interpreter, event loop, GIL) that drives every K-th agent
(agent i belongs to generator i mod K: names and machine secrets never collide,
and each generator's registrations spread over the whole ramp instead of one
generator registering its block while the others wait), measures its own
event-loop lag, and at the end sends its Load (Recorder, leases, counts), its
lags and its CPU to the parent, which merges them.

multiprocessing with spawn rather than subprocesses of agents_load.py with a
hidden --worker role: the parent needs the generators' counts while the load
runs (the submitter keeps ~10% of the agents busy, the ingest top-up follows the
leases, the steady-state mark waits for the last registration) and tells them
when the load starts, when the window opens and when to stop. A shared array of
doubles (the Board) carries both ways without a line protocol over stdin and
stdout; the final reports go pickled over a pipe. Spawn, not fork: by then the
parent has an event loop, threads (asyncio.to_thread) and open sockets, which a
forked child would inherit half-alive. The price: each child imports
agents_load.py again (spawn runs the main module as __mp_main__), about a second
of CPU before the load starts, outside the window.

Children inherit the parent's file-descriptor limit (agents_load.py raises it
before starting them) and its CPU affinity (nothing is pinned).
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import httpx
from load_agent import TLS, Load
from load_fleet import FleetSpec
from load_metrics import loop_lag, own_cpu_s

AGENTS_PER_GENERATOR = 2500
"""The default split: at most this many agents per generator process."""

_PERIOD_S = 0.1  # how often a generator publishes its counts and reads the control row
_UNSET = math.nan


def default_generators(agents: int) -> int:
    """ceil(agents / 2,500): one process up to 2,500 agents (so every run up to
    2,000 agents is made as before the split and compares with the figures in
    docs/operations.md), four at 10,000."""
    return max(1, math.ceil(agents / AGENTS_PER_GENERATOR))


def share(agents: int, generators: int, k: int) -> range:
    """The agent indices generator ``k`` drives: every ``generators``-th."""
    return range(k, agents, generators)


class _Control(IntEnum):
    """Row 0 of the board, written by the parent alone."""

    START = 0  # time.monotonic() the agents' ramp counts from (NaN: not yet)
    DEADLINE = 1  # the window's end; the generators' Load.go waits for it (NaN: not yet)
    STOP = 2  # 1: cancel everything and report


class _Count(IntEnum):
    """Row 1 + k of the board, written by generator k alone."""

    READY = 0
    REGISTERED = 1
    BUSY = 2
    LEASED_FIRST_ATTEMPTS = 3
    RESULTS = 4
    REQUESTS = 5
    ERRORS = 6
    EXHAUSTED_AT = 7  # ingest: its first empty long-poll (NaN: none)
    FINISHED = 8  # 1: all its agents have returned


_WIDTH = max(len(_Control), len(_Count))


class Board:
    """Shared memory between the parent and its generators, without a lock:
    every slot has one writer, and an aligned double is read whole. Counts lag
    the generators' own by at most _PERIOD_S."""

    def __init__(self, cells: Any, generators: int) -> None:
        self._cells = cells  # a multiprocessing RawArray of doubles
        self.generators = generators

    @classmethod
    def create(cls, ctx: multiprocessing.context.SpawnContext, generators: int) -> Board:
        board = cls(ctx.RawArray("d", (1 + generators) * _WIDTH), generators)
        for slot in (_Control.START, _Control.DEADLINE):
            board._cells[slot] = _UNSET
        for k in range(generators):
            board._cells[(1 + k) * _WIDTH + _Count.EXHAUSTED_AT] = _UNSET
        return board

    def control(self, slot: _Control) -> float:
        return float(self._cells[slot])

    def set_control(self, slot: _Control, value: float) -> None:
        self._cells[slot] = value

    def publish(self, k: int, load: Load, *, finished: bool) -> None:
        row = (1 + k) * _WIDTH
        values = {
            _Count.READY: 1.0,
            _Count.REGISTERED: load.registered,
            _Count.BUSY: load.busy,
            _Count.LEASED_FIRST_ATTEMPTS: load.leased_first_attempts,
            _Count.RESULTS: load.results,
            _Count.REQUESTS: load.rec.requests,
            _Count.ERRORS: sum(load.rec.errors.values()),
            _Count.EXHAUSTED_AT: _UNSET if load.exhausted_at is None else load.exhausted_at,
            _Count.FINISHED: float(finished),
        }
        for slot, value in values.items():
            self._cells[row + slot] = value

    def counts(self, slot: _Count) -> list[float]:
        return [self._cells[(1 + k) * _WIDTH + slot] for k in range(self.generators)]


@dataclass
class GeneratorReport:
    """What a generator sends the parent when it stops."""

    load: Load
    lags: list[float]
    cpu_s: float  # its CPU from the window's start (Load.go) to the stop


def run_generator(spec: FleetSpec, board: Board, k: int, conn: Connection) -> None:
    """A generator process's entry point: drive share(k), then send the report.

    It starts a session of its own first, as the farm's api processes do (Farm
    starts each with start_new_session): Linux's autogroup scheduling
    (kernel.sched_autogroup_enabled) shares the CPU between sessions before the
    processes in them, so generators left in the parent's session would share one
    session's part of the CPU however many there were. Measured so at 10,000
    agents: four generators got 0.53 of a core together, what one process got
    before, and lagged 6-12 s; `nice` on them changed nothing (it weighs only
    within a session)."""
    os.setsid()
    conn.send(asyncio.run(_generate(spec, board, k, parent=os.getppid())))
    conn.close()


async def _generate(spec: FleetSpec, board: Board, k: int, *, parent: int) -> GeneratorReport:
    await _warm_up(spec.api_urls[0])
    load = spec.new_load()
    lags: list[float] = []
    background = [asyncio.create_task(loop_lag(lags))]
    board.publish(k, load, finished=False)
    while math.isnan(start := board.control(_Control.START)):
        await asyncio.sleep(_PERIOD_S / 2)
    indices = share(spec.agents, board.generators, k)
    tasks = [asyncio.create_task(_agent(spec, i, load, start)) for i in indices]
    cpu0: float | None = None
    # Out of the parent's session, Ctrl-C no longer reaches us: the parent
    # terminates us on exit, and if it died without doing so, we stop too.
    while not board.control(_Control.STOP) and os.getppid() == parent:
        deadline = board.control(_Control.DEADLINE)
        if cpu0 is None and not math.isnan(deadline):
            cpu0 = own_cpu_s()
            load.deadline = deadline
            load.go.set()
        board.publish(k, load, finished=all(t.done() for t in tasks))
        await asyncio.sleep(_PERIOD_S)
    cpu = 0.0 if cpu0 is None else own_cpu_s() - cpu0
    for t in tasks + background:
        t.cancel()
    await asyncio.gather(*tasks, *background, return_exceptions=True)
    return GeneratorReport(load=load, lags=lags, cpu_s=cpu)


async def _warm_up(url: str) -> None:
    """One GET /health before the lag is measured: a process's first httpx
    client and request take 0.1-0.3 s here (lazy imports, set-up), which would
    count as one long lag in every generator."""
    async with httpx.AsyncClient(base_url=url, verify=TLS, timeout=30) as client:
        (await client.get("/health")).raise_for_status()


async def _agent(spec: FleetSpec, i: int, load: Load, start: float) -> None:
    """Agent ``i``, built when its turn in the ramp comes: building them all up
    front (their registration bodies) held this loop for 0.3-0.5 s at 1,000 agents,
    which counted in its lag."""
    await asyncio.sleep(max(0.0, start + spec.start_after(i) - time.monotonic()))
    await spec.agent(i, load).life(0.0)


class GeneratorError(RuntimeError):
    """A generator process died or did not answer: its share is unmeasured."""


class Generators:
    """The parent's side: start K generator processes, read their live counts,
    open and close the window, and collect their reports."""

    def __init__(self, spec: FleetSpec, count: int) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self.count = count
        self.board = Board.create(self._ctx, count)
        self._processes: list[BaseProcess] = []
        self._conns: list[Connection] = []
        self._spec = spec

    def start(self) -> None:
        for k in range(self.count):
            ours, theirs = self._ctx.Pipe(duplex=False)
            p = self._ctx.Process(
                target=run_generator,
                args=(self._spec, self.board, k, theirs),
                name=f"generator-{k}",
                daemon=True,  # never outlives the parent
            )
            p.start()
            theirs.close()
            self._processes.append(p)
            self._conns.append(ours)

    async def ready(self, timeout_s: float = 120) -> None:
        """Wait until every generator's event loop runs (they import for a second)."""
        give_up = time.monotonic() + timeout_s
        while not all(self.board.counts(_Count.READY)):
            self.check_alive()
            if time.monotonic() > give_up:
                raise GeneratorError(f"generators not ready after {timeout_s:.0f} s")
            await asyncio.sleep(_PERIOD_S)

    def check_alive(self) -> None:
        """Raise GeneratorError if a generator has exited (its agents are gone)."""
        for p in self._processes:
            if p.exitcode is not None:
                raise GeneratorError(f"{p.name} exited with code {p.exitcode}")

    def begin(self, started: float) -> None:
        """The agents' ramp counts from ``started`` (time.monotonic())."""
        self.board.set_control(_Control.START, started)

    def go(self, deadline: float) -> None:
        """Open the window; it ends at ``deadline`` (time.monotonic())."""
        self.board.set_control(_Control.DEADLINE, deadline)

    def _total(self, slot: _Count) -> int:
        return int(sum(self.board.counts(slot)))

    @property
    def registered(self) -> int:
        return self._total(_Count.REGISTERED)

    @property
    def busy(self) -> int:
        return self._total(_Count.BUSY)

    @property
    def leased_first_attempts(self) -> int:
        return self._total(_Count.LEASED_FIRST_ATTEMPTS)

    @property
    def results(self) -> int:
        return self._total(_Count.RESULTS)

    @property
    def requests(self) -> int:
        return self._total(_Count.REQUESTS)

    @property
    def errors(self) -> int:
        return self._total(_Count.ERRORS)

    @property
    def exhausted_at(self) -> float | None:
        """Ingest: the first empty long-poll any generator saw."""
        seen = [t for t in self.board.counts(_Count.EXHAUSTED_AT) if not math.isnan(t)]
        return min(seen, default=None)

    @property
    def finished(self) -> bool:
        """Every agent of every generator has returned."""
        return all(self.board.counts(_Count.FINISHED))

    def stop(self) -> None:
        """Tell the generators to cancel their agents and send their reports."""
        self.board.set_control(_Control.STOP, 1.0)

    async def collect(self, timeout_s: float = 120) -> list[GeneratorReport]:
        """Stop the generators and receive their reports (before joining them:
        a child blocks on a report larger than the pipe's buffer until it is read)."""
        self.stop()
        reports = []
        for p, conn in zip(self._processes, self._conns, strict=True):
            if not await asyncio.to_thread(conn.poll, timeout_s):
                raise GeneratorError(f"{p.name} sent no report in {timeout_s:.0f} s")
            try:
                report: GeneratorReport = await asyncio.to_thread(conn.recv)
            except EOFError as exc:
                raise GeneratorError(f"{p.name} exited with code {p.exitcode}") from exc
            reports.append(report)
        for p in self._processes:
            await asyncio.to_thread(p.join, 30)
        return reports

    def terminate(self) -> None:
        """Stop any generator still running (the load failed before collecting)."""
        for p in self._processes:
            if p.is_alive():
                p.terminate()
            p.join(10)
        for conn in self._conns:
            conn.close()


@contextmanager
def running_generators(spec: FleetSpec, count: int) -> Iterator[Generators]:
    """Start ``count`` generators; terminate those left on exit."""
    generators = Generators(spec, count)
    try:
        generators.start()
        yield generators
    finally:
        generators.terminate()
