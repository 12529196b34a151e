"""Agent schemas, named by role and kept apart from the tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from reprofarm_protocol.controls import AgentHealth


class AgentRead(BaseModel):
    id: int
    name: str
    pools: list[str]
    target: str
    logical_cpus: int
    hardware_fingerprint: str
    facts: dict[str, Any]
    online: bool
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


class AgentPage(BaseModel):
    """One page of agents, by name."""

    total: int = Field(description="agents that match the filters, over all pages")
    limit: int
    offset: int
    agents: list[AgentRead]


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
