"""Results of hangtest runs: what a run ended as and what it left behind."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from reprofarm_protocol.hardware import clip
from reprofarm_protocol.limits import Count, Seconds

Reason = Annotated[str, clip(2000)]
"""Text the agent writes about a run: cut, never refused (a result is evidence)."""
_CpuList = Annotated[list[Annotated[int, Field(ge=0, le=65535)]], Field(max_length=65536)]


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
    EXPORTS = "exports"  # export tables of the system DLLs, beside minidumps (analyzer)


class Artifact(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: ArtifactKind
    path: Annotated[str, clip(4096)]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: Count


class RunResult(BaseModel):
    """One hangtest process, from start to verified death."""

    model_config = ConfigDict(allow_inf_nan=False)

    status: RunStatus
    reason: Reason = Field(description="why it ended, apart from its exit code")
    iterations: Count
    duration_s: Seconds
    cpu_set: _CpuList = Field(description="the CPUs the child itself reported running on")
    requested_cpu_set: _CpuList
    gomaxprocs: int = Field(ge=0, le=65535)
    exit_code: int | None = Field(ge=-(2**31), le=2**32 - 1)
    errors: Count = 0
    first_error: Reason | None = None
    stalled_workers: list[Annotated[int, Field(ge=0, le=1_000_000)]] = Field(
        default_factory=list, max_length=1000
    )
    hangtest_version: Annotated[str, clip(100)] | None = None
    go_version: Annotated[str, clip(100)] | None = None
    binary_arch: Annotated[str, clip(40)] | None = None
    killed: bool = False
    unkillable: bool = Field(False, description="the process survived kill: reboot the machine")
    artifacts: list[Artifact] = Field(default_factory=list, max_length=64)


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
