"""A run's build is fetched through an api that goes away for a moment (a restart): the
agent waits it out within the lease instead of abandoning the run. The server here is a
real HTTP server on a real socket, started late, as an api comes back after a restart."""

from __future__ import annotations

import hashlib
import socket
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from reprofarm_agent.client import ApiClient
from reprofarm_agent.errors import ApiUnavailableError
from reprofarm_agent.platform import current_platform
from reprofarm_agent.service import AgentService
from reprofarm_agent.settings import AgentSettings
from reprofarm_protocol.jobs import BuildRef, LeasedRun

BINARY = b"\x7fELF a build of hangtest" * 100


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Build(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BINARY)))
        self.end_headers()
        self.wfile.write(BINARY)

    def log_message(self, *_args: object) -> None:
        pass


def _agent(tmp_path: Path, port: int) -> AgentService:
    settings = AgentSettings(work_dir=tmp_path / "agent", cache_dir=tmp_path / "cache")
    client = ApiClient(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5))
    client.token = "agent-token"
    return AgentService(
        client=client,
        platform=current_platform(settings),
        settings=settings,
        name="lab-1",
        pools=[],
        lease_wait_s=0,
    )


def _leased(heartbeat_interval_s: float) -> LeasedRun:
    build = BuildRef(
        sha256=hashlib.sha256(BINARY).hexdigest(),
        target="linux/amd64",
        go_version="1.27.3",
        bytes=len(BINARY),
        fix_present=False,
        url="/api/v1/builds/1/binary",
    )
    return LeasedRun(
        run_id=7,
        job_id=1,
        attempt=1,
        lease_token="lease",
        lease_expires_at=datetime.now(UTC),
        heartbeat_interval_s=heartbeat_interval_s,
        scenario="control-deadlock",
        build=build,
        cpus=None,
        affinity="compact",
        workers=1,
        iterations=0,
        duration_s=1.0,
        stall_timeout_s=1.0,
        control_chance=None,
        process_dumps=0,
    )


def test_a_build_whose_api_comes_back_within_the_lease_is_fetched(tmp_path):
    port = _free_port()  # nothing listens: connections are refused until the api is back
    back = threading.Timer(1.5, _serve, args=(port,))
    back.start()
    try:
        path = _agent(tmp_path, port)._fetch_build(_leased(heartbeat_interval_s=5.0))
    finally:
        back.join()
        _stop()
    assert path.read_bytes() == BINARY


def test_a_build_whose_api_stays_away_past_the_lease_gives_the_run_up(tmp_path):
    port = _free_port()
    with pytest.raises(ApiUnavailableError):
        _agent(tmp_path, port)._fetch_build(_leased(heartbeat_interval_s=0.25))


_SERVERS: list[ThreadingHTTPServer] = []


def _serve(port: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), _Build)
    _SERVERS.append(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def _stop() -> None:
    while _SERVERS:
        server = _SERVERS.pop()
        server.shutdown()
        server.server_close()
