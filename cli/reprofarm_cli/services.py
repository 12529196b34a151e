"""The controller's processes as commands: api, worker, beat, agent, db upgrade."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Any

import typer
from reprofarm_protocol.queues import TASK_QUEUES


def api(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8600,
    tls_cert: Annotated[
        Path | None,
        typer.Option(help="serve https with this certificate (PEM) [REPROFARM_TLS_CERT_FILE]"),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option(help="the certificate's private key (PEM) [REPROFARM_TLS_KEY_FILE]"),
    ] = None,
) -> None:
    """Serve the REST api and the dashboard (settings from REPROFARM_*).

    With a certificate and its key, over https: agents and the install script
    send tokens, which must not cross a network in clear text."""
    import uvicorn
    from pydantic import ValidationError
    from reprofarm_api.app import create_app
    from reprofarm_db.migrate import upgrade
    from reprofarm_db.settings import ControllerSettings

    options: dict[str, Any] = {"tls_cert_file": tls_cert, "tls_key_file": tls_key}
    try:  # options win over REPROFARM_* (init arguments come first in pydantic-settings)
        settings = ControllerSettings(**{k: v for k, v in options.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        field = ".".join(str(p) for p in first["loc"])
        typer.echo(f"error: {field + ': ' if field else ''}{message}", err=True)
        raise typer.Exit(2) from None
    for path in (settings.tls_cert_file, settings.tls_key_file):
        if path is not None and not path.is_file():
            typer.echo(f"error: tls: {path} is not a file", err=True)
            raise typer.Exit(2)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.db_url)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level="warning",
        ssl_certfile=settings.tls_cert_file,
        ssl_keyfile=settings.tls_key_file,
    )


ALL_QUEUES = ",".join(sorted(set(TASK_QUEUES.values())))


def worker(
    concurrency: Annotated[int, typer.Option(help="tasks at once")] = 4,
    queues: Annotated[
        str,
        typer.Option(
            help="comma-separated queues to consume: run one worker for 'controller,build' "
            "and another for 'analysis', so dumps being analysed never hold up planning "
            "and lease sweeps (docs/operations.md)"
        ),
    ] = ALL_QUEUES,
) -> None:
    """Run a Celery worker for the controller's queues (controller, build, analysis)."""
    from reprofarm_worker.app import create_celery

    wanted = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(wanted) - set(TASK_QUEUES.values()))
    if not wanted or unknown:
        typer.echo(f"error: unknown queue(s) {unknown}; known: {ALL_QUEUES}", err=True)
        raise typer.Exit(2)
    app = create_celery()
    app.worker_main(
        [
            "worker",
            "-Q",
            ",".join(wanted),
            "--pool",
            "threads",
            "-c",
            str(concurrency),
            "--loglevel",
            "INFO",
            "-n",
            # one name per set of queues: two workers of one host must not share it
            f"reprofarm-{'-'.join(wanted)}@{socket.gethostname()}",
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


def db_upgrade() -> None:
    """Apply the database migrations (REPROFARM_DATABASE_URL)."""
    from reprofarm_db.migrate import upgrade
    from reprofarm_db.settings import ControllerSettings

    settings = ControllerSettings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.db_url)
    typer.echo(f"database at head: {settings.db_url}")


def db_token(
    role: Annotated[str, typer.Option(help="viewer, submitter, agent or admin")] = "admin",
    name: Annotated[str, typer.Option(help="who or what it is for")] = "bootstrap",
) -> None:
    """Create a token straight in the database: how the first admin token of a
    distributed install is made (needs REPROFARM_DATABASE_URL, not the api)."""
    from reprofarm_db import tokens
    from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
    from reprofarm_db.errors import Invalid
    from reprofarm_db.settings import ControllerSettings

    sessions = make_sessionmaker(make_engine(ControllerSettings().db_url))
    try:
        with transaction(sessions) as session:
            typer.echo(tokens.create(session, name=name, role=role))
    except Invalid as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def db_reanalyze(
    everything: Annotated[
        bool, typer.Option("--all", help="every dump, not only those of older rules")
    ] = False,
) -> None:
    """Re-analyse dumps after the analyzer's rules changed: their runs move to the
    buckets the new rules give, and kept triaged dumps get new verdicts (runs here, on
    the artifacts under the data dir and the kept dumps in the database; the worker's
    `reprofarm.reanalyze` task does the same in the background)."""
    from reprofarm_db.engine import make_engine, make_sessionmaker
    from reprofarm_db.settings import ControllerSettings
    from reprofarm_worker.analysis import reanalyze

    settings = ControllerSettings()
    sessions = make_sessionmaker(make_engine(settings.db_url))
    done = reanalyze(
        sessions,
        settings.data_dir / "analysis-scratch",
        everything=everything,
        limits=settings.analysis_limits(),
    )
    typer.echo(
        f"re-analysed {len(done.artifacts)} dumps of runs"
        f" and {len(done.triaged)} kept triaged dumps"
    )


def db_rebuild_rollups() -> None:
    """Recompute the statistics rollups from the runs table (after a bulk load that
    bypassed the api, or to check them: the numbers must not change)."""
    from reprofarm_db import rollups
    from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
    from reprofarm_db.settings import ControllerSettings

    sessions = make_sessionmaker(make_engine(ControllerSettings().db_url))
    with transaction(sessions) as session:
        cells = rollups.rebuild(session)
    typer.echo(f"rollups rebuilt: {cells} cells")
