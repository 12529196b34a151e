"""One simulated agent of agents_load.py: the loop a real agent runs (register,
long-poll for a lease, fetch the build once, heartbeat while the run lasts,
upload its goroutine dump, post the result), over its own connection, with
every request timed into the shared Recorder.

Nothing runs: a run is a sleep of its simulated duration. Failures are counted
(endpoint, status or exception) and retried with capped, jittered backoff, as
the real agent does; a result that still fails after a few tries is given up
and the run remembered as abandoned (its lease will be lost, rightly)."""

from __future__ import annotations

import asyncio
import math
import random
import ssl
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from load_metrics import Recorder

# httpcore runs `import sniffio` on every request (_synchronization.py) to tell
# asyncio from trio. sniffio is not installed here, and an import that fails is
# not cached: it searches sys.path each time, which cost about a quarter of this
# process's CPU (py-spy). None in sys.modules makes it fail at once: "asyncio".
sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

# Loopback http: no TLS is ever negotiated, but httpx builds a context per
# client unless given one, and loading the CA bundle costs ms per agent.
TLS = ssl.create_default_context()
# One connection per agent (it does one thing at a time). Closed by us after
# 4 s idle, before uvicorn's keep-alive timeout (5 s) closes it under a request.
_LIMITS = httpx.Limits(max_connections=2, max_keepalive_connections=1, keepalive_expiry=4.0)
_TIMEOUT = httpx.Timeout(60.0, connect=30.0)
_RETRIES = 3
_BACKOFF_CAP_S = 30.0


@dataclass
class LeaseSeen:
    """A lease that returned a run, on the wall clock (the api's clock too: loopback)."""

    run_id: int
    sent: float
    received: float
    claimed: float  # lease_expires_at - lease_s: when the api claimed the run


@dataclass
class Load:
    """What the simulated agents share: their settings, the clock and the counts."""

    rec: Recorder
    wait_s: float
    heartbeat_s: float
    lease_s: float
    run_s: tuple[float, float]
    hang_fraction: float
    artifact: bytes
    artifact_sha256: str
    ingest: bool = False
    ingest_batch: int = 1  # ingest: results per POST /agents/me/results (1: the single route)
    deadline: float = math.inf  # time.monotonic(); set when the measured window starts
    go: asyncio.Event = field(default_factory=asyncio.Event)
    registered: int = 0
    busy: int = 0
    leased_first_attempts: int = 0
    results: int = 0
    lease_invalid: int = 0
    uncounted_results: int = 0
    leases: list[LeaseSeen] = field(default_factory=list)
    abandoned: set[int] = field(default_factory=set)
    exhausted_at: float | None = None  # ingest: the first empty long-poll

    @property
    def over(self) -> bool:
        return time.monotonic() >= self.deadline

    def absorb(self, other: Load) -> None:
        """Add another generator process's requests, counts and leases to these
        (the parent merges its generators' Loads into one to report)."""
        self.rec.absorb(other.rec)
        self.registered += other.registered
        self.busy += other.busy
        self.leased_first_attempts += other.leased_first_attempts
        self.results += other.results
        self.lease_invalid += other.lease_invalid
        self.uncounted_results += other.uncounted_results
        self.leases.extend(other.leases)
        self.abandoned |= other.abandoned
        seen = [t for t in (self.exhausted_at, other.exhausted_at) if t is not None]
        self.exhausted_at = min(seen, default=None)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (a generator process sends its Load to the parent) without
        ``go``: an asyncio.Event belongs to the loop that used it."""
        return {k: v for k, v in self.__dict__.items() if k != "go"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.go = asyncio.Event()


class SimAgent:
    def __init__(
        self, *, name: str, url: str, enrollment: str, register_body: dict[str, Any], load: Load
    ) -> None:
        self.name, self.load, self.enrollment = name, load, enrollment
        self.register_body = register_body
        self.cpus: int = register_body["hardware"]["logical_cpus"]
        self.url = url
        self.client: httpx.AsyncClient | None = None
        self.token = ""
        self.binaries: set[str] = set()
        self.failures = 0
        self.rng = random.Random(name)

    async def life(self, start_after: float) -> None:
        await asyncio.sleep(start_after)
        # Made here, not up front: a client costs about 1 ms to build.
        self.client = httpx.AsyncClient(
            base_url=self.url, verify=TLS, limits=_LIMITS, timeout=_TIMEOUT
        )
        try:
            if not await self.register():
                return
            self.load.registered += 1
            await self.load.go.wait()
            batch: list[dict[str, Any]] = []
            while not self.load.over:
                if not self.token and not await self.register():
                    return
                leased = await self.lease()
                if leased is not None and not self.load.ingest:
                    await self.work(leased)
                    continue
                if leased is not None:
                    batch.append(leased)
                if batch and (leased is None or len(batch) >= self.load.ingest_batch):
                    await self.report_ingested(batch)
                    batch = []
                if leased is None and self.load.ingest and self.load.exhausted_at is not None:
                    return
        finally:
            await self.client.aclose()

    async def call(
        self, endpoint: str, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kw: Any
    ) -> tuple[httpx.Response | None, float]:
        """(the response, ms) if its status is in ``ok``; else (None, ms), the
        failure recorded and backed off. A 401 drops our token: register again."""
        assert self.client is not None
        start = time.perf_counter()
        try:
            r = await self.client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            ms = (time.perf_counter() - start) * 1000
            self.load.rec.failed(endpoint, type(exc).__name__, ms, repr(exc.__context__ or exc))
            await self._backoff()
            return None, ms
        ms = (time.perf_counter() - start) * 1000
        if r.status_code not in ok:
            self.load.rec.failed(endpoint, str(r.status_code), ms, r.text)
            if r.status_code == 401:
                self.token = ""
            await self._backoff()
            return None, ms
        self.failures = 0
        return r, ms

    async def _backoff(self) -> None:
        self.failures += 1
        delay = min(_BACKOFF_CAP_S, 0.5 * 2**self.failures) * self.rng.uniform(0.5, 1.5)
        await asyncio.sleep(min(delay, max(0.0, self.load.deadline - time.monotonic())))

    def _auth(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **extra}

    async def register(self) -> bool:
        """Until it works (every failure counted), or the load ends (False)."""
        while True:
            r, ms = await self.call(
                "register",
                "POST",
                "/api/v1/agents/register",
                json=self.register_body,
                headers={"Authorization": f"Bearer {self.enrollment}"},
            )
            if r is not None:
                self.load.rec.ok("register", ms)
                self.token = r.json()["token"]
                return True
            if self.load.over:
                return False

    async def lease(self) -> dict[str, Any] | None:
        load = self.load
        sent = time.time()
        r, ms = await self.call(
            "lease",
            "POST",
            "/api/v1/agents/me/lease",
            ok=(200, 204),
            json={"wait_s": load.wait_s},
            headers=self._auth(),
            timeout=httpx.Timeout(load.wait_s + 60, connect=30.0),
        )
        if r is None:
            return None
        if r.status_code == 204:
            load.rec.ok("lease-204", ms)
            if load.ingest and load.exhausted_at is None and not load.over:
                load.exhausted_at = time.monotonic()
            return None
        received = time.time()
        load.rec.ok("lease-rtt", ms)
        leased: dict[str, Any] = r.json()
        expires = datetime.fromisoformat(leased["lease_expires_at"]).timestamp()
        load.leases.append(LeaseSeen(leased["run_id"], sent, received, expires - load.lease_s))
        if leased["attempt"] == 1:
            load.leased_first_attempts += 1
        return leased

    async def work(self, leased: dict[str, Any]) -> None:
        """Fetch the build (once per agent), run, upload, report."""
        load = self.load
        load.busy += 1
        try:
            build = leased["build"]
            if build["sha256"] not in self.binaries:
                r, ms = await self.call("binary", "GET", build["url"], headers=self._auth())
                if r is not None:
                    load.rec.ok("binary", ms)
                    self.binaries.add(build["sha256"])
            duration = self.rng.uniform(*load.run_s)
            await self._run(leased, duration)
            hung = self.rng.random() < load.hang_fraction
            await self._upload(leased)
            await self.report(leased, hung=hung, duration_s=duration)
        finally:
            load.busy -= 1

    async def _run(self, leased: dict[str, Any], duration: float) -> None:
        """Heartbeat every heartbeat_s until the simulated run is over."""
        run_id, load = leased["run_id"], self.load
        start = time.monotonic()
        beat = start + load.heartbeat_s
        invalid = False
        while beat < start + duration:
            await asyncio.sleep(max(0.0, beat - time.monotonic()))
            elapsed = time.monotonic() - start
            r, ms = await self.call(
                "heartbeat",
                "POST",
                f"/api/v1/runs/{run_id}/heartbeat",
                json={"iterations": int(elapsed * 170), "elapsed_s": round(elapsed, 3)},
                headers=self._auth(**{"X-Lease-Token": leased["lease_token"]}),
            )
            if r is not None:
                load.rec.ok("heartbeat", ms)
                reply = r.json()
                if not reply["lease_valid"] and not invalid:
                    invalid = True
                    load.lease_invalid += 1
                if reply["cancel"]:
                    return
            beat += load.heartbeat_s
        await asyncio.sleep(max(0.0, start + duration - time.monotonic()))

    async def _upload(self, leased: dict[str, Any]) -> None:
        run_id, load = leased["run_id"], self.load
        headers = self._auth(
            **{
                "X-Lease-Token": leased["lease_token"],
                "X-Artifact-Kind": "goroutines",
                "X-Artifact-Sha256": load.artifact_sha256,
                "X-Artifact-Size": str(len(load.artifact)),
            }
        )
        for _ in range(_RETRIES):
            r, ms = await self.call(
                "upload",
                "PUT",
                f"/api/v1/runs/{run_id}/artifacts/goroutines-1.txt",
                content=load.artifact,
                headers=headers,
            )
            if r is not None:
                load.rec.ok("upload", ms)
                return

    async def report_ingested(self, batch: list[dict[str, Any]]) -> None:
        """Ingest: the single route for a batch of one, else one POST /agents/me/results."""
        if len(batch) == 1 and self.load.ingest_batch == 1:
            await self.report(batch[0], hung=False, duration_s=0.0)
            return
        load = self.load
        items = [
            {
                "run_id": leased["run_id"],
                "lease_token": leased["lease_token"],
                "result": self._result(leased, hung=False, duration_s=0.0),
            }
            for leased in batch
        ]
        for _ in range(_RETRIES):
            r, ms = await self.call(
                "results",
                "POST",
                "/api/v1/agents/me/results",
                json={"results": items},
                headers=self._auth(),
            )
            if r is not None:
                load.rec.ok("results", ms)
                for outcome in r.json()["results"]:
                    if outcome["http_status"] != 200:
                        load.rec.refused("result", str(outcome["http_status"]), outcome["message"])
                        continue
                    load.results += 1
                    if not outcome["counted"]:
                        load.uncounted_results += 1
                return
            if load.over:
                return
        load.abandoned.update(leased["run_id"] for leased in batch)

    def _result(self, leased: dict[str, Any], *, hung: bool, duration_s: float) -> dict[str, Any]:
        cpus = list(range(leased["cpus"] or self.cpus))
        return {
            "status": "hung" if hung else "passed",
            "reason": "stall: 1 worker stopped for 30s" if hung else "completed",
            "iterations": int(duration_s * 170),
            "duration_s": round(duration_s, 3),
            "cpu_set": cpus,
            "requested_cpu_set": cpus,
            "gomaxprocs": len(cpus),
            "exit_code": None if hung else 0,
            "killed": hung,
            "stalled_workers": [3] if hung else [],
        }

    async def report(self, leased: dict[str, Any], *, hung: bool, duration_s: float) -> None:
        run_id, load = leased["run_id"], self.load
        result = self._result(leased, hung=hung, duration_s=duration_s)
        for _ in range(_RETRIES):
            r, ms = await self.call(
                "result",
                "POST",
                f"/api/v1/runs/{run_id}/result",
                json={"result": result},
                headers=self._auth(**{"X-Lease-Token": leased["lease_token"]}),
            )
            if r is not None:
                load.rec.ok("result", ms)
                load.results += 1
                if not r.json()["counted"]:
                    load.uncounted_results += 1
                return
            if load.over:
                return
        load.abandoned.add(run_id)
