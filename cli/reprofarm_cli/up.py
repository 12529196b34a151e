"""``reprofarm up``: the whole farm on one machine, no external service.

api + worker (planning, builds, sweeps) + analysis worker + beat + one local agent as
supervised processes, on SQLite,
Celery over kombu's filesystem transport and artifacts on local disk, all
under one data directory, so state survives a restart.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import httpx
import typer
from reprofarm_db import tokens
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.migrate import upgrade
from reprofarm_db.settings import ControllerSettings

from reprofarm_cli.local_instance import DEFAULT_PORT, token_file, write_instance
from reprofarm_cli.supervisor import Supervisor

WORKERS: dict[str, list[str]] = {
    "worker": ["worker", "--queues", "controller,build", "--concurrency", "2"],
    "analysis": ["worker", "--queues", "analysis", "--concurrency", "1"],
}
"""The embedded farm's Celery workers: analysis in a process of its own, so a dump
being expanded and read (up to ``REPROFARM_ANALYSIS_TIMEOUT_S``) never takes the
thread a plan or a lease sweep needs, and its CPU is another process's, not a
share of the planner's GIL. One analysis at a time: a laptop has few cores."""


def _token(data_dir: Path, db_url: str, name: str, role: str, file_name: str) -> str:
    """Reuse the token stored in the data directory if it is still valid."""
    path = data_dir / file_name
    sessions = make_sessionmaker(make_engine(db_url))
    with transaction(sessions) as session:
        if path.exists():
            plain = path.read_text().strip()
            if tokens.authenticate(session, plain=plain) is not None:
                return plain
        plain = tokens.create(session, name=name, role=role)
    path.write_text(plain)
    path.chmod(0o600)
    return plain


def _wait_healthy(url: str, supervisor: Supervisor, timeout_s: float = 90) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not supervisor.stopping.is_set():
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    return False


def _wait_agent(url: str, admin: str, supervisor: Supervisor, timeout_s: float = 90) -> bool:
    """The local agent has registered: jobs submitted from now on have an agent."""
    deadline = time.monotonic() + timeout_s
    headers = {"Authorization": f"Bearer {admin}"}
    while time.monotonic() < deadline and not supervisor.stopping.is_set():
        try:
            online = httpx.get(
                f"{url}/api/v1/agents/page",
                params={"online": "true", "limit": 1},
                headers=headers,
                timeout=2,
            )
            if online.status_code == 200 and online.json()["total"] > 0:
                return True
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.3)
    return False


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def up(
    port: Annotated[int, typer.Option(help="serve on 127.0.0.1:PORT")] = DEFAULT_PORT,
    data_dir: Annotated[
        Path | None, typer.Option(help="all state [REPROFARM_DATA_DIR, ~/.local/share/reprofarm]")
    ] = None,
    agent_pool: Annotated[str, typer.Option(help="pool of the local agent")] = "local",
) -> None:
    """Run the whole farm here: dashboard, api, worker, beat and a local agent."""
    folder = (data_dir or ControllerSettings().data_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "logs").mkdir(exist_ok=True)
    settings = ControllerSettings(data_dir=folder, database_url="", broker_url="")
    upgrade(settings.db_url)
    admin = _token(folder, settings.db_url, "local admin", "admin", token_file(folder).name)
    enroll = _token(folder, settings.db_url, "local agent enrollment", "agent", "agent-token")
    viewer = _token(folder, settings.db_url, "local dashboard", "viewer", "viewer-token")
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "REPROFARM_DATA_DIR": str(folder),
        "REPROFARM_DATABASE_URL": "",
        "REPROFARM_BROKER_URL": "",
        "REPROFARM_API": url,
        "REPROFARM_TOKEN": enroll,
        "REPROFARM_WORK_DIR": str(folder / "agent"),
        "REPROFARM_CACHE_DIR": str(folder / "agent-cache"),
        "PYTHONUNBUFFERED": "1",
    }
    supervisor = Supervisor(env=env)
    logs = folder / "logs"
    supervisor.add("api", ["api", "--port", str(port)], logs)
    for name, args in WORKERS.items():
        supervisor.add(name, args, logs)
    supervisor.add("beat", ["beat"], logs)
    supervisor.add(
        "agent", ["agent", "--name", f"local-{socket.gethostname()}", "--pool", agent_pool], logs
    )
    # Both explicitly: a shell that starts `up` in the background hands it
    # SIGINT ignored, and Python then leaves it ignored.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        supervisor.start_all()
        if not _wait_healthy(url, supervisor):
            typer.echo(f"the api did not come up; see {logs / 'api.log'}", err=True)
            raise typer.Exit(1)
        if not _wait_agent(url, admin, supervisor):
            typer.echo(f"the local agent did not register; see {logs / 'agent.log'}", err=True)
            raise typer.Exit(1)
        write_instance(folder, url, admin)
        typer.echo(f"reprofarm is up: dashboard {url}/#token={viewer}")
        typer.echo(f"api {url}/api/v1 (docs {url}/docs); state and logs in {folder}")
        typer.echo(
            "try: reprofarm submit --scenario control-deadlock --duration 15s "
            "--stall-timeout 3s --wait"
        )
        typer.echo("Ctrl-C stops everything.")
        supervisor.watch()
    except KeyboardInterrupt:
        typer.echo("stopping…", err=True)
    finally:
        # A second Ctrl-C (or uv forwarding the same SIGTERM) must not abort
        # the shutdown half-way and leave children running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        supervisor.stop()
        (folder / "instance.json").unlink(missing_ok=True)
    typer.echo("stopped", err=True)
