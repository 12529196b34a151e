"""Installing and updating agents: the one-line install script, the release
agents compare their version with, and its wheels."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from fastapi.responses import FileResponse
from reprofarm_db.tokens import Role
from reprofarm_protocol.release import WHEEL_FILENAME, AgentRelease

from reprofarm_api.deps import SettingsDep, require
from reprofarm_api.install import service
from reprofarm_api.install.service import Releases
from reprofarm_api.install.wheels import ReleaseUnavailableError
from reprofarm_api.responses import AUTHENTICATED, ErrorBody, errors

router = APIRouter(tags=["agent install"])

_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorBody,
        "description": "no release can be served (the wheels cannot be built, or the "
        "operator's folder is wrong: the message says which), or the database is unavailable",
    }
}


def _releases(request: Request) -> Releases:
    releases: Releases = request.app.state.releases
    return releases


ReleasesDep = Annotated[Releases, Depends(_releases)]


def _unavailable(exc: ReleaseUnavailableError) -> HTTPException:
    return HTTPException(503, {"message": str(exc)}, headers={"Retry-After": "60"})


@router.get("/install.ps1", include_in_schema=False)
def install_script(request: Request, settings: SettingsDep, releases: ReleasesDep) -> Response:
    """Public: the script holds no secret (the token stays in the admin's
    environment, the release key in it is the public one), so
    `irm .../install.ps1 | iex` needs none."""
    try:
        text = service.install_script(
            settings, request_url=str(request.base_url), release_key=releases.public_key()
        )
    except ReleaseUnavailableError as exc:
        raise _unavailable(exc) from None
    except service.PublicUrlUnsetError as exc:
        raise HTTPException(503, {"message": str(exc), "field": "REPROFARM_PUBLIC_URL"}) from None
    return Response(
        text, media_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-store"}
    )


@router.get(
    "/api/v1/agent/release",
    response_model=AgentRelease,
    summary="The agent release: its version, wheels (sha256, size) and pinned dependencies, signed",
    dependencies=[Depends(require(Role.AGENT))],
    responses={**AUTHENTICATED, **_UNAVAILABLE},
)
def release(releases: ReleasesDep) -> AgentRelease:
    """The install script installs this; a managed agent whose version differs
    and whose signature its install-time key verifies updates itself to it
    between runs. Made once per version: the first call after the agent sources
    changed builds the wheels (seconds), the others return it as made."""
    try:
        return releases.current().release
    except ReleaseUnavailableError as exc:
        raise _unavailable(exc) from None


@router.get(
    "/agent/wheels/{filename}",
    response_class=FileResponse,
    summary="Download a wheel of the current agent release",
    dependencies=[Depends(require(Role.AGENT))],
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the wheel"},
        **AUTHENTICATED,
        **errors(404),
        **_UNAVAILABLE,
    },
)
def wheel(
    filename: Annotated[
        str,
        Path(
            pattern=WHEEL_FILENAME.pattern,
            max_length=120,
            description="a file name from the release's `files`",
        ),
    ],
    releases: ReleasesDep,
) -> FileResponse:
    """Check the sha256 the release lists before installing it."""
    try:
        path = releases.wheel_path(filename=filename)
    except ReleaseUnavailableError as exc:
        raise _unavailable(exc) from None
    return FileResponse(path, media_type="application/octet-stream", filename=filename)
