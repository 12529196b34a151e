"""The FastAPI application, built by a factory from settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from reprofarm_db.artifacts import RunLimits
from reprofarm_db.engine import IDLE_PING_S, make_engine, make_sessionmaker
from reprofarm_db.settings import ControllerSettings
from reprofarm_web import STATIC_DIR

from reprofarm_api import errors
from reprofarm_api.after_commit import AfterCommit
from reprofarm_api.agents.liveness import SeenAgents
from reprofarm_api.agents.router import router as agents_router
from reprofarm_api.agents.wakeup import WorkSignal
from reprofarm_api.artifacts.router import router as artifacts_router
from reprofarm_api.artifacts.service import Uploads
from reprofarm_api.artifacts.store import ArtifactStore
from reprofarm_api.body_limit import BodyLimit
from reprofarm_api.builds.router import router as builds_router
from reprofarm_api.controls.router import router as controls_router
from reprofarm_api.db_slots import DatabaseSlots, pool_size
from reprofarm_api.explain.router import router as explain_router
from reprofarm_api.install.router import router as install_router
from reprofarm_api.install.service import Releases
from reprofarm_api.jobs.router import router as jobs_router
from reprofarm_api.live.router import router as live_router
from reprofarm_api.ops.router import router as ops_router
from reprofarm_api.runs.router import router as runs_router
from reprofarm_api.signatures.router import router as signatures_router
from reprofarm_api.stats.router import router as stats_router
from reprofarm_api.studies.router import router as studies_router
from reprofarm_api.tasks import OutboxRelay, TaskSender
from reprofarm_api.token_cache import TokenCache
from reprofarm_api.triage.router import router as triage_router
from reprofarm_api.views.router import router as views_router

DESCRIPTION = """
reprofarm reproduces a rare, hardware-dependent Windows hang (Go programs frozen in
CancelIoEx) on many machines at once and measures which hardware reproduces it.

* **QA** submit jobs (`POST /api/v1/jobs`) and watch their runs.
* **Agents** register with their hardware, long-poll for runs (`POST /api/v1/agents/me/lease`),
  heartbeat, upload artifacts and post results.
* **Everyone** reads hit rates (`GET /api/v1/stats`) with Wilson 95% intervals, and
  which factor explains them (`GET /api/v1/explain`).

Every call needs `Authorization: Bearer <token>` (roles: viewer, submitter, agent, admin), except
`/health` and `/metrics`. A bad request gets a 4xx whose `detail` names the field and the reason,
and changes nothing; every answer is sent after the change it reports is committed. Request
bodies are limited (413), artifact uploads excepted (they stream, with their own limit).
"""


def create_app(settings: ControllerSettings | None = None, *, relay: bool = True) -> FastAPI:
    settings = settings or ControllerSettings()
    slots = DatabaseSlots(settings.db_request_slots)
    # A little overflow for anything outside the slots; the slots never need it.
    engine = make_engine(
        settings.db_url,
        ping_after_idle_s=IDLE_PING_S,
        pool_size=pool_size(slots.request_slots),
        max_overflow=4,
    )
    sessions = make_sessionmaker(engine)
    sender = TaskSender(settings)
    outbox_relay = OutboxRelay(sessions, sender)
    token_cache = TokenCache(
        settings.token_cache_s, listening_ttl_s=settings.token_cache_listening_s
    )
    work = WorkSignal(
        sessions,
        settings.wakeup_redis_url,
        recheck_s=settings.work_recheck_s,
        on_revoked=token_cache.evict,
        on_listening=token_cache.listening,
    )

    seen = SeenAgents(sessions, lease_s=settings.lease_s)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Every slot holder can have a worker thread, whatever the slot count.
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, pool_size(slots.request_slots))
        if relay:
            outbox_relay.start()
        await work.start()
        await seen.start()
        yield
        await seen.stop()
        await work.stop()
        if relay:
            outbox_relay.stop()
        engine.dispose()

    otel = settings.opentelemetry
    app = FastAPI(
        title="reprofarm",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        telemetry={"tracing": otel, "metrics": otel, "logs": otel},
    )
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.db_slots = slots
    app.state.artifacts = ArtifactStore(settings.artifact_dir)
    app.state.uploads = Uploads(
        sessions=sessions,
        slots=slots,
        store=app.state.artifacts,
        limits=RunLimits(
            artifacts=settings.max_artifacts_per_run, bytes=settings.max_run_artifact_bytes
        ),
    )
    app.state.work = work
    app.state.seen = seen
    app.state.token_cache = token_cache
    app.state.releases = Releases(settings)
    errors.install(app)
    for router in (
        jobs_router,
        runs_router,
        agents_router,
        artifacts_router,
        builds_router,
        stats_router,
        explain_router,
        studies_router,
        signatures_router,
        ops_router,
        install_router,
        live_router,
        views_router,
        triage_router,
        controls_router,
    ):
        app.include_router(router)

    app.add_middleware(
        AfterCommit,
        poke_relay=outbox_relay.poke,
        runs_ready=work.runs_ready,
        tokens_revoked=work.tokens_revoked,
    )
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        paths={"/api/v1/triage": settings.max_triage_bytes},
    )
    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="web")
    return app
