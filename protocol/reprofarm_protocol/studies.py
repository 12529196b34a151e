"""Studies: jobs whose runs the controller creates as evidence arrives, until a stopping
rule answers their question or their budget runs out (docs/statistics.md, "Studies").

- ``verify``: is it fixed? Two arms, baseline and candidate, that differ in a few job
  fields (``ARM_FIELDS``), interleaved on the same cells.
- ``search``: where does it reproduce? Each cell of the matrix is decided on its own,
  between a rate of at least ``hi`` and at most ``lo``.

A study is a job (``kind`` tells which), so its runs are leased, cancelled, counted and
exported like any job's; these models are what a study adds."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from reprofarm_protocol.jobs import FanOut, JobCreate
from reprofarm_protocol.limits import Strict


class JobKind(StrEnum):
    MATRIX = "matrix"  # today's static matrix: every run created at submit
    VERIFY = "verify"
    SEARCH = "search"


class Arm(StrEnum):
    BASELINE = "baseline"
    CANDIDATE = "candidate"


ARM_FIELDS = (
    "go_version",
    "control_chance",
    "duration_s",
    "iterations",
    "workers",
    "stall_timeout_s",
    "process_dumps",
)
"""Job fields an arm may set differently from the other arm (``go_version`` is one Go
release; ``control_chance`` one chance, or null for hangtest's default)."""

ArmValue = str | int | float | None
Label = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z0-9-]+$")]


class StudyBudget(Strict):
    """When a study stops asking for runs although it has not decided."""

    runs: int | None = Field(
        1000, ge=2, le=1_000_000, description="runs created (retries of lost runs included)"
    )
    run_hours: float | None = Field(
        None, gt=0, le=1_000_000, description="summed run durations, finished and running"
    )

    @model_validator(mode="after")
    def _some(self) -> StudyBudget:
        if self.runs is None and self.run_hours is None:
            raise ValueError("a budget needs runs or run_hours (or both)")
        return self


class StudyCommon(JobCreate):
    """The job fields both kinds share (the matrix's axes make the cells), plus the
    budget and how the study reports its answer. ``repeats`` and ``fan_out`` are the
    study's to decide: a study refuses them."""

    budget: StudyBudget = Field(default_factory=StudyBudget)
    in_flight_per_cell: int = Field(
        2,
        ge=1,
        le=64,
        description="runs kept open per cell (per arm, in verify) while it is undecided, so "
        "agents never wait for the study to decide",
    )
    webhook_url: AnyHttpUrl | None = Field(
        None,
        description="POSTed the study's result when it decides (HMAC-SHA256 signed with the "
        "controller's REPROFARM_WEBHOOK_SECRET, retried through the outbox)",
    )

    @model_validator(mode="after")
    def _study_decides(self) -> StudyCommon:
        if self.repeats != 1:
            raise ValueError("repeats: a study decides how many runs each cell gets")
        if self.fan_out is not FanOut.ANY_AGENT:
            raise ValueError(
                "fan_out: a study's cells are hardware configurations already (each-agent "
                "is for static jobs)"
            )
        if self.wait_for_agents_s is not None:
            raise ValueError(
                "wait_for_agents_s: a study's cells come from the agents online now "
                "(their hardware configurations)"
            )
        return self


class VerifyCreate(StudyCommon):
    """Is it fixed? ``baseline`` and ``candidate`` set fields of ``ARM_FIELDS`` over the
    common ones, e.g. ``{"go_version": "1.25.5"}`` against ``{"go_version": "1.27.3"}``."""

    kind: Literal["verify"] = "verify"
    baseline: dict[str, ArmValue] = Field(default_factory=dict, max_length=len(ARM_FIELDS))
    candidate: dict[str, ArmValue] = Field(default_factory=dict, max_length=len(ARM_FIELDS))
    margin: float = Field(
        4.0,
        ge=1,
        le=1000,
        description="fixed means: the candidate's rate is below the baseline's / margin, at 95%",
    )
    label: Label | None = Field(
        None,
        description="the bug's label (docs/analyzer.md); default: the baseline's most common "
        "hang label",
    )

    @model_validator(mode="after")
    def _one_version(self) -> VerifyCreate:
        if len(self.go_versions) != 1 or len(self.chances()) != 1:
            raise ValueError(
                "go_versions/control_chance: a verify study compares two arms; give one Go "
                "version and one chance in common, and the differences in baseline/candidate"
            )
        return self

    @model_validator(mode="after")
    def _arms(self) -> VerifyCreate:
        for arm in ("baseline", "candidate"):
            overrides: dict[str, ArmValue] = getattr(self, arm)
            for key in overrides:
                if key not in ARM_FIELDS:
                    raise ValueError(
                        f"{arm}.{key[:40]}: an arm may set only {', '.join(ARM_FIELDS)}"
                    )
            job = self.arm_spec(arm)  # each arm must be a valid job on its own
            if "go_version" in overrides:  # stored as the axis stores it: "1.25.5"
                overrides["go_version"] = job.go_versions[0]
            if "control_chance" in overrides:
                overrides["control_chance"] = job.chances()[0]
        if self.arm_spec("baseline") == self.arm_spec("candidate"):
            raise ValueError("candidate: the arms are the same job; set a field differently")
        return self

    def arm_spec(self, arm: str) -> JobCreate:
        """One arm as the job it runs (its fields over the common ones), validated."""
        overrides = dict(getattr(self, arm))
        base = self.model_dump(include=set(JobCreate.model_fields))
        if "go_version" in overrides:
            base["go_versions"] = [overrides.pop("go_version")]
        if "control_chance" in overrides:
            chance = overrides.pop("control_chance")
            base["control_chance"] = None if chance is None else [chance]
        try:
            return JobCreate.model_validate({**base, **overrides})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"][:1]) or "fields"
            where = "go_version" if where == "go_versions" else where
            raise ValueError(f"{arm}.{where}: {first['msg']}") from None


class SearchCreate(StudyCommon):
    """Where does it reproduce? Every cell of the matrix (hardware configuration x CPU
    count x affinity x Go version x control chance) gets a sequential decision."""

    kind: Literal["search"] = "search"
    lo: float = Field(0.005, ge=0, lt=1, description="a rate at most this: does not reproduce")
    hi: float = Field(0.05, gt=0, le=1, description="a rate at least this: reproduces")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="chance of calling a lo cell reproducing")
    beta: float = Field(0.05, gt=0, lt=0.5, description="chance of calling a hi cell not")
    max_runs_per_cell: int = Field(600, ge=2, le=100_000)

    @model_validator(mode="after")
    def _thresholds(self) -> SearchCreate:
        if self.lo >= self.hi:
            raise ValueError(f"lo: must be below hi ({self.lo:g} >= {self.hi:g})")
        return self


StudyCreate = Annotated[VerifyCreate | SearchCreate, Field(discriminator="kind")]


class Tally(BaseModel):
    """Counted runs and hangs of an arm or a cell, with the Wilson 95% interval."""

    runs: int
    hangs: int = Field(description="hangs that count (in verify: with the bug's label)")
    other_hangs: int = Field(0, description="hangs with another label: shown, not counted")
    pending: int = Field(0, description="hangs whose dumps are not analysed yet")
    open: int = Field(0, description="runs pending, ready or leased")
    ci95_low: float
    ci95_high: float


class StudyCell(BaseModel):
    index: int
    hardware: str
    hardware_fingerprint: str
    target: str
    go_version: str
    cpus: int | None
    affinity: str
    control_chance: float | None
    decision: str = Field(
        description="search: reproduces | does-not | undecided; verify: the cell's state "
        "(reproduces: the baseline hangs here; does-not: dropped, the baseline does not)"
    )
    runs: int
    hangs: int
    open: int
    ci95_low: float
    ci95_high: float
    llr: float | None = Field(None, description="search: the cell's log-likelihood ratio")
    arms: dict[str, Tally] | None = Field(None, description="verify: per arm")


class HardwareVerdict(BaseModel):
    hardware: str
    verdict: str
    baseline: Tally
    candidate: Tally
    p_value: float | None
    ratio_upper95: float | None


class TracePoint(BaseModel):
    """One step of the plot: after ``runs`` runs finished, the bound (verify: the 95%
    upper bound of the rate ratio candidate/baseline) or, for a search, the number of
    cells decided."""

    runs: int
    value: float | None


class StudyRead(BaseModel):
    job_id: int
    kind: JobKind
    status: str = Field(description="the job's status: queued, running, done or cancelled")
    decided: bool
    verdict: str | None = Field(
        None, description="verify: fixed | not-fixed | undecided (the budget ran out)"
    )
    reason: str = Field(description="why the study stopped, or what it waits for")
    spec: dict[str, Any]
    runs_used: int = Field(description="runs created so far (open ones included)")
    runs_counted: int
    runs_uniform: int | None = Field(
        None,
        description="search: runs a uniform allocation with the same per-cell error rates "
        "would need for these cells",
    )
    budget_runs: int | None
    run_hours_used: float
    budget_run_hours: float | None
    label: str | None = Field(None, description="verify: the bug's label")
    baseline: Tally | None = None
    candidate: Tally | None = None
    by_hardware: list[HardwareVerdict] | None = None
    p_value: float | None = None
    ratio_upper95: float | None = None
    more_clean_runs: int | None = Field(
        None, description="verify, undecided: clean candidate runs that would decide"
    )
    cells: list[StudyCell]
    trace: list[TracePoint]
