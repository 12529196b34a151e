"""Agent schemas, named by role and kept apart from the tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from reprofarm_protocol.controls import AgentHealth
from reprofarm_protocol.jobs import AgentState


class AgentRead(BaseModel):
    id: int
    name: str
    pools: list[str]
    target: str
    logical_cpus: int
    hardware_fingerprint: str
    facts: dict[str, Any]
    online: bool = Field(description="seen within two lease periods")
    state: AgentState = Field(
        description="needs-reboot, else offline, else busy (holding a run) or idle: "
        "the first that applies"
    )
    needs_reboot: bool
    last_reboot_at: datetime | None
    reboots: int
    agent_version: str
    current_run_id: int | None
    last_seen: datetime
    health: AgentHealth = Field(
        description="unhealthy: its last health check failed; it leases only its next "
        "check, and runs it finishes are not counted (docs/operations.md)"
    )
    health_detail: str
    health_changed_at: datetime | None


class AgentCounts(BaseModel):
    """Agents in each state and health, over every agent: the filters do not apply."""

    agents: int = Field(description="every agent")
    online: int = Field(description="seen within two lease periods, needs-reboot ones included")
    busy: int
    idle: int
    offline: int
    needs_reboot: int = Field(description="busy, idle, offline and needs_reboot add up to agents")
    healthy: int
    unhealthy: int
    unknown: int = Field(description="never checked")


class AgentPage(BaseModel):
    """One page of agents, by name."""

    total: int = Field(description="agents that match the filters, over all pages")
    limit: int
    offset: int
    agents: list[AgentRead]
    counts: AgentCounts = Field(description="over every agent, whatever the filters")


class ResultAck(BaseModel):
    run_id: int
    status: str
    counted: bool = Field(description="false for a late result (run lost) or a repeat")


class ResultOutcome(BaseModel):
    """What became of one result of a batch: stored (``http_status`` 200, committed
    before the reply) or refused with the status and message the single route
    would have answered (404, 409, 403 an unproven lease; 503 the database failed
    it: send it again)."""

    run_id: int
    http_status: int
    status: str | None = Field(description="the run's status once stored; null if refused")
    counted: bool = Field(description="false for a late result, a repeat, or a refusal")
    message: str | None = Field(description="why it was refused; null if stored")


class ResultsAck(BaseModel):
    results: list[ResultOutcome] = Field(description="one per result sent, in their order")
