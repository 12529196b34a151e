"""hangtest builds made by the worker, and their download for agents."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse
from pydantic import BaseModel
from reprofarm_db import builds
from reprofarm_db.tokens import Role

from reprofarm_api.deps import BuildId, SessionDep, Viewer, require
from reprofarm_api.responses import AUTHENTICATED, errors

router = APIRouter(prefix="/api/v1/builds", tags=["builds"], responses=AUTHENTICATED)


class BuildRead(BaseModel):
    id: int
    go_version: str
    toolchain_version: str
    target: str
    sha256: str
    bytes: int
    fix_present: bool
    created_at: datetime


@router.get("", response_model=list[BuildRead], summary="Builds, newest first")
def list_builds(session: SessionDep, _token: Viewer) -> list[BuildRead]:
    return [BuildRead.model_validate(b, from_attributes=True) for b in builds.list_(session)]


@router.get(
    "/{build_id}/binary",
    response_class=FileResponse,
    summary="Download a build",
    dependencies=[Depends(require(Role.AGENT))],
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the binary"},
        **errors(404),
    },
)
def binary(build_id: BuildId, session: SessionDep) -> FileResponse:
    """The agent checks the sha256 from its lease before running it."""
    b = builds.get_or_raise(session, build_id=build_id)
    return FileResponse(
        b.path, media_type="application/octet-stream", headers={"X-Build-Sha256": b.sha256}
    )
