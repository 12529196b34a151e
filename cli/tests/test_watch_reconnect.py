"""Following a job survives the api going away: `reprofarm watch` (and so
`submit --wait`, which follows the same way) against a real api process that is
killed and started again, as `reprofarm up` restarting does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from reprofarm_db import jobs, tokens
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.migrate import upgrade
from reprofarm_protocol.jobs import JobCreate
from sqlalchemy.orm import Session, sessionmaker

from tests.e2e.farm import free_port, wait_for
from tests.e2e.tcp_proxy import TcpProxy
from tests.factories import register_agent

BIN = Path(sys.executable).parent


@dataclass
class Controller:
    """A real api process on an embedded database, and the way to reach it."""

    data: Path
    port: int
    sessions: sessionmaker[Session]
    admin: str
    job_id: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REPROFARM_")}
        with (self.data / "api.log").open("ab") as log:
            self.process = subprocess.Popen(
                [str(BIN / "reprofarm"), "api", "--port", str(self.port)],
                env={**env, "REPROFARM_DATA_DIR": str(self.data)},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for("the api", self._healthy, timeout=60, every=0.2)

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).is_success
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None


@pytest.fixture
def controller(tmp_path) -> Iterator[Controller]:
    data = tmp_path / "data"
    data.mkdir()
    url = f"sqlite:///{data / 'reprofarm.sqlite'}"
    upgrade(url)
    sessions = make_sessionmaker(make_engine(url))
    with transaction(sessions) as s:
        admin = tokens.create(s, name="admin", role="admin")
        register_agent(s, "lab-1", os="linux", arch="amd64")
        job, _ = jobs.create(
            s, spec=JobCreate(scenario="pipe-close-race"), idempotency_key=None, max_runs=10
        )
    c = Controller(data=data, port=free_port(), sessions=sessions, admin=admin, job_id=job.id)
    c.start()
    yield c
    if c.process is not None:
        c.kill()
    print((data / "api.log").read_text(errors="replace")[-3000:])


def watch(c: Controller, proxy: TcpProxy, stderr: Path, *extra: str) -> subprocess.Popen[str]:
    with stderr.open("w") as err:
        return subprocess.Popen(
            [
                str(BIN / "reprofarm"),
                "watch",
                str(c.job_id),
                "--api",
                proxy.url,
                "--token",
                c.admin,
                "--json",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )


def test_watch_waits_out_an_api_restart_and_reports_the_end(controller, tmp_path):
    stderr = tmp_path / "watch.err"
    with TcpProxy(controller.port) as proxy:
        follower = watch(controller, proxy, stderr, "--reconnect-timeout", "60s")
        # Polling through the proxy (one connection per poll): it follows the job.
        wait_for("watch to poll twice", lambda: proxy.accepted >= 2, timeout=60, every=0.1)
        controller.kill()
        wait_for("watch to notice", lambda: "retrying" in stderr.read_text(), timeout=30)
        wait_for("three retries", lambda: proxy.upstream_down >= 3, timeout=30, every=0.1)
        assert follower.poll() is None, stderr.read_text()
        controller.start()
        with transaction(controller.sessions) as s:
            jobs.cancel(s, job_id=controller.job_id)
        out, _ = follower.communicate(timeout=60)
    err = stderr.read_text()
    assert follower.returncode == 0, err
    assert json.loads(out)["status"] == "cancelled"
    assert f"api: {proxy.url} unreachable" in err
    assert "is back after" in err


def test_watch_gives_up_after_its_reconnect_timeout_with_exit_code_3(controller, tmp_path):
    stderr = tmp_path / "watch.err"
    with TcpProxy(controller.port) as proxy:
        follower = watch(controller, proxy, stderr, "--reconnect-timeout", "3s")
        wait_for("watch to poll", lambda: proxy.accepted >= 1, timeout=60, every=0.1)
        controller.kill()
        started = time.monotonic()
        out, _ = follower.communicate(timeout=180)  # a request in flight may wait out its own
        waited = time.monotonic() - started
    err = stderr.read_text()
    assert follower.returncode == 3, err
    assert out == ""
    assert f"gave up following job {controller.job_id}, which goes on" in err
    # It waited out its timeout, not less; the upper bound is the communicate() above
    # (a busy machine stretches the tail, so no tighter one is asserted).
    assert waited >= 3, waited
