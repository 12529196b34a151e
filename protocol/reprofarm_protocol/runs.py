"""Results of hangtest runs: what a run ended as and what it left behind."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class RunStatus(StrEnum):
    """How a run ended. ``passed``/``hung``/``failed`` are outcomes of the test;
    ``error`` is an infrastructure failure and never enters a hit rate."""

    PASSED = "passed"
    HUNG = "hung"
    FAILED = "failed"
    ERROR = "error"


class ArtifactKind(StrEnum):
    GOROUTINES = "goroutines"
    MINIDUMP = "minidump"
    CORE = "core"
    STDOUT = "stdout"


class Artifact(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: ArtifactKind
    path: str
    sha256: str
    bytes: int


class RunResult(BaseModel):
    """One hangtest process, from start to verified death."""

    status: RunStatus
    reason: str = Field(description="why it ended, apart from its exit code")
    iterations: int
    duration_s: float
    cpu_set: list[int] = Field(description="the CPUs the child itself reported running on")
    requested_cpu_set: list[int]
    gomaxprocs: int
    exit_code: int | None
    errors: int = 0
    first_error: str | None = None
    stalled_workers: list[int] = Field(default_factory=list)
    hangtest_version: str | None = None
    go_version: str | None = None
    binary_arch: str | None = None
    killed: bool = False
    unkillable: bool = Field(False, description="the process survived kill: reboot the machine")
    artifacts: list[Artifact] = Field(default_factory=list)


class RunSummary(BaseModel):
    runs: int
    hangs: int
    passed: int
    failed: int
    errors: int
    hit_rate: float | None = Field(description="hangs / (runs - errors); None with no valid run")
    ci95_low: float | None
    ci95_high: float | None
    iterations: int


class LocalReport(BaseModel):
    """What ``reprofarm run --json`` prints."""

    runs: list[RunResult]
    summary: RunSummary
