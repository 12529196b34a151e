"""What uvicorn's HTTP parser and event loop cost the api, per request.

The api depends on httptools and (off Windows) uvloop, which uvicorn picks when they
are installed. This starts the real app under each stack in turn, h11 on asyncio
first (the baseline, and again last to show the drift of a busy machine), hammers
``GET /health`` (a database slot and one round trip, no token) over 8 keep-alive
connections, and prints the server process's CPU per request and its ratio to the
baseline:

    uv run python bench/http_stack.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reprofarm_db.migrate import upgrade

from tests.fixtures import scratch_database

_SERVER = """
import sys, uvicorn
from reprofarm_api.app import create_app
from reprofarm_db.settings import ControllerSettings
http, loop, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
uvicorn.run(create_app(ControllerSettings()), host="127.0.0.1", port=port,
            log_level="warning", http=http, loop=loop)
"""

STACKS = [("h11", "asyncio"), ("httptools", "asyncio"), ("httptools", "uvloop"), ("h11", "asyncio")]


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _hammer(url: str, requests: int, connections: int) -> None:
    async def one() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            for _ in range(requests // connections):
                (await client.get("/health")).raise_for_status()

    await asyncio.gather(*(one() for _ in range(connections)))


def _serve(
    database_url: str, data_dir: str, http: str, loop: str, port: int
) -> subprocess.Popen[bytes]:
    env = dict(os.environ, REPROFARM_DATABASE_URL=database_url, REPROFARM_DATA_DIR=data_dir)
    server = subprocess.Popen([sys.executable, "-c", _SERVER, http, loop, str(port)], env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.kill()
    sys.exit(f"the api under {http}/{loop} did not answer within 30 s")


def _cpu_ms_per_request(
    database_url: str, data_dir: str, http: str, loop: str, port: int, n: int
) -> float:
    server = _serve(database_url, data_dir, http, loop, port)
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(_hammer(url, 400, 8))  # warm: pool connections, caches
        rounds = []
        sent = n // 8 * 8  # each of the 8 connections sends n // 8
        for _ in range(3):
            before = _cpu_s(server.pid)
            asyncio.run(_hammer(url, sent, 8))
            rounds.append((_cpu_s(server.pid) - before) / sent * 1000)
        return statistics.median(rounds)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=3000, help="requests per round (3 rounds)")
    args = p.parse_args()
    with scratch_database("reprofarm_http") as url, tempfile.TemporaryDirectory() as data_dir:
        upgrade(url)
        baseline = None
        for i, (http, loop) in enumerate(STACKS):
            ms = _cpu_ms_per_request(url, data_dir, http, loop, 18700 + i, args.requests)
            baseline = baseline or ms
            print(f"{http:9s} {loop:8s} {ms:.3f} ms CPU/request  x{ms / baseline:.2f}", flush=True)


if __name__ == "__main__":
    main()
