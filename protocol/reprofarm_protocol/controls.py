"""Standing controls: what a pool is for, and the health of the agents in it.

A farm's hit rates are only as good as its harness. Two kinds of control keep it honest:

- a **negative control** pool holds machines that cannot have the bug (Linux agents, Wine
  agents): a hang of a bug scenario there is the harness's fault, so it is flagged as a
  harness problem and never counted as the bug;
- a **health check** is a run of the control scenario (``control-deadlock``, which hangs on
  every OS) pinned to one agent. It must hang, and its dumps must be captured and parse: an
  agent whose check fails is ``unhealthy``, leases nothing but its next check, and the runs
  it finishes meanwhile stop counting. A pool schedules them: the capture canary at each
  agent start, the positive control every ``positive_control_every_s``.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field, field_validator

from reprofarm_protocol.limits import Strict

_GO_VERSION = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}(?:\.[0-9]{1,3})?", re.ASCII)

CONTROL_SCENARIO = "control-deadlock"
"""The scenario that hangs on every OS: the only one a negative control may hang in."""

CANARY_CHANCE = 1.0
"""The canary's control chance: every iteration takes the locks in the inverted order, so
the child is stuck within milliseconds; the canary tests the capture, not the rate."""


class AgentHealth(StrEnum):
    UNKNOWN = "unknown"  # never checked (no pool of its schedules checks)
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class CheckKind(StrEnum):
    CANARY = "canary"  # at agent start: a deliberately stuck child, dumped and parsed
    POSITIVE_CONTROL = "positive-control"  # on schedule: the control at the pool's chance


class CheckTrigger(StrEnum):
    START = "start"
    SCHEDULE = "schedule"
    RECHECK = "recheck"  # an unhealthy agent, checked again after health_recheck_s
    MANUAL = "manual"


class CheckOutcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"  # lost, cancelled or expired: says nothing of the agent


class Discount(StrEnum):
    """Why a finished run is not counted (runs.discount; NULL: it counts)."""

    NEGATIVE_CONTROL = "negative-control"
    UNHEALTHY_AGENT = "unhealthy-agent"


Every = Annotated[float, Field(ge=60, le=30 * 24 * 3600)]


class PoolControls(Strict):
    """What an admin sets on a pool (``PUT /api/v1/pools/{name}``). An agent in several
    pools takes the strictest: negative if any pool is, the shortest schedule, the canary
    if any pool asks for it."""

    negative_control: bool = Field(
        False,
        description="machines that cannot have the bug (Linux, Wine): a hang of a bug scenario "
        "there is a harness problem, flagged and never counted",
    )
    canary_at_start: bool = Field(
        False, description="check each agent's dump capture when it starts (registers)"
    )
    positive_control_every_s: Every | None = Field(
        None, description="run the positive control on each agent this often (86400: daily)"
    )
    positive_control_chance: float = Field(
        1e-3,
        gt=0,
        le=1,
        description="its control chance: 1e-3 hangs every 1-second run (docs/control-rates.md)",
    )
    positive_control_duration_s: float = Field(2.0, gt=0, le=600)
    go_version: str = Field("1.27.3", description="the Go release checks build hangtest with")

    @field_validator("go_version")
    @classmethod
    def _go(cls, value: str) -> str:
        if _GO_VERSION.fullmatch(value) is None:
            raise ValueError(f"{value[:40]!r} is not a Go version such as 1.27.3")
        return value


class PoolRead(PoolControls):
    name: str
    agents: int = Field(description="registered agents in the pool")
    updated_at: datetime | None
    updated_by: str | None


class HealthCheckRead(BaseModel):
    id: int
    agent_id: int
    kind: CheckKind
    trigger: CheckTrigger
    job_id: int
    created_at: datetime
    finished_at: datetime | None
    outcome: CheckOutcome | None = Field(description="null while the check runs")
    detail: str = Field(description="what was seen: why it failed, or what passed")
