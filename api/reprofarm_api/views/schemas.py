"""What the dashboard's pages read, one schema per page, kept apart from the tables.

Every rate is a ``RateCell``: counts and the numbers ``reprofarm_db.stats`` derives
from them (docs/statistics.md), never recomputed here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from reprofarm_db.hit_rates import Counts, GroupRow
from reprofarm_db.models import Agent, HardwareConfig, Run

from reprofarm_api.jobs.schemas import JobRead
from reprofarm_api.runs.schemas import RunRead


class RateCell(BaseModel):
    """A hit rate with what it rests on: ``hangs`` of ``runs`` (k/n)."""

    keys: dict[str, Any] = Field(description="the group's keys (hardware, cpus, ...)")
    runs: int = Field(description="counted runs: passed + hung + failed")
    hangs: int
    hit_rate: float | None
    ci95_low: float | None = Field(description="Wilson 95% interval")
    ci95_high: float | None
    hangs_per_million_iterations: float | None
    iterations: int
    errors: int = Field(description="never counted")
    lost: int = Field(description="never counted")
    runs_for_95pct: int | None

    @classmethod
    def of(cls, keys: dict[str, Any], counts: Counts) -> RateCell:
        """From counts alone: the per-agent test is left to the statistics api
        (it costs a chi-square per cell, and a map shows thousands)."""
        numbers = GroupRow(keys={}, counts=counts).as_dict()
        return cls(keys=keys, **{k: numbers[k] for k in _NUMBERS})


_NUMBERS = (
    "runs",
    "hangs",
    "hit_rate",
    "ci95_low",
    "ci95_high",
    "hangs_per_million_iterations",
    "iterations",
    "errors",
    "lost",
    "runs_for_95pct",
)


class HardwareRead(BaseModel):
    fingerprint: str
    label: str
    cpu_model: str
    arch: str
    logical_cpus: int
    physical_cores: int
    hypervisor: str
    os: str
    os_version: str = Field(description="the OS build")
    first_seen: datetime

    @classmethod
    def of(cls, c: HardwareConfig) -> HardwareRead:
        return cls(
            fingerprint=c.fingerprint,
            label=c.label,
            cpu_model=c.cpu_model,
            arch=c.arch,
            logical_cpus=c.logical_cpus,
            physical_cores=c.physical_cores,
            hypervisor=c.hypervisor,
            os=c.os,
            os_version=c.os_version,
            first_seen=c.first_seen,
        )


class MapRow(BaseModel):
    hardware: HardwareRead
    total: RateCell = Field(description="all of this hardware's runs under the filters")
    cells: list[RateCell | None] = Field(description="one per column, None where no run is")


class OverviewRead(BaseModel):
    """The hardware x configuration map: one page of rows."""

    columns: list[str] = Field(description="the keys of the columns (one or two)")
    column_values: list[list[Any]] = Field(description="each column's key values, in order")
    rows: list[MapRow]
    total_rows: int = Field(description="hardware configurations with runs under the filters")
    offset: int
    limit: int


class ComparisonRead(BaseModel):
    """Groups that differ only in ``compare``, tested two by two."""

    compare: str
    groups: list[RateCell]
    comparisons: list[dict[str, Any]] = Field(
        description="Fisher's exact test per pair, with Benjamini-Hochberg q-values"
    )


class JobPage(BaseModel):
    total: int
    jobs: list[JobRead]


class JobCell(BaseModel):
    """One cell of a job's matrix: its runs in every state, and its hit rate."""

    target: str = Field(description="any agent, pool NAME or agent NAME")
    go_version: str
    cpus: int | None
    affinity: str
    by_status: dict[str, int]
    rate: RateCell


class JobView(BaseModel):
    job: JobRead
    cells: list[JobCell]


class RunRow(BaseModel):
    """A run as a table row (no result, no artifacts: see RunView)."""

    id: int
    attempt: int
    retry_of: int | None
    status: str
    go_version: str
    cpus: int | None
    affinity: str
    pool: str | None
    agent_id: int | None
    agent: str | None
    iterations: int
    duration_s: float
    reason: str = Field(description="cut at 200 characters")
    label: str | None
    confidence: str | None = Field(None, description="strong, partial or weak (of the label)")
    signature_key: str | None
    leased_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, r: Run, agent: str | None) -> RunRow:
        return cls(
            id=r.id,
            attempt=r.attempt,
            retry_of=r.retry_of,
            status=r.status,
            go_version=r.go_version,
            cpus=r.cpus,
            affinity=r.affinity,
            pool=r.pool,
            agent_id=r.agent_id,
            agent=agent,
            iterations=r.iterations,
            duration_s=r.duration_s,
            reason=r.reason[:200],
            label=r.label,
            confidence=r.label_confidence,
            signature_key=r.signature_key,
            leased_at=r.leased_at,
            finished_at=r.finished_at,
        )


class RunPage(BaseModel):
    total: int = Field(description="runs matching the filter")
    runs: list[RunRow]


class AgentRow(BaseModel):
    id: int
    name: str
    pools: list[str]
    target: str
    agent_version: str
    needs_reboot: bool
    last_reboot_at: datetime | None
    current_run_id: int | None
    last_seen: datetime
    online: bool

    @classmethod
    def of(cls, a: Agent, *, online: bool) -> AgentRow:
        return cls(
            id=a.id,
            name=a.name,
            pools=a.pools,
            target=a.target,
            agent_version=a.agent_version,
            needs_reboot=a.needs_reboot,
            last_reboot_at=a.last_reboot_at,
            current_run_id=a.current_run_id,
            last_seen=a.last_seen,
            online=online,
        )


class BuildBrief(BaseModel):
    id: int
    go_version: str
    toolchain_version: str
    target: str
    sha256: str
    fix_present: bool


class AnalysisBrief(BaseModel):
    artifact_id: int
    kind: str
    label: str | None
    confidence: str | None = Field(None, description="strong, partial or weak")
    signature: str | None
    error: str | None


class RunView(BaseModel):
    """Everything a run's page shows, in one answer."""

    run: RunRead
    job_status: str
    agent: AgentRow | None
    hardware: HardwareRead | None
    build: BuildBrief | None
    analyses: list[AnalysisBrief] = Field(description="the analyzer's record per dump")


class HardwareView(BaseModel):
    hardware: HardwareRead
    agents: list[AgentRow] = Field(description="agents whose current hardware this is")
    rates: list[RateCell] = Field(description="by scenario, Go version, CPUs and affinity")
