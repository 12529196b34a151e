"""``GET /api/v1/explain``: which factor explains the hit rate (docs/statistics.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from reprofarm_db import explain

from reprofarm_api.deps import ID_MAX, SessionDep, SettingsDep, Viewer
from reprofarm_api.responses import AUTHENTICATED
from reprofarm_api.views.router import answers, data_version

router = APIRouter(prefix="/api/v1/explain", tags=["stats"], responses=AUTHENTICATED)


class LevelRead(BaseModel):
    level: str
    runs: int
    hangs: int
    reference: bool = Field(description="the level the odds ratios are against")
    odds_ratio: float | None = Field(description="null: aliased, no effect of its own")
    ci95_low: float | None
    ci95_high: float | None
    aliased_with: list[str]


class FactorRead(BaseModel):
    factor: str = Field(description="a stats group key or a hardware fact")
    levels: list[LevelRead]
    aliased_with: list[str] = Field(description="factors merged into this one: one effect")
    df: int
    statistic: float | None = Field(description="penalised likelihood-ratio statistic")
    p: float | None
    q: float | None = Field(description="Benjamini-Hochberg over the factors")


class AliasingRead(BaseModel):
    factors: list[str]
    says: str
    separate_with: list[dict[str, str]] = Field(description="cells that would separate them")


class StratifiedRead(BaseModel):
    factor: str
    level: str
    reference: str
    within: str
    strata: int
    cmh_p: float | None
    breslow_day_p: float | None
    says: str


class ExplainRead(BaseModel):
    runs: int
    hangs: int
    cells: int
    factors: list[FactorRead] = Field(description="ranked by evidence (smallest p first)")
    aliased: list[list[str]] = Field(description="factor groups the data cannot separate")
    aliasing: list[AliasingRead]
    stratified: list[StratifiedRead]
    constant: dict[str, str] = Field(description="factors with one level in these runs")
    dispersion: float | None = Field(description="machines' Pearson chi2/df within cells")
    dispersion_df: int
    dispersion_p: float | None
    widened: bool = Field(description="intervals widened by sqrt(dispersion)")
    interval: str
    says: list[str]


@router.get("", response_model=ExplainRead, summary="Which factor explains the hit rate")
def explain_rate(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    _token: Viewer,
    job_id: Annotated[
        int | None, Query(ge=1, le=ID_MAX, description="only this job's runs")
    ] = None,
    scenario: Annotated[str | None, Query(max_length=40)] = None,
    go_version: Annotated[str | None, Query(max_length=40)] = None,
    label: Annotated[
        str | None, Query(max_length=40, description="count only hangs with this label")
    ] = None,
    signature: Annotated[
        str | None, Query(max_length=500, description="count only hangs with this signature")
    ] = None,
    since: Annotated[
        datetime | None, Query(description="only runs of jobs submitted since (ISO 8601)")
    ] = None,
) -> ExplainRead:
    """Kept until the runs change, like the overview's map (its panel asks after every
    change /live announces; a million runs cost a second and a half)."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)

    def make() -> ExplainRead:
        report = explain.explain(
            session,
            job_id=job_id,
            scenario=scenario,
            go_version=go_version,
            label=label,
            signature=signature,
            submitted_since=since,
        )
        return ExplainRead.model_validate(explain.as_dict(report))

    return answers(request).get_or_make(
        (request.url.path, str(request.query_params), data_version(session, settings)), make
    )
