"""Jobs as QA submit them, and the messages of the agent lease protocol."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator, model_validator

from reprofarm_protocol.affinity import Scenario, check_policy
from reprofarm_protocol.hardware import HardwareInfo
from reprofarm_protocol.limits import MAX_LIST, Count, Name, Seconds, ShortText, Strict
from reprofarm_protocol.runs import RunResult

_GO_VERSION = re.compile(r"(?:go)?([0-9]{1,3}\.[0-9]{1,3}(?:\.[0-9]{1,3})?)", re.ASCII)

SELECTOR_KEYS = ("os", "arch", "hypervisor", "cpu_model", "fingerprint", "os_version")
"""The agent facts a job's selector may name (the keys reprofarm_db.registration stores)."""

SelectorValue = Annotated[str, StringConstraints(max_length=200)]
MachineSecret = Annotated[
    str, StringConstraints(min_length=32, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
]


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
    EXPIRED = "expired"  # no matching agent came online within the job's wait


FINAL_STATES = frozenset(
    {
        RunState.PASSED,
        RunState.HUNG,
        RunState.FAILED,
        RunState.ERROR,
        RunState.LOST,
        RunState.CANCELLED,
        RunState.EXPIRED,
    }
)


class JobState(StrEnum):
    QUEUED = "queued"  # accepted; planning not done yet
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # it waited for agents (wait_for_agents_s) and none came


class AgentState(StrEnum):
    """What an agent is doing now: the first that applies, in this order. The api
    derives it in SQL (``reprofarm_db.agents.state_of``); the dashboard shows it."""

    NEEDS_REBOOT = "needs-reboot"  # it could not kill a run's process: leases nothing
    OFFLINE = "offline"  # silent for two lease periods
    BUSY = "busy"  # online, holding a run
    IDLE = "idle"  # online, holding none


FINISHED_JOB_STATES = frozenset({JobState.DONE, JobState.CANCELLED, JobState.EXPIRED})

OPEN_RUN_STATES = frozenset({RunState.PENDING, RunState.READY, RunState.LEASED})
"""States a run can still leave: a job with none of these left is finished."""

NOT_STARTED_RUN_STATES = frozenset({RunState.PENDING, RunState.READY})
"""Open states no agent holds yet: a cancel or an expiry ends these runs at once."""

COUNTED_RUN_STATES = frozenset({RunState.PASSED, RunState.HUNG, RunState.FAILED})
"""Outcomes of the test itself: the runs a hit rate's denominator counts (errors, lost,
cancelled and expired runs never enter a rate). Rollups, statistics and views read this."""

INITIAL_RUN_STATES = frozenset({RunState.PENDING, RunState.READY})
"""A run is created pending (waiting for its builds), or ready (a lost run's retry)."""

RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.PENDING: frozenset({RunState.READY, RunState.CANCELLED, RunState.EXPIRED}),
    RunState.READY: frozenset({RunState.LEASED, RunState.CANCELLED, RunState.EXPIRED}),
    # From a lease: the agent's result (``cancelled`` when its job was cancelled meanwhile
    # and the run did not hang), or ``lost`` when the lease ran out.
    RunState.LEASED: frozenset(
        {
            RunState.PASSED,
            RunState.HUNG,
            RunState.FAILED,
            RunState.ERROR,
            RunState.CANCELLED,
            RunState.LOST,
        }
    ),
    **{state: frozenset() for state in FINAL_STATES},
}
"""Every step a run may take, and no other: the one state machine of runs. A lost run
never comes back (its retry is a new run, so a late result is kept, never counted)."""

JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset(
        {JobState.RUNNING, JobState.DONE, JobState.CANCELLED, JobState.EXPIRED}
    ),
    JobState.RUNNING: frozenset({JobState.DONE, JobState.CANCELLED, JobState.EXPIRED}),
    **{state: frozenset() for state in FINISHED_JOB_STATES},
}
"""Every step a job may take: planned, then finished one way; a finished job stays so."""


CpuCount = int | Literal["all"]
Chance = Annotated[float, Field(ge=0, le=1)]


def _all_cpus() -> list[CpuCount]:
    return ["all"]


class JobCreate(Strict):
    """What a job asks for. The matrix go_versions x cpus x affinities x repeats
    (x agents, with fan-out each-agent) expands into runs."""

    scenario: Scenario = Field(description="which hangtest scenario")
    go_versions: list[str] = Field(
        default_factory=lambda: ["1.27.3"],
        min_length=1,
        max_length=10,
        description="Go releases to build hangtest with (e.g. 1.25.5, 1.27.3)",
    )
    pools: list[Name] = Field(
        default_factory=list, max_length=MAX_LIST, description="agent pools, e.g. windows-arm64"
    )
    agents: list[Name] = Field(default_factory=list, max_length=MAX_LIST, description="agent names")
    selector: dict[str, SelectorValue] = Field(
        default_factory=dict,
        max_length=len(SELECTOR_KEYS),
        description='hardware facts an agent must have, e.g. {"arch": "arm64"}',
    )
    fan_out: FanOut = FanOut.ANY_AGENT
    cpus: list[CpuCount] = Field(default_factory=_all_cpus, min_length=1, max_length=MAX_LIST)
    affinities: list[str] = Field(
        default_factory=lambda: ["compact"], min_length=1, max_length=MAX_LIST
    )
    repeats: int = Field(1, ge=1, le=100_000, description="runs per matrix cell")
    duration_s: float | None = Field(None, gt=0, le=7 * 24 * 3600)
    iterations: int | None = Field(None, ge=1, le=10**12, description="per worker")
    workers: int = Field(10, ge=1, le=1000)
    stall_timeout_s: float = Field(30.0, gt=0, le=24 * 3600)
    control_chance: list[Chance] | None = Field(
        None,
        min_length=1,
        max_length=MAX_LIST,
        description="control-deadlock's -control-chance, an axis like cpus: a number or a "
        "list (e.g. [0, 1e-6, 1e-3]); null leaves hangtest's default",
    )
    process_dumps: int = Field(2, ge=0, le=5, description="process dumps per hang")
    priority: int = Field(0, ge=-100, le=100, description="higher leases first")
    wait_for_agents_s: float | None = Field(
        None,
        gt=0,
        le=30 * 24 * 3600,
        description="wait this long for matching agents instead of refusing a job none can "
        "run now: cells come from the job's own axes (checked against registered agents where "
        "any match), and runs not started by then end expired",
    )

    @field_validator("go_versions")
    @classmethod
    def _versions(cls, value: list[str]) -> list[str]:
        out = []
        for v in value:
            match = _GO_VERSION.fullmatch(v)
            if match is None:
                raise ValueError(f"{v[:40]!r} is not a Go version such as 1.27.3")
            out.append(match.group(1))
        return out

    @field_validator("control_chance", mode="before")
    @classmethod
    def _one_chance(cls, value: object) -> object:
        """A single number (the field's type before it became an axis) is a list of one."""
        return [value] if isinstance(value, int | float) and not isinstance(value, bool) else value

    @field_validator("cpus")
    @classmethod
    def _cpus(cls, value: list[CpuCount]) -> list[CpuCount]:
        for c in value:
            if isinstance(c, int) and not 1 <= c <= 4096:
                raise ValueError(f"CPU counts must be between 1 and 4096, got {c}")
        return value

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key not in SELECTOR_KEYS:
                raise ValueError(f"{key[:40]!r} is not one of {', '.join(SELECTOR_KEYS)}")
        return value

    @field_validator("affinities")
    @classmethod
    def _affinities(cls, value: list[str]) -> list[str]:
        return [check_policy(a) for a in value]

    def chances(self) -> list[float | None]:
        """The control-chance axis; one null cell (hangtest's default) when not given."""
        return list(self.control_chance) if self.control_chance else [None]

    @model_validator(mode="after")
    def _length(self) -> JobCreate:
        if self.duration_s is None and self.iterations is None:
            self.iterations = 100_000
        return self


class RebootReport(Strict):
    """Sent at the first registration after the agent rebooted its machine because
    a run's process could not be killed (``--reboot-when-needed``)."""

    requested_at: datetime
    run_id: int | None = Field(None, ge=1, le=2**63 - 1)
    boot_time_changed: bool = Field(
        description="the OS boot time moved: the machine really restarted (a configured "
        "command that does not reboot, as in tests, leaves it unchanged)"
    )


class AgentRegister(Strict):
    name: Name
    pools: list[Name] = Field(default_factory=list, max_length=MAX_LIST)
    hardware: HardwareInfo
    agent_version: str = Field("unknown", min_length=1, max_length=60)
    machine_secret: MachineSecret | None = Field(
        None,
        description="a random secret the agent keeps from its first registration: only the "
        "machine that holds it (or an admin) may register this name again",
    )
    reboot: RebootReport | None = Field(
        None, description="the reboot this agent made since its last registration"
    )


class AgentRegistered(BaseModel):
    agent_id: int
    token: str = Field(description="this agent's own bearer token: keep it secret")


class LeaseRequest(Strict):
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
    lease_token: str = Field(
        description="proves this lease: send it as X-Lease-Token with heartbeats, uploads and "
        "the result"
    )
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


class Heartbeat(Strict):
    iterations: Count = 0
    elapsed_s: Seconds = 0.0


class HeartbeatReply(BaseModel):
    cancel: bool = Field(description="stop the run: its job was cancelled")
    lease_valid: bool = Field(description="false: the lease expired and the run was re-queued")
    lease_expires_at: datetime | None


class RunReport(Strict):
    """An agent's final word on a run; posting it twice changes nothing."""

    result: RunResult


RESULTS_PER_BATCH = 100
"""Most results one ``POST /agents/me/results`` carries."""


class ReportedResult(Strict):
    """One result of a batch, proved as the single route proves it: the run, the
    secret of its lease (the single route's X-Lease-Token), the result."""

    run_id: int = Field(ge=1, le=2**31 - 1)
    lease_token: ShortText
    result: RunResult


class RunReports(Strict):
    """Results of several runs of the calling agent; each is answered on its own."""

    results: list[ReportedResult] = Field(min_length=1, max_length=RESULTS_PER_BATCH)
