"""Read models for the dashboard: one request per page (or per panel), paged, so a
page costs the same at a thousand runs and at a million. Every rate comes from
``reprofarm_db.stats`` through ``reprofarm_db.views``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from reprofarm_db import agents, jobs, views
from reprofarm_db import artifacts as artifacts_
from reprofarm_db.errors import NotFound
from reprofarm_db.hit_rates import compare
from reprofarm_db.models import Agent, Build, HardwareConfig, Run
from reprofarm_db.settings import ControllerSettings
from reprofarm_protocol.affinity import Scenario
from reprofarm_protocol.jobs import JobState, RunState
from reprofarm_protocol.limits import INT64_MAX
from sqlalchemy.orm import Session

from reprofarm_api.deps import JobId, RunId, SessionDep, SettingsDep, Viewer
from reprofarm_api.jobs.schemas import JobRead
from reprofarm_api.responses import AUTHENTICATED, errors
from reprofarm_api.runs.schemas import RunRead
from reprofarm_api.views.cache import ByVersion
from reprofarm_api.views.job import job_cells
from reprofarm_api.views.overview import AXES, SORTS, overview, parse_axes
from reprofarm_api.views.schemas import (
    AgentRow,
    AnalysisBrief,
    BuildBrief,
    ComparisonRead,
    HardwareRead,
    HardwareView,
    JobPage,
    JobView,
    OverviewRead,
    RateCell,
    RunPage,
    RunRow,
    RunView,
)

router = APIRouter(prefix="/api/v1/views", tags=["dashboard"], responses=AUTHENTICATED)

Fingerprint = Annotated[
    str, Path(max_length=64, pattern=r"^[0-9a-f]{1,64}$", description="a hardware fingerprint")
]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=INT64_MAX)]


def run_filter(
    job_id: Annotated[int | None, Query(ge=1, le=INT64_MAX, description="one job's runs")] = None,
    scenario: Annotated[Scenario | None, Query(description="one scenario")] = None,
    go_version: Annotated[str | None, Query(max_length=40, description="e.g. 1.27.3")] = None,
    hardware: Annotated[
        str | None,
        Query(max_length=64, pattern=r"^[0-9a-f]{1,64}$", description="a fingerprint"),
    ] = None,
    since: Annotated[
        datetime | None, Query(description="only runs of jobs submitted since (ISO 8601)")
    ] = None,
    until: Annotated[
        datetime | None, Query(description="only runs of jobs submitted before (ISO 8601)")
    ] = None,
    label: Annotated[
        str | None,
        Query(max_length=40, description="count only hangs with this label (or pending)"),
    ] = None,
    signature: Annotated[
        str | None, Query(max_length=500, description="count only hangs with this signature")
    ] = None,
) -> views.RunFilter:
    """The filters the overview, the job page and the export share (a time without a
    zone is UTC)."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    return views.RunFilter(
        job_id=job_id,
        scenario=scenario,
        go_version=go_version,
        hardware=hardware,
        submitted_since=since,
        submitted_until=until,
        label=label,
        signature=signature,
    )


Filter = Annotated[views.RunFilter, Depends(run_filter)]


def answers(request: Request) -> ByVersion:
    """The app's own cache (apps are built by a factory; tests build many)."""
    cache: ByVersion | None = getattr(request.app.state, "dashboard_answers", None)
    if cache is None:
        cache = request.app.state.dashboard_answers = ByVersion()
    return cache


def data_version(session: Session, settings: ControllerSettings) -> tuple[str, ...]:
    """What the rate answers read: the runs (their states), their labels, the jobs."""
    now = datetime.now(UTC)
    parts = views.changes(
        session, online_since=agents.online_since(now=now, lease_s=settings.lease_s)
    )
    return (parts["runs"], parts["analyses"], parts["jobs"])


@router.get("/overview", response_model=OverviewRead, summary="The hardware x configuration map")
def overview_map(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    _token: Viewer,
    where: Filter,
    columns: Annotated[
        str, Query(max_length=60, description=f"one or two of {', '.join(AXES)}")
    ] = "cpus",
    search: Annotated[
        str | None, Query(max_length=100, description="rows whose label holds this")
    ] = None,
    sort: Annotated[str, Query(max_length=20, description=", ".join(SORTS))] = "hangs",
    limit: Limit = 50,
    offset: Offset = 0,
) -> OverviewRead:
    """Rows: hardware configurations with runs under the filters; columns: the
    chosen axis or pair; each cell k/n with the Wilson 95% interval. Kept until
    the runs change (one computation per change, however many tabs ask)."""
    axes = parse_axes(columns)
    return answers(request).get_or_make(
        (request.url.path, str(request.query_params), data_version(session, settings)),
        lambda: overview(
            session, axes=axes, where=where, search=search, sort=sort, limit=limit, offset=offset
        ),
    )


@router.get(
    "/go-comparison",
    response_model=ComparisonRead,
    summary="Go versions compared within each scenario (Fisher, Benjamini-Hochberg)",
)
def go_comparison(
    request: Request, session: SessionDep, settings: SettingsDep, _token: Viewer, where: Filter
) -> ComparisonRead:
    """Groups by scenario and Go version under the filters (one hardware, one job
    or a time range narrow them); every two Go versions of a scenario compared."""

    def make() -> ComparisonRead:
        rows = views.rates(session, group_by=["scenario", "go_version"], where=where)
        return ComparisonRead(
            compare="go_version",
            groups=[RateCell.of(dict(r.keys), r.counts) for r in rows],
            comparisons=compare(rows, key="go_version", max_pairs=settings.max_compare_pairs)
            if rows
            else [],
        )

    key = (request.url.path, str(request.query_params), data_version(session, settings))
    return answers(request).get_or_make(key, make)


@router.get("/jobs", response_model=JobPage, summary="Jobs newest first, with run counts")
def job_page(
    session: SessionDep,
    _token: Viewer,
    status: Annotated[JobState | None, Query(description="only jobs in this state")] = None,
    limit: Limit = 25,
    offset: Offset = 0,
) -> JobPage:
    page, total = views.jobs_page(session, limit=limit, offset=offset, status=status)
    return JobPage(total=total, jobs=[JobRead.of(j, counts) for j, counts in page])


@router.get(
    "/jobs/{job_id}",
    response_model=JobView,
    summary="A job with its matrix of cells",
    responses=errors(404),
)
def job_view(job_id: JobId, session: SessionDep, _token: Viewer) -> JobView:
    job = jobs.get_or_raise(session, job_id=job_id)
    cells, counts = job_cells(session, job_id=job_id)
    return JobView(job=JobRead.of(job, counts), cells=cells)


@router.get(
    "/jobs/{job_id}/runs",
    response_model=RunPage,
    summary="One page of a job's runs, sorted and filtered",
    responses=errors(404),
)
def job_runs(
    job_id: JobId,
    session: SessionDep,
    _token: Viewer,
    status: Annotated[RunState | None, Query(description="only runs in this state")] = None,
    sort: Annotated[str, Query(max_length=20, description=", ".join(views.RUN_SORTS))] = "id",
    desc: Annotated[bool, Query(description="descending")] = False,
    limit: Limit = 50,
    offset: Offset = 0,
) -> RunPage:
    jobs.get_or_raise(session, job_id=job_id)
    runs, total = views.job_runs(
        session,
        job_id=job_id,
        status=status,
        sort=sort,
        descending=desc,
        limit=limit,
        offset=offset,
    )
    names = views.agent_names(session, [r.agent_id for r in runs])
    return RunPage(
        total=total,
        runs=[RunRow.of(r, names.get(r.agent_id) if r.agent_id else None) for r in runs],
    )


@router.get(
    "/runs/{run_id}",
    response_model=RunView,
    summary="A run with its agent, hardware, build, artifacts and analyses",
    responses=errors(404),
)
def run_view(run_id: RunId, session: SessionDep, settings: SettingsDep, _token: Viewer) -> RunView:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    agent = session.get(Agent, run.agent_id) if run.agent_id else None
    config = session.get(HardwareConfig, run.hardware_config_id) if run.hardware_config_id else None
    build = session.get(Build, run.build_id) if run.build_id else None
    now = datetime.now(UTC)
    return RunView(
        run=RunRead.of(run, artifacts_.for_run(session, run_id=run_id)),
        job_status=jobs.get_or_raise(session, job_id=run.job_id).status,
        agent=AgentRow.of(agent, online=agents.is_online(agent, now=now, lease_s=settings.lease_s))
        if agent
        else None,
        hardware=HardwareRead.of(config) if config else None,
        build=BuildBrief.model_validate(build, from_attributes=True) if build else None,
        analyses=[
            AnalysisBrief.model_validate(a, from_attributes=True)
            for a in views.analyses_of_run(session, run_id=run_id).values()
        ],
    )


@router.get(
    "/hardware",
    response_model=list[HardwareRead],
    summary="Hardware configurations by fingerprint (labels for a page)",
)
def hardware_list(
    session: SessionDep,
    _token: Viewer,
    fingerprints: Annotated[
        str, Query(max_length=100 * 65, description="comma-separated, at most 100")
    ] = "",
) -> list[HardwareRead]:
    wanted = [f.strip() for f in fingerprints.split(",") if f.strip()][:100]
    return [HardwareRead.of(c) for c in views.hardware_by_fingerprints(session, wanted)]


@router.get(
    "/hardware/{fingerprint}",
    response_model=HardwareView,
    summary="One hardware configuration: its agents and its rates",
    responses=errors(404),
)
def hardware_view(
    fingerprint: Fingerprint, session: SessionDep, settings: SettingsDep, _token: Viewer
) -> HardwareView:
    config = views.hardware(session, fingerprint=fingerprint)
    now = datetime.now(UTC)
    rows = views.rates(
        session,
        group_by=["scenario", "go_version", "cpus", "affinity"],
        where=views.RunFilter(hardware=config.fingerprint),
    )
    return HardwareView(
        hardware=HardwareRead.of(config),
        agents=[
            AgentRow.of(a, online=agents.is_online(a, now=now, lease_s=settings.lease_s))
            for a in views.agents_of(session, hardware_id=config.id)
        ],
        rates=[RateCell.of(dict(r.keys), r.counts) for r in rows],
    )
