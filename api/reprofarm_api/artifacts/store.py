"""Artifact bytes on local disk: partial uploads by run and name, finished
ones by sha256 (content-addressed: the same dump uploaded twice is one file).

One upload of a given artifact at a time: ``upload_lock`` takes an exclusive,
non-blocking lock beside the partial file, held from the first database check
to the final record, so two requests (in one api process or several on this
host) can never write, hash or move the same partial file at once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows hosts fall back to exclusive creation
    fcntl = None  # type: ignore[assignment]


class UploadBusy(Exception):  # noqa: N818 - reads as the state it reports
    """Another request is uploading this artifact right now."""


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "partial").mkdir(parents=True, exist_ok=True)
        (root / "blobs").mkdir(parents=True, exist_ok=True)

    def partial(self, run_id: int, name: str) -> Path:
        return self.root / "partial" / f"{run_id}-{name}"

    def blob(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    @contextmanager
    def upload_lock(self, partial: Path) -> Iterator[None]:
        """Hold the partial file for one upload; UploadBusy if another has it."""
        lock = partial.with_name(partial.name + ".lock")
        if fcntl is None:  # pragma: no cover
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                raise UploadBusy(f"artifact {partial.name} is being uploaded; retry") from None
        else:
            fd = os.open(lock, os.O_CREAT | os.O_WRONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if os.fstat(fd).st_ino != lock.stat().st_ino:
                    raise BlockingIOError  # the holder just removed it: someone else won
            except (BlockingIOError, FileNotFoundError):
                os.close(fd)
                raise UploadBusy(f"artifact {partial.name} is being uploaded; retry") from None
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
            os.close(fd)

    def open_partial(self, partial: Path, offset: int) -> BinaryIO:
        """The partial file, cut at ``offset`` (what the database says was kept)."""
        f = partial.open("r+b" if partial.exists() else "wb")
        f.seek(offset)
        f.truncate()
        return f

    def discard(self, partial: Path) -> None:
        partial.unlink(missing_ok=True)

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
