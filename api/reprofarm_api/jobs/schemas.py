"""Job schemas, named by role and kept apart from the tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from reprofarm_db.models import Job
from reprofarm_protocol.studies import JobKind


class JobRead(BaseModel):
    id: int
    kind: JobKind = Field(
        description="matrix: every run made at submit; verify or search: a study, whose runs "
        "come as evidence arrives (GET /api/v1/studies/{id})"
    )
    status: str = Field(description="queued, running, done or cancelled")
    spec: dict[str, Any]
    targets: list[str] = Field(description="build targets (GOOS/GOARCH) of the eligible agents")
    skipped: list[dict[str, Any]] = Field(description="matrix cells not run, with the reason")
    runs: dict[str, int] = Field(description="run attempts by status")
    total_runs: int
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, job: Job, counts: dict[str, int]) -> JobRead:
        return cls(
            id=job.id,
            kind=JobKind(job.kind),
            status=job.status,
            spec=job.spec,
            targets=job.targets,
            skipped=job.skipped,
            runs=counts,
            total_runs=sum(counts.values()),
            created_at=job.created_at,
            finished_at=job.finished_at,
        )


class EligibleAgent(BaseModel):
    name: str
    pools: list[str]
    target: str
    logical_cpus: int


class DryRun(BaseModel):
    runs: int = Field(description="how many runs the job would create")
    cells: list[dict[str, Any]] = Field(description="the first 1000 runs, one object each")
    skipped: list[dict[str, Any]]
    targets: list[str]
    eligible_agents: list[EligibleAgent]
