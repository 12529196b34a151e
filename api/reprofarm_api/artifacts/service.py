"""Coordinating one artifact upload: the lock, the database checks, the
streaming and the final record.

The rules (who may upload, limits, resumption) are ``reprofarm_db.artifacts``;
here is only the order of the steps and where each runs: database work in a
slot (``reprofarm_api.db_slots``), file work in a thread, reading the body on
the event loop. No slot is held while bytes stream or files are touched, so a
slow 8 GiB upload never keeps a connection from other requests, and completion
is a digest comparison and a rename (the bytes were hashed as they came).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException
from fastapi.concurrency import run_in_threadpool
from reprofarm_db import artifacts
from reprofarm_db.artifacts import RunLimits
from reprofarm_db.engine import transaction
from reprofarm_db.errors import Conflict, Invalid, TooLarge
from reprofarm_protocol.runs import ArtifactKind
from sqlalchemy.orm import Session, sessionmaker

from reprofarm_api.artifacts.schemas import UploadState
from reprofarm_api.artifacts.store import ArtifactStore, PartialFile, PartialLost, UploadBusy
from reprofarm_api.db_slots import DatabaseSlots

_SHA = re.compile(r"^[0-9a-f]{64}$")
_RANGE = re.compile(r"^bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19})$")


@dataclass(frozen=True)
class Upload:
    """One upload request, its headers checked (``parse``)."""

    agent_id: int
    run_id: int
    lease_token: str | None
    name: str
    kind: str
    sha256: str
    size: int
    start: int

    @classmethod
    def parse(
        cls,
        *,
        agent_id: int,
        run_id: int,
        lease_token: str | None,
        name: str,
        kind: str,
        sha256: str,
        size: int,
        content_range: str | None,
        max_bytes: int,
    ) -> Upload:
        """Raises Invalid naming the header at fault, or TooLarge over ``max_bytes``."""
        if kind not in ArtifactKind.__members__.values():
            raise Invalid(
                "X-Artifact-Kind",
                f"{kind[:40]!r} is not one of {', '.join(k.value for k in ArtifactKind)}",
            )
        if not _SHA.match(sha256):
            raise Invalid("X-Artifact-Sha256", "must be 64 lowercase hex digits")
        if size < 0:
            raise Invalid("X-Artifact-Size", "must not be negative")
        if size > max_bytes:
            raise TooLarge(
                "X-Artifact-Size",
                f"{size} bytes is over the limit (REPROFARM_MAX_ARTIFACT_BYTES={max_bytes})",
            )
        return cls(
            agent_id=agent_id,
            run_id=run_id,
            lease_token=lease_token,
            name=name,
            kind=kind,
            sha256=sha256,
            size=size,
            start=_start_offset(content_range, size),
        )


def _start_offset(content_range: str | None, size: int) -> int:
    if content_range is None:
        return 0
    m = _RANGE.match(content_range)
    if not m or int(m.group(3)) != size or int(m.group(1)) > int(m.group(2)) + 1:
        raise Invalid(
            "Content-Range", f"expected 'bytes START-END/{size}', got {content_range[:80]!r}"
        )
    return int(m.group(1))


@dataclass(frozen=True)
class Uploads:
    """What an upload needs from the app: built once, from the app's state."""

    sessions: sessionmaker[Session]
    slots: DatabaseSlots
    store: ArtifactStore
    limits: RunLimits

    async def put(self, upload: Upload, body: AsyncIterator[bytes]) -> UploadState:
        """Store the body's bytes from ``upload.start``; complete when they
        reach the announced size and hash. One upload of an artifact at a time
        (409 to a concurrent one, which retries)."""
        partial = self.store.partial(upload.run_id, upload.name)
        lock = self.store.upload_lock(partial)
        try:
            await run_in_threadpool(lock.__enter__)
        except UploadBusy as exc:
            raise Conflict(str(exc)) from None
        try:
            return await self._locked(upload, partial, body)
        finally:
            await run_in_threadpool(lock.__exit__, None, None, None)

    async def _locked(
        self, upload: Upload, partial: Path, body: AsyncIterator[bytes]
    ) -> UploadState:
        artifact_id, received, complete, created = await self.slots.run(self._open, upload, partial)
        if complete:
            return UploadState(
                name=upload.name, received=upload.size, bytes=upload.size, complete=True
            )
        if upload.start != received:
            if created:
                await self.slots.run(self._forget, artifact_id, partial)
            raise HTTPException(
                409,
                {
                    "message": f"Content-Range: resume from byte {received}, not {upload.start}",
                    "received": received,
                },
            )
        try:
            f = await run_in_threadpool(self.store.open_partial, partial, received)
        except PartialLost as exc:
            await self.slots.run(self._record, artifact_id, 0, None)
            raise HTTPException(
                409, {"message": f"{exc}: upload again from byte 0", "received": 0}
            ) from None
        try:
            await _stream(body, f, upload.size)
        except BaseException:
            await run_in_threadpool(f.close)
            if received == 0:
                await self.slots.run(self._forget, artifact_id, partial)
            raise
        await run_in_threadpool(f.close)
        if f.offset < upload.size:
            self.store.keep_hash(partial, f)
            return await self.slots.run(self._record, artifact_id, f.offset, None)
        try:
            blob = await run_in_threadpool(self.store.finish, partial, upload.sha256, f)
        except PartialLost as exc:  # removed as abandoned while this request was silent
            raise Conflict(f"{exc}: upload again from byte 0") from None
        if blob is None:
            await self.slots.run(self._record, artifact_id, 0, None)
            raise Invalid(
                "X-Artifact-Sha256",
                "the uploaded bytes have another sha256; upload again from byte 0",
            )
        return await self.slots.run(self._record, artifact_id, f.offset, blob)

    def _open(self, upload: Upload, partial: Path) -> tuple[int, int, bool, bool]:
        with transaction(self.sessions) as session:
            row, created = artifacts.open_upload(
                session,
                agent_id=upload.agent_id,
                run_id=upload.run_id,
                lease_token=upload.lease_token,
                name=upload.name,
                kind=upload.kind,
                sha256=upload.sha256,
                size=upload.size,
                path=str(partial),
                limits=self.limits,
            )
            return row.id, row.received, row.complete, created

    def _forget(self, artifact_id: int, partial: Path) -> None:
        """A refused first upload leaves nothing: no row, no empty file."""
        with transaction(self.sessions) as session:
            artifacts.forget_unstarted(session, artifact_id=artifact_id)
        self.store.discard(partial)

    def _record(self, artifact_id: int, received: int, blob: Path | None) -> UploadState:
        with transaction(self.sessions) as session:
            row = artifacts.record_progress(
                session,
                artifact_id=artifact_id,
                received=received,
                blob=str(blob) if blob is not None else None,
            )
            return UploadState(
                name=row.name, received=row.received, bytes=row.bytes, complete=row.complete
            )


async def _stream(body: AsyncIterator[bytes], f: PartialFile, size: int) -> None:
    """Write (and hash) the body; 413 as soon as it passes the announced size."""
    async for chunk in body:
        if f.offset + len(chunk) > size:
            raise HTTPException(413, {"message": "the body is longer than X-Artifact-Size"})
        if chunk:
            await run_in_threadpool(f.write, chunk)


def upload_state(
    session: Session, *, agent_id: int, run_id: int, lease_token: str | None, name: str
) -> UploadState:
    """How much of an upload the api has, for the run's own lease."""
    row = artifacts.upload_state(
        session, agent_id=agent_id, run_id=run_id, lease_token=lease_token, name=name
    )
    if row is None:
        return UploadState(name=name, received=0, bytes=0, complete=False)
    return UploadState(name=name, received=row.received, bytes=row.bytes, complete=row.complete)
