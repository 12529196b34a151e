"""Run schemas, named by role and kept apart from the tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from reprofarm_db.models import Artifact, Run

from reprofarm_api.artifacts.schemas import ArtifactRead

RUNS_PAGE_DEFAULT = 100
RUNS_PAGE_MAX = 500
"""A page of runs with their results and artifacts: about 85 KB at the default
and 430 KB at the most (measured: runs with results, a tenth of them hung with
five artifacts), whatever the job's size; a job may hold 10,000 runs, and the
whole list of 2,500 in one answer took 3.9 s and 2.2 MB."""


class RunRead(BaseModel):
    id: int
    job_id: int
    attempt: int
    retry_of: int | None
    status: str
    scenario: str
    go_version: str
    cpus: int | None
    affinity: str
    pool: str | None
    agent_id: int | None
    iterations: int
    duration_s: float
    reason: str
    label: str | None = Field(
        description="the analyzer's verdict; None for a hang not analysed yet (pending)"
    )
    confidence: str | None = Field(
        None, description="strong, partial or weak: the confidence of the report behind label"
    )
    signature: str | None
    signature_key: str | None = Field(description="its bucket: GET /signatures/{key}/runs")
    leased_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    late_result: dict[str, Any] | None
    artifacts: list[ArtifactRead]

    @classmethod
    def of(cls, run: Run, artifacts: list[Artifact]) -> RunRead:
        return cls(
            id=run.id,
            job_id=run.job_id,
            attempt=run.attempt,
            retry_of=run.retry_of,
            status=run.status,
            scenario=run.scenario,
            go_version=run.go_version,
            cpus=run.cpus,
            affinity=run.affinity,
            pool=run.pool,
            agent_id=run.agent_id,
            iterations=run.iterations,
            duration_s=run.duration_s,
            reason=run.reason,
            label=run.label,
            confidence=run.label_confidence,
            signature=run.signature,
            signature_key=run.signature_key,
            leased_at=run.leased_at,
            finished_at=run.finished_at,
            result=run.result,
            late_result=run.late_result,
            artifacts=[ArtifactRead.of(a) for a in artifacts],
        )


class RunReadPage(BaseModel):
    """One page of runs, oldest first; follow ``next`` until it is null."""

    total: int = Field(description="runs that match, over all pages")
    limit: int
    offset: int
    next: str | None = Field(description="the next page's path and query; null on the last")
    runs: list[RunRead]
