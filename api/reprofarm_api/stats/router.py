"""Hit-rate statistics (definitions in docs/statistics.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from reprofarm_db import health, stats
from reprofarm_db.errors import Invalid
from reprofarm_db.hit_rates import compare as compare_groups

from reprofarm_api.deps import ID_MAX, SessionDep, SettingsDep, Viewer
from reprofarm_api.responses import AUTHENTICATED

router = APIRouter(prefix="/api/v1/stats", tags=["stats"], responses=AUTHENTICATED)


class StatsRead(BaseModel):
    group_by: list[str]
    rows: list[dict[str, Any]] = Field(
        description="one per group: the keys, runs, hangs, hit_rate, ci95_low, ci95_high, ..."
    )
    comparisons: list[dict[str, Any]] = Field(
        description="Fisher's exact test between groups differing in `compare`, with BH q-values"
    )
    harness_problems: dict[str, Any] = Field(
        description="not counted in the rows: hangs on negative controls and runs of unhealthy "
        "agents (GET /api/v1/harness-problems says more)"
    )


@router.get("", response_model=StatsRead, summary="Hit rates by group")
def hit_rates(
    session: SessionDep,
    settings: SettingsDep,
    _token: Viewer,
    group_by: Annotated[
        str,
        Query(max_length=200, description=f"comma-separated, of: {', '.join(stats.GROUP_KEYS)}"),
    ] = "hardware",
    compare: Annotated[
        str | None, Query(max_length=40, description="a group_by key to compare across")
    ] = None,
    job_id: Annotated[
        int | None, Query(ge=1, le=ID_MAX, description="only this job's runs")
    ] = None,
    label: Annotated[
        str | None,
        Query(
            max_length=40,
            description="count only hangs with this label (e.g. cancelioex-sync-io, or pending)",
        ),
    ] = None,
    signature: Annotated[
        str | None, Query(max_length=500, description="count only hangs with this signature")
    ] = None,
) -> StatsRead:
    keys = [k.strip() for k in group_by.split(",") if k.strip()]
    if not keys:
        raise Invalid("group_by", f"name at least one of {', '.join(stats.GROUP_KEYS)}")
    rows = stats.group_runs(session, group_by=keys, job_id=job_id, label=label, signature=signature)
    comparisons = (
        compare_groups(rows, key=compare, max_pairs=settings.max_compare_pairs)
        if compare and rows
        else []
    )
    problems = health.harness_problems(session, job_id=job_id, recent=0).as_dict()
    return StatsRead(
        group_by=keys,
        rows=[r.as_dict() for r in rows],
        comparisons=comparisons,
        harness_problems=problems,
    )
