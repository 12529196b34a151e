"""The controller's processes as commands: api, worker, beat, agent, db upgrade."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Annotated

import typer


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per long-poll is noise


def api(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8600,
) -> None:
    """Serve the REST api and the dashboard (settings from REPROFARM_*)."""
    import uvicorn
    from reprofarm_api.app import create_app
    from reprofarm_db.migrate import upgrade
    from reprofarm_db.settings import ControllerSettings

    settings = ControllerSettings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.db_url)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


def worker(
    concurrency: Annotated[int, typer.Option(help="tasks at once")] = 4,
) -> None:
    """Run a Celery worker for the controller, build and analysis queues."""
    from reprofarm_worker.app import create_celery

    app = create_celery()
    app.worker_main(
        [
            "worker",
            "-Q",
            "controller,build,analysis",
            "--pool",
            "threads",
            "-c",
            str(concurrency),
            "--loglevel",
            "INFO",
            "-n",
            f"reprofarm@{socket.gethostname()}",
        ]
    )


def beat() -> None:
    """Run Celery beat: the periodic lease sweep."""
    from reprofarm_db.settings import ControllerSettings
    from reprofarm_worker.app import create_celery

    settings = ControllerSettings()
    app = create_celery(settings)
    schedule = settings.data_dir / "celerybeat-schedule"
    app.start(["beat", "--loglevel", "INFO", "-s", str(schedule)])


def agent(
    api_url: Annotated[
        str | None, typer.Option("--api", help="the api's URL [REPROFARM_API]")
    ] = None,
    token: Annotated[str | None, typer.Option(help="enrollment token [REPROFARM_TOKEN]")] = None,
    name: Annotated[str | None, typer.Option(help="agent name [host name]")] = None,
    pool: Annotated[list[str] | None, typer.Option(help="pool served; repeatable")] = None,
    work_dir: Annotated[Path | None, typer.Option(help="spool and run folders")] = None,
) -> None:
    """Serve as a lab agent: lease runs from the api and run them."""
    import httpx
    from reprofarm_agent.client import ApiClient
    from reprofarm_agent.platform import current_platform
    from reprofarm_agent.service import AgentService
    from reprofarm_agent.settings import AgentSettings

    _logging()
    settings = AgentSettings()
    updates: dict[str, object] = {}
    if work_dir is not None:
        updates["work_dir"] = work_dir
    settings = settings.model_copy(update=updates)
    url = api_url or settings.api
    secret = token or settings.token
    if not url or not secret:
        raise typer.BadParameter("give --api and --token (or REPROFARM_API and REPROFARM_TOKEN)")
    with httpx.Client(base_url=url, timeout=60) as http:
        service = AgentService(
            client=ApiClient(http, secret),
            platform=current_platform(settings),
            settings=settings,
            name=name or settings.agent_name or socket.gethostname(),
            pools=pool or settings.pools,
        )
        service.serve()


def db_upgrade() -> None:
    """Apply the database migrations (REPROFARM_DATABASE_URL)."""
    from reprofarm_db.migrate import upgrade
    from reprofarm_db.settings import ControllerSettings

    settings = ControllerSettings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.db_url)
    typer.echo(f"database at head: {settings.db_url}")
