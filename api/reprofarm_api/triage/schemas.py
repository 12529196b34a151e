"""Triage schemas: the analyzer's report plus the farm's evidence for its signature."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from reprofarm_protocol.analysis import Analysis


class HardwareHitsRead(BaseModel):
    hardware: str = Field(description="the configuration's fingerprint")
    label: str = Field(description="the configuration, readable (CPU, OS, hypervisor)")
    runs: int = Field(description="counted runs of the scenarios the signature appeared in")
    hangs: int = Field(description="those runs that hung with this signature")
    ci95_low: float = Field(description="Wilson 95% interval of hangs/runs")
    ci95_high: float


class RunMarkRead(BaseModel):
    id: int
    finished_at: datetime | None
    go_version: str
    hardware: str


class FarmBucketRead(BaseModel):
    key: str = Field(description="the bucket: GET /signatures/{key}/runs")
    signature: str
    label: str
    match: str = Field(
        description="exact (the same signature), or similar (the stuck goroutines overlap,"
        " whatever the label: see similarity and reason)"
    )
    similarity: float = Field(
        description="Jaccard overlap of the stuck goroutines (function chains, wait states"
        " aside); 1 when exact"
    )
    reason: str = Field(
        description="why this bucket: the same signature, or the stacks shared and the"
        " bucket's rule"
    )
    hung_runs: int
    by_hardware: list[HardwareHitsRead]
    first_run: RunMarkRead | None
    latest_run: RunMarkRead | None
    go_versions_seen: list[str] = Field(description="Go versions of the bucket's hung runs")
    go_versions_never: list[str] = Field(
        description="Go versions the farm ran these scenarios with and never saw it"
    )


class SeenInCiRead(BaseModel):
    key: str = Field(description="the signature's key: GET /signatures/{key}/seen-in-ci lists them")
    dumps: int = Field(description="triaged dumps with this signature that were kept")
    first_sent: datetime | None
    last_sent: datetime | None


class KeptDumpRead(BaseModel):
    """A kept triaged dump, without its bytes or report."""

    id: int
    sent_by: str = Field(description="the name of the token that sent it")
    sent_at: datetime
    source: str | None = Field(description="where its sender said it comes from")
    label: str
    confidence: str = Field(description="strong, partial or weak (of the label)")
    size: int = Field(description="bytes, as sent")


class TriageRead(Analysis):
    """The analysis (as ``reprofarm analyze --json`` prints it), then the farm's evidence."""

    bucket: FarmBucketRead | None = Field(
        description="the farm's hung runs with this signature (or a similar one); null if none"
    )
    seen_in_ci: SeenInCiRead = Field(description="kept triaged dumps with this signature")
    kept_id: int | None = Field(
        description="the stored dump's id when keep=true (the earlier copy's when the same"
        " bytes were kept before: see already_kept), else null"
    )
    already_kept: bool = Field(
        False,
        description="keep=true and the same dump (by sha256) was kept before: not stored again",
    )
