"""Streaming, resumable, sha256-checked artifact upload; streaming download.

Upload: ``PUT /api/v1/runs/{run}/artifacts/{name}`` with the headers
``X-Lease-Token`` (the run's lease), ``X-Artifact-Kind``, ``X-Artifact-Sha256``
and ``X-Artifact-Size`` (the whole file) and, to resume, ``Content-Range: bytes
START-END/SIZE`` where START is the ``received`` count that ``GET`` on the same
path returns. One upload of an artifact at a time: a second concurrent one is
told 409 (retry). File work runs in threads, never on the event loop.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import AfterValidator, BaseModel
from reprofarm_db import artifacts
from reprofarm_db.engine import transaction
from reprofarm_db.errors import Conflict, Invalid
from reprofarm_protocol.limits import INT64_MAX
from reprofarm_protocol.runs import ArtifactKind
from sqlalchemy.orm import Session, sessionmaker

from reprofarm_api.artifacts.store import ArtifactStore, UploadBusy
from reprofarm_api.db_slots import DatabaseSlots
from reprofarm_api.deps import ArtifactId, CurrentAgentId, LeaseToken, RunId, SessionDep, Viewer
from reprofarm_api.responses import AUTHENTICATED, errors

router = APIRouter(prefix="/api/v1", tags=["artifacts"], responses=AUTHENTICATED)
_SHA = re.compile(r"^[0-9a-f]{64}$")
_RANGE = re.compile(r"^bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19})$")


def _not_a_dot_name(name: str) -> str:
    if name in (".", ".."):
        raise ValueError("'.' and '..' are not artifact names")
    return name


ArtifactName = Annotated[
    str,
    Path(
        max_length=200,
        pattern=r"^[A-Za-z0-9._-]{1,200}$",
        description="1 to 200 of A-Z a-z 0-9 . _ - (not . or ..)",
    ),
    AfterValidator(_not_a_dot_name),
]


class UploadState(BaseModel):
    name: str
    received: int
    bytes: int
    complete: bool


def _validate(kind: str, sha256: str, size: int, limit: int) -> None:
    if kind not in ArtifactKind.__members__.values():
        raise Invalid(
            "X-Artifact-Kind",
            f"{kind[:40]!r} is not one of {', '.join(k.value for k in ArtifactKind)}",
        )
    if not _SHA.match(sha256):
        raise Invalid("X-Artifact-Sha256", "must be 64 lowercase hex digits")
    if size < 0:
        raise Invalid("X-Artifact-Size", "must not be negative")
    if size > limit:
        raise HTTPException(
            413,
            {
                "message": f"X-Artifact-Size: {size} bytes is over the limit of {limit}",
                "field": "X-Artifact-Size",
            },
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


@router.put(
    "/runs/{run_id}/artifacts/{name}",
    response_model=UploadState,
    summary="Upload (or resume uploading) one artifact of a run",
    responses=errors(404, 409),
)
async def upload(
    run_id: RunId,
    name: ArtifactName,
    request: Request,
    agent_id: CurrentAgentId,
    x_artifact_kind: Annotated[str, Header(max_length=40)],
    x_artifact_sha256: Annotated[str, Header(max_length=64)],
    x_artifact_size: Annotated[int, Header(ge=0, le=INT64_MAX)],
    content_range: Annotated[str | None, Header(max_length=80)] = None,
    lease_token: LeaseToken = None,
) -> UploadState:
    settings = request.app.state.settings
    store: ArtifactStore = request.app.state.artifacts
    _validate(x_artifact_kind, x_artifact_sha256, x_artifact_size, settings.max_artifact_bytes)
    upload = _Upload(
        sessions=request.app.state.sessions,
        slots=request.app.state.db_slots,
        store=store,
        agent_id=agent_id,
        run_id=run_id,
        lease_token=lease_token,
        name=name,
        kind=x_artifact_kind,
        sha256=x_artifact_sha256,
        size=x_artifact_size,
        start=_start_offset(content_range, x_artifact_size),
    )
    lock = store.upload_lock(upload.partial)
    try:
        await run_in_threadpool(lock.__enter__)
    except UploadBusy as exc:
        raise Conflict(str(exc)) from None
    try:
        state = await upload.run(request.stream())
    finally:
        await run_in_threadpool(lock.__exit__, None, None, None)
    if state.complete:
        request.state.poke_relay = True  # its analysis task is in the outbox: send it now
    return state


@dataclass
class _Upload:
    """One upload request, run while it holds the artifact's lock. File and
    database work happen in threads; only reading the body is async."""

    sessions: sessionmaker[Session]
    slots: DatabaseSlots
    store: ArtifactStore
    agent_id: int
    run_id: int
    lease_token: str | None
    name: str
    kind: str
    sha256: str
    size: int
    start: int

    @property
    def partial(self) -> FilePath:
        return self.store.partial(self.run_id, self.name)

    async def run(self, body: AsyncIterator[bytes]) -> UploadState:
        artifact_id, received, complete, created = await self.slots.run(self._open)
        if complete:
            return UploadState(name=self.name, received=self.size, bytes=self.size, complete=True)
        if self.start != received:
            if created:
                await self.slots.run(self._forget, artifact_id)
            raise HTTPException(
                409,
                {
                    "message": f"Content-Range: resume from byte {received}, not {self.start}",
                    "received": received,
                },
            )
        f = await run_in_threadpool(self.store.open_partial, self.partial, received)
        written = received
        try:
            async for chunk in body:
                written += len(chunk)
                if written > self.size:
                    raise HTTPException(413, {"message": "the body is longer than X-Artifact-Size"})
                await run_in_threadpool(f.write, chunk)
        except BaseException:
            await run_in_threadpool(f.close)
            if received == 0:
                await self.slots.run(self._forget, artifact_id)
            raise
        await run_in_threadpool(f.close)
        return await self.slots.run(self._record, artifact_id, written)

    def _open(self) -> tuple[int, int, bool, bool]:
        with transaction(self.sessions) as session:
            row, created = artifacts.open_upload(
                session,
                agent_id=self.agent_id,
                run_id=self.run_id,
                lease_token=self.lease_token,
                name=self.name,
                kind=self.kind,
                sha256=self.sha256,
                size=self.size,
                path=str(self.partial),
            )
            return row.id, row.received, row.complete, created

    def _forget(self, artifact_id: int) -> None:
        """A refused first upload leaves nothing: no row, no empty file."""
        with transaction(self.sessions) as session:
            artifacts.forget_unstarted(session, artifact_id=artifact_id)
        self.store.discard(self.partial)

    def _record(self, artifact_id: int, written: int) -> UploadState:
        whole = written == self.size
        blob = self.store.finish(self.partial, self.sha256) if whole else None
        with transaction(self.sessions) as session:
            row = artifacts.record_progress(
                session,
                artifact_id=artifact_id,
                received=0 if whole and blob is None else written,
                blob=str(blob) if blob is not None else None,
            )
            state = UploadState(
                name=self.name, received=row.received, bytes=row.bytes, complete=row.complete
            )
        if whole and blob is None:
            raise Invalid(
                "X-Artifact-Sha256",
                "the uploaded bytes have another sha256; upload again from byte 0",
            )
        return state


@router.get(
    "/runs/{run_id}/artifacts/{name}",
    response_model=UploadState,
    summary="How much of an upload the api has",
    responses=errors(404, 409),
)
def upload_state(
    run_id: RunId,
    name: ArtifactName,
    session: SessionDep,
    agent_id: CurrentAgentId,
    lease_token: LeaseToken = None,
) -> UploadState:
    """Only for the run's own lease (the agent resuming it)."""
    row = artifacts.upload_state(
        session, agent_id=agent_id, run_id=run_id, lease_token=lease_token, name=name
    )
    if row is None:
        return UploadState(name=name, received=0, bytes=0, complete=False)
    return UploadState(name=name, received=row.received, bytes=row.bytes, complete=row.complete)


@router.get(
    "/artifacts/{artifact_id}",
    response_class=FileResponse,
    summary="Download an artifact (streamed)",
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the bytes"},
        **errors(404, 409),
    },
)
def download(artifact_id: ArtifactId, session: SessionDep, _token: Viewer) -> FileResponse:
    a = artifacts.get_or_raise(session, artifact_id=artifact_id)
    if not a.complete:
        raise Conflict(f"artifact {artifact_id} is still uploading ({a.received} of {a.bytes})")
    return FileResponse(
        a.path,
        filename=a.name,
        media_type="application/octet-stream",
        headers={"X-Artifact-Sha256": a.sha256},
    )
