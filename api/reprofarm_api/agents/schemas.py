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


class ResultAck(BaseModel):
    run_id: int
    status: str
    counted: bool = Field(description="false for a late result (run lost) or a repeat")
