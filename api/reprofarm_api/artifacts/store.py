"""Artifact bytes on local disk: partial uploads by run and name, finished
ones by sha256 (content-addressed: the same dump uploaded twice is one file)."""

from __future__ import annotations

import hashlib
from pathlib import Path


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "partial").mkdir(parents=True, exist_ok=True)
        (root / "blobs").mkdir(parents=True, exist_ok=True)

    def partial(self, run_id: int, name: str) -> Path:
        return self.root / "partial" / f"{run_id}-{name}"

    def blob(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    def finish(self, partial: Path, sha256: str) -> Path | None:
        """Move a complete upload to its blob if its hash is right; else delete
        it and return None (the agent uploads again from zero)."""
        digest = hashlib.sha256()
        with partial.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != sha256:
            partial.unlink(missing_ok=True)
            return None
        blob = self.blob(sha256)
        partial.replace(blob)
        return blob
