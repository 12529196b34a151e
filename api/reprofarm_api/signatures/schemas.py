"""Analysis and signature schemas, named by role and kept apart from the tables."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from reprofarm_protocol.analysis import Analysis


class AnalysisRead(BaseModel):
    artifact_id: int
    run_id: int
    kind: str
    label: str | None = Field(description="None when the dump could not be read (see error)")
    confidence: str | None = Field(None, description="strong, partial or weak (of the label)")
    signature: str | None
    rules_version: int
    analyzed_at: datetime
    error: str | None
    report: Analysis | None = Field(description="the full triage: evidence, stacks, threads")


class BucketRead(BaseModel):
    key: str
    signature: str
    label: str
    runs: int = Field(description="hung runs with this signature")
    first_seen: datetime | None
    last_seen: datetime | None
    by_hardware: dict[str, int] = Field(description="runs per hardware fingerprint")
    by_go_version: dict[str, int]
    by_cpus: dict[str, int]
    example_runs: list[int]
    seen_in_ci: int = Field(0, description="kept triaged dumps (POST /triage) with this signature")
