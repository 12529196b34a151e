"""Artifact schemas, named by role and kept apart from the tables."""

from __future__ import annotations

from pydantic import BaseModel, Field
from reprofarm_db.models import Artifact


class UploadState(BaseModel):
    name: str
    received: int = Field(description="bytes the api holds: resume from this byte")
    bytes: int = Field(description="the artifact's announced size")
    complete: bool


class ArtifactRead(BaseModel):
    id: int
    name: str
    kind: str
    sha256: str
    bytes: int
    complete: bool
    url: str

    @classmethod
    def of(cls, a: Artifact) -> ArtifactRead:
        return cls(
            id=a.id,
            name=a.name,
            kind=a.kind,
            sha256=a.sha256,
            bytes=a.bytes,
            complete=a.complete,
            url=f"/api/v1/artifacts/{a.id}",
        )
