"""Streaming, resumable, sha256-checked artifact upload; streaming download.

Upload: ``PUT /api/v1/runs/{run}/artifacts/{name}`` with the headers
``X-Artifact-Kind``, ``X-Artifact-Sha256`` and ``X-Artifact-Size`` (the whole
file) and, to resume, ``Content-Range: bytes START-END/SIZE`` where START is
the ``received`` count that ``GET`` on the same path returns.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel
from reprofarm_db import artifacts
from reprofarm_db.engine import transaction
from reprofarm_db.errors import Conflict, Invalid, NotFound
from reprofarm_db.models import Run
from reprofarm_protocol.runs import ArtifactKind

from reprofarm_api.artifacts.store import ArtifactStore
from reprofarm_api.deps import CurrentAgentId, SessionDep, Viewer

router = APIRouter(prefix="/api/v1", tags=["artifacts"])
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


class UploadState(BaseModel):
    name: str
    received: int
    bytes: int
    complete: bool


def _validate(name: str, kind: str, sha256: str, size: int, limit: int) -> None:
    if not _NAME.match(name):
        raise Invalid("name", "use 1 to 200 of A-Z a-z 0-9 . _ -")
    if kind not in ArtifactKind.__members__.values():
        raise Invalid(
            "X-Artifact-Kind", f"{kind!r} is not one of {', '.join(k.value for k in ArtifactKind)}"
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
        raise Invalid("Content-Range", f"expected 'bytes START-END/{size}', got {content_range!r}")
    return int(m.group(1))


@router.put(
    "/runs/{run_id}/artifacts/{name}",
    response_model=UploadState,
    summary="Upload (or resume uploading) one artifact of a run",
)
async def upload(
    run_id: int,
    name: str,
    request: Request,
    agent_id: CurrentAgentId,
    x_artifact_kind: Annotated[str, Header()],
    x_artifact_sha256: Annotated[str, Header()],
    x_artifact_size: Annotated[int, Header()],
    content_range: Annotated[str | None, Header()] = None,
) -> UploadState:
    settings = request.app.state.settings
    store: ArtifactStore = request.app.state.artifacts
    _validate(
        name, x_artifact_kind, x_artifact_sha256, x_artifact_size, settings.max_artifact_bytes
    )
    start = _start_offset(content_range, x_artifact_size)
    partial = store.partial(run_id, name)

    def _open() -> tuple[int, int, bool]:
        with transaction(request.app.state.sessions) as session:
            run = session.get(Run, run_id)
            if run is None:
                raise NotFound(f"run {run_id} does not exist")
            if run.agent_id != agent_id:
                raise Conflict(f"run {run_id} is not this agent's")
            row = artifacts.open_upload(
                session,
                run_id=run_id,
                name=name,
                kind=x_artifact_kind,
                sha256=x_artifact_sha256,
                size=x_artifact_size,
                path=str(partial),
            )
            return row.id, row.received, row.complete

    artifact_id, received, complete = await run_in_threadpool(_open)
    if complete:
        return UploadState(
            name=name, received=x_artifact_size, bytes=x_artifact_size, complete=True
        )
    if start != received:
        raise HTTPException(
            409,
            {
                "message": f"Content-Range: resume from byte {received}, not {start}",
                "received": received,
            },
        )
    written = received
    with partial.open("r+b" if partial.exists() else "wb") as f:
        f.seek(received)
        f.truncate()
        async for chunk in request.stream():
            written += len(chunk)
            if written > x_artifact_size:
                f.truncate(received)
                raise HTTPException(413, {"message": "the body is longer than X-Artifact-Size"})
            f.write(chunk)

    def _record() -> UploadState:
        whole = written == x_artifact_size
        blob = store.finish(partial, x_artifact_sha256) if whole else None
        with transaction(request.app.state.sessions) as session:
            row = artifacts.record_progress(
                session,
                artifact_id=artifact_id,
                received=0 if whole and blob is None else written,
                blob=str(blob) if blob is not None else None,
            )
            state = UploadState(
                name=name, received=row.received, bytes=row.bytes, complete=row.complete
            )
        if whole and blob is None:
            raise Invalid(
                "X-Artifact-Sha256",
                "the uploaded bytes have another sha256; upload again from byte 0",
            )
        return state

    return await run_in_threadpool(_record)


@router.get(
    "/runs/{run_id}/artifacts/{name}",
    response_model=UploadState,
    summary="How much of an upload the api has",
)
def upload_state(
    run_id: int, name: str, session: SessionDep, _agent: CurrentAgentId
) -> UploadState:
    for a in artifacts.for_run(session, run_id=run_id):
        if a.name == name:
            return UploadState(name=name, received=a.received, bytes=a.bytes, complete=a.complete)
    return UploadState(name=name, received=0, bytes=0, complete=False)


@router.get(
    "/artifacts/{artifact_id}",
    response_class=FileResponse,
    summary="Download an artifact (streamed)",
)
def download(artifact_id: int, session: SessionDep, _token: Viewer) -> FileResponse:
    a = artifacts.get_or_raise(session, artifact_id=artifact_id)
    if not a.complete:
        raise Conflict(f"artifact {artifact_id} is still uploading ({a.received} of {a.bytes})")
    return FileResponse(
        a.path,
        filename=a.name,
        media_type="application/octet-stream",
        headers={"X-Artifact-Sha256": a.sha256},
    )
