"""A whole farm of real processes for end-to-end tests: api, Celery worker and
beat on the real Postgres and a private Redis server, and real agents."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from reprofarm_db import tokens
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.migrate import upgrade


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class RedisServer:
    """A private redis-server, so a test can stop and restart it."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for("redis", self._pings, timeout=10, every=0.1)

    def _pings(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@dataclass
class Farm:
    root: Path
    database_url: str
    redis: RedisServer
    port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    lease_s: float = 6.0
    admin: str = ""
    enroll: str = ""
    shared_builds: Path | None = None  # the test session's hangtest build cache

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "REPROFARM_DATA_DIR": str(self.root / "controller"),
            "REPROFARM_DATABASE_URL": self.database_url,
            "REPROFARM_BROKER_URL": self.redis.url,
            "REPROFARM_LEASE_S": str(self.lease_s),
            "REPROFARM_AVOID_GRACE_S": "4",
            "REPROFARM_SWEEP_INTERVAL_S": "1",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def prepare(self) -> None:
        if self.shared_builds is not None:
            # Builds are content-addressed: every farm of the session reuses them.
            controller = self.root / "controller"
            controller.mkdir(parents=True, exist_ok=True)
            (controller / "builds").symlink_to(self.shared_builds, target_is_directory=True)
        upgrade(self.database_url)
        engine = make_engine(self.database_url)
        with transaction(make_sessionmaker(engine)) as s:
            self.admin = tokens.create(s, name="e2e admin", role="admin")
            self.enroll = tokens.create(s, name="e2e enrollment", role="agent")
        engine.dispose()

    def start(self, name: str, args: list[str], **env: str) -> None:
        log = (self.root / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "reprofarm_cli", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env(**env),
            start_new_session=True,
        )

    def start_api(self) -> None:
        self.start("api", ["api", "--port", str(self.port)])
        wait_for("api health", self._healthy, timeout=60)

    def _healthy(self, url: str | None = None) -> bool:
        try:
            return httpx.get(f"{url or self.url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def start_extra_api(self, name: str, **env: str) -> str:
        """Another api process against the same database and Redis (a second replica
        behind a load balancer); returns its URL once it answers."""
        port = free_port()
        self.start(name, ["api", "--port", str(port)], **env)
        url = f"http://127.0.0.1:{port}"
        wait_for(f"{name} health", lambda: self._healthy(url), timeout=60)
        return url

    def start_agent(self, name: str, pools: list[str], api: str | None = None) -> None:
        """A real agent; ``api`` points it elsewhere (a TcpProxy before the api)."""
        args = [
            "agent",
            "--api",
            api or self.url,
            "--token",
            self.enroll,
            "--name",
            name,
            "--work-dir",
            str(self.root / name),
        ]
        for pool in pools:
            args += ["--pool", pool]
        self.start(
            name,
            args,
            REPROFARM_CACHE_DIR=str(self.root / f"{name}-cache"),
            REPROFARM_DUMP_INTERVAL_S="1",
        )

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for name in list(self.processes):
            process = self.processes.pop(name)
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        r = httpx.request(
            method,
            self.url + path,
            timeout=30,
            headers={"Authorization": f"Bearer {self.admin}"},
            **kwargs,
        )
        assert r.status_code < 400, r.text
        return r.json() if r.content else None

    def runs(self, job_id: int) -> list[dict[str, Any]]:
        """Every run of the job: the list is paged, followed to its last page."""
        runs: list[dict[str, Any]] = []
        path: str | None = f"/api/v1/jobs/{job_id}/runs?limit=500"
        while path is not None:
            page = self.call("GET", path)
            runs.extend(page["runs"])
            path = page["next"]
        return runs

    def wait_job_done(self, job_id: int, timeout: float = 240) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            try:
                job = self.call("GET", f"/api/v1/jobs/{job_id}")
            except httpx.TransportError:
                return None
            return job if job["status"] in ("done", "cancelled", "expired") else None

        job: dict[str, Any] = wait_for(f"job {job_id} to finish", done, timeout=timeout, every=1)
        return job
