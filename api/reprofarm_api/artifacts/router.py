"""Streaming, resumable, sha256-checked artifact upload; streaming download.

Upload: ``PUT /api/v1/runs/{run}/artifacts/{name}`` with the headers
``X-Lease-Token`` (the run's lease), ``X-Artifact-Kind``, ``X-Artifact-Sha256``
and ``X-Artifact-Size`` (the whole file) and, to resume, ``Content-Range: bytes
START-END/SIZE`` where START is the ``received`` count that ``GET`` on the same
path returns. One upload of an artifact at a time: a second concurrent one is
told 409 (retry). The steps are ``reprofarm_api.artifacts.service``'s.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Request
from fastapi.responses import FileResponse
from pydantic import AfterValidator
from reprofarm_db import artifacts
from reprofarm_db.errors import Conflict
from reprofarm_protocol.limits import INT64_MAX

from reprofarm_api.artifacts import service
from reprofarm_api.artifacts.schemas import UploadState
from reprofarm_api.artifacts.service import Upload, Uploads
from reprofarm_api.deps import ArtifactId, CurrentAgentId, LeaseToken, RunId, SessionDep, Viewer
from reprofarm_api.responses import AUTHENTICATED, errors

router = APIRouter(prefix="/api/v1", tags=["artifacts"], responses=AUTHENTICATED)


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
    """The body streams to disk and is hashed as it comes; the upload completes
    when it reaches X-Artifact-Size with the announced sha256 (422 otherwise, and
    the agent starts again from byte 0)."""
    upload = Upload.parse(
        agent_id=agent_id,
        run_id=run_id,
        lease_token=lease_token,
        name=name,
        kind=x_artifact_kind,
        sha256=x_artifact_sha256,
        size=x_artifact_size,
        content_range=content_range,
        max_bytes=request.app.state.settings.max_artifact_bytes,
    )
    uploads: Uploads = request.app.state.uploads
    state = await uploads.put(upload, request.stream())
    if state.complete:
        request.state.poke_relay = True  # its analysis task is in the outbox: send it now
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
    return service.upload_state(
        session, agent_id=agent_id, run_id=run_id, lease_token=lease_token, name=name
    )


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
