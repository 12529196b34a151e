"""Jobs as QA submit them, and the messages of the agent lease protocol."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from reprofarm_protocol.hardware import HardwareInfo
from reprofarm_protocol.runs import RunResult

Scenario = Literal["pipe-close-race", "socket-pipe-mix", "control-deadlock"]
_POLICIES = ("compact", "spread", "pcores", "ecores", "all")


class FanOut(StrEnum):
    """``each-agent``: every cell runs on every matching agent (compare machines);
    ``any-agent``: every cell runs once on whichever matching agent is free."""

    EACH_AGENT = "each-agent"
    ANY_AGENT = "any-agent"


class RunState(StrEnum):
    PENDING = "pending"  # waiting for its builds
    READY = "ready"
    LEASED = "leased"
    PASSED = "passed"
    HUNG = "hung"
    FAILED = "failed"
    ERROR = "error"
    LOST = "lost"  # the agent went silent; another attempt was queued
    CANCELLED = "cancelled"


FINAL_STATES = frozenset(
    {
        RunState.PASSED,
        RunState.HUNG,
        RunState.FAILED,
        RunState.ERROR,
        RunState.LOST,
        RunState.CANCELLED,
    }
)


class JobState(StrEnum):
    QUEUED = "queued"  # accepted; planning not done yet
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"


def _all_cpus() -> list[int | Literal["all"]]:
    return ["all"]


class JobCreate(BaseModel):
    """What a job asks for. The matrix go_versions x cpus x affinities x repeats
    (x agents, with fan-out each-agent) expands into runs."""

    model_config = ConfigDict(extra="forbid")

    scenario: Scenario = Field(description="which hangtest scenario")
    go_versions: list[str] = Field(
        default_factory=lambda: ["1.27.3"],
        min_length=1,
        max_length=10,
        description="Go releases to build hangtest with (e.g. 1.25.5, 1.27.3)",
    )
    pools: list[str] = Field(default_factory=list, description="agent pools, e.g. windows-arm64")
    agents: list[str] = Field(default_factory=list, description="agent names")
    selector: dict[str, str] = Field(
        default_factory=dict,
        description='hardware facts an agent must have, e.g. {"arch": "arm64"}',
    )
    fan_out: FanOut = FanOut.ANY_AGENT
    cpus: list[int | Literal["all"]] = Field(default_factory=_all_cpus, min_length=1)
    affinities: list[str] = Field(default_factory=lambda: ["compact"], min_length=1)
    repeats: int = Field(1, ge=1, le=100_000, description="runs per matrix cell")
    duration_s: float | None = Field(None, gt=0, le=7 * 24 * 3600)
    iterations: int | None = Field(None, ge=1, description="per worker")
    workers: int = Field(10, ge=1, le=1000)
    stall_timeout_s: float = Field(30.0, gt=0, le=24 * 3600)
    control_chance: float | None = Field(None, ge=0, le=1)
    process_dumps: int = Field(2, ge=0, le=5, description="process dumps per hang")
    priority: int = Field(0, ge=-100, le=100, description="higher leases first")

    @field_validator("go_versions")
    @classmethod
    def _versions(cls, value: list[str]) -> list[str]:
        for v in value:
            parts = v.removeprefix("go").split(".")
            if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
                raise ValueError(f"{v!r} is not a Go version such as 1.27.3")
        return [v.removeprefix("go") for v in value]

    @field_validator("cpus")
    @classmethod
    def _cpus(cls, value: list[int | str]) -> list[int | str]:
        for c in value:
            if isinstance(c, int) and c < 1:
                raise ValueError(f"CPU counts must be at least 1, got {c}")
        return value

    @field_validator("affinities")
    @classmethod
    def _affinities(cls, value: list[str]) -> list[str]:
        for a in value:
            if a not in _POLICIES and not (a.startswith("mask:0x") and len(a) > 7):
                raise ValueError(f"{a!r} is not one of {', '.join(_POLICIES)} or mask:0x<hex>")
        return value

    @model_validator(mode="after")
    def _length(self) -> JobCreate:
        if self.duration_s is None and self.iterations is None:
            self.iterations = 100_000
        return self


class AgentRegister(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    pools: list[str] = Field(default_factory=list)
    hardware: HardwareInfo
    agent_version: str = "unknown"


class AgentRegistered(BaseModel):
    agent_id: int
    token: str = Field(description="this agent's own bearer token: keep it secret")


class LeaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wait_s: float = Field(20.0, ge=0, le=60, description="long-poll: how long to wait for work")


class BuildRef(BaseModel):
    sha256: str
    target: str
    go_version: str
    bytes: int
    fix_present: bool
    url: str = Field(description="where to download the binary, relative to the api")


class LeasedRun(BaseModel):
    run_id: int
    job_id: int
    attempt: int
    lease_expires_at: datetime
    heartbeat_interval_s: float
    scenario: Scenario
    build: BuildRef
    cpus: int | None
    affinity: str
    workers: int
    iterations: int
    duration_s: float | None
    stall_timeout_s: float
    control_chance: float | None
    process_dumps: int


class Heartbeat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    iterations: int = Field(0, ge=0)
    elapsed_s: float = Field(0.0, ge=0)


class HeartbeatReply(BaseModel):
    cancel: bool = Field(description="stop the run: its job was cancelled")
    lease_valid: bool = Field(description="false: the lease expired and the run was re-queued")
    lease_expires_at: datetime | None


class RunReport(BaseModel):
    """An agent's final word on a run; posting it twice changes nothing."""

    model_config = ConfigDict(extra="forbid")

    result: RunResult
