"""What a dashboard left open all day asks: who it is signed in as, and what changed.

``GET /api/v1/live`` is the one cheap question it repeats every few seconds (with
``If-None-Match``: 304 while nothing changed); only when a part it shows moved does
a page fetch its own data again. Polling over server-sent events: it works through
any proxy, holds no connection or thread per open tab, and the same answer serves
every tab.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Response
from pydantic import BaseModel, Field
from reprofarm_db import agents, tokens, views
from reprofarm_db.tokens import Role

from reprofarm_api.deps import SessionDep, SettingsDep, Viewer
from reprofarm_api.responses import AUTHENTICATED

router = APIRouter(prefix="/api/v1", tags=["dashboard"], responses=AUTHENTICATED)


class Changes(BaseModel):
    version: str = Field(description="changes when any part does; also the ETag")
    parts: dict[str, str] = Field(
        description="runs, jobs, agents, analyses, artifacts: each changes when its part does"
    )


class WhoAmI(BaseModel):
    name: str
    role: str
    can_submit: bool = Field(description="may submit and cancel jobs")
    can_admin: bool


@router.get(
    "/live",
    response_model=Changes,
    summary="What changed: a token per part of the farm (ETag; 304 when unchanged)",
    responses={304: {"description": "nothing changed since the ETag given in If-None-Match"}},
)
def live(
    session: SessionDep,
    settings: SettingsDep,
    _token: Viewer,
    response: Response,
    if_none_match: Annotated[str | None, Header(max_length=200)] = None,
) -> Changes | Response:
    now = datetime.now(UTC)
    parts = views.changes(
        session, online_since=agents.online_since(now=now, lease_s=settings.lease_s)
    )
    version = hashlib.sha256(repr(sorted(parts.items())).encode()).hexdigest()[:20]
    etag = f'"{version}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if if_none_match is not None and etag in (t.strip() for t in if_none_match.split(",")):
        return Response(status_code=304, headers=headers)
    response.headers.update(headers)
    return Changes(version=version, parts=parts)


@router.get("/whoami", response_model=WhoAmI, summary="The caller's token: its name and role")
def whoami(token: Viewer) -> WhoAmI:
    """The dashboard shows the submit form and the cancel button only to a role
    that may use them (the api refuses the others anyway)."""
    return WhoAmI(
        name=token.name,
        role=token.role,
        can_submit=tokens.allows(token.role, Role.SUBMITTER),
        can_admin=tokens.allows(token.role, Role.ADMIN),
    )
