"""Artifacts: every file a run leaves is named by kind, sha256 and size."""

from __future__ import annotations

import hashlib
from pathlib import Path

from reprofarm_protocol.runs import Artifact, ArtifactKind

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def describe_artifact(kind: ArtifactKind, path: Path) -> Artifact:
    return Artifact(kind=kind, path=str(path), sha256=sha256_file(path), bytes=path.stat().st_size)
