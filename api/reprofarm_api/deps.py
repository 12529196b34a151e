"""Small FastAPI dependencies: the session, the caller's token, the agent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from reprofarm_db import tokens
from reprofarm_db.engine import transaction
from reprofarm_db.models import ApiToken
from reprofarm_db.settings import ControllerSettings
from reprofarm_db.tokens import Role
from sqlalchemy.orm import Session, sessionmaker

from reprofarm_api.db_slots import DatabaseSlots
from reprofarm_api.token_cache import TokenCache

_bearer = HTTPBearer(auto_error=False, description="a token from `reprofarm token create`")


async def get_settings(request: Request) -> ControllerSettings:
    settings: ControllerSettings = request.app.state.settings
    return settings


def get_factory(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.sessions
    return factory


def get_db_slots(request: Request) -> DatabaseSlots:
    slots: DatabaseSlots = request.app.state.db_slots
    return slots


async def _database_slot(request: Request) -> AsyncIterator[None]:
    async with get_db_slots(request).request():
        yield


def get_session(
    request: Request, _slot: Annotated[None, Depends(_database_slot, scope="function")]
) -> Iterator[Session]:
    """One transaction per request, committed when the handler returns and
    *before* the response is sent (``scope="function"``): a commit that fails
    becomes an error answer, never a 200 for something that was not stored.
    It runs in a database slot (reprofarm_api.db_slots), taken before and given
    back after."""
    with get_factory(request)() as session, session.begin():
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[ControllerSettings, Depends(get_settings)]


async def _token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiToken:
    """From this process's token cache (reprofarm_api.token_cache: a revoked token
    is refused within ``token_cache_s``), else in a transaction of its own,
    closed at once: a long-poll or a long upload must not hold a database
    transaction (on SQLite, the write lock) while it waits."""
    if credentials is None:
        raise HTTPException(
            401, {"message": "missing bearer token"}, headers={"WWW-Authenticate": "Bearer"}
        )
    token_hash = tokens.hash_secret(credentials.credentials)
    cache: TokenCache = request.app.state.token_cache
    token = cache.get(token_hash)
    if token is None:
        checked_at = cache.now()
        token = await get_db_slots(request).authenticate(
            _authenticate, get_factory(request), token_hash
        )
        if token is not None:
            cache.put(token_hash, token, checked_at=checked_at)
    if token is None:
        raise HTTPException(
            401, {"message": "invalid or revoked token"}, headers={"WWW-Authenticate": "Bearer"}
        )
    return token


def _authenticate(factory: sessionmaker[Session], token_hash: str) -> ApiToken | None:
    with transaction(factory) as session:
        return tokens.authenticate_hash(session, token_hash=token_hash)


def require(role: Role) -> Callable[..., Awaitable[ApiToken]]:
    async def _check(token: Annotated[ApiToken, Depends(_token)]) -> ApiToken:
        if not tokens.allows(token.role, role):
            raise HTTPException(
                403, {"message": f"this needs the {role} role; the token has {token.role}"}
            )
        return token

    return _check


Viewer = Annotated[ApiToken, Depends(require(Role.VIEWER))]


async def _metrics_reader(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Anyone, or a viewer when the operator set REPROFARM_METRICS_TOKEN_REQUIRED."""
    if not (await get_settings(request)).metrics_token_required:
        return
    token = await _token(request, credentials)
    if not tokens.allows(token.role, Role.VIEWER):
        raise HTTPException(
            403, {"message": f"this needs the viewer role; the token has {token.role}"}
        )


MetricsReader = Annotated[None, Depends(_metrics_reader)]
Submitter = Annotated[ApiToken, Depends(require(Role.SUBMITTER))]
Admin = Annotated[ApiToken, Depends(require(Role.ADMIN))]
AgentToken = Annotated[ApiToken, Depends(require(Role.AGENT))]


async def current_agent_id(token: AgentToken) -> int:
    """The calling agent's id; handlers load the agent in their own session."""
    if token.agent_id is None:
        raise HTTPException(403, {"message": "this is an enrollment token: register first"})
    return token.agent_id


CurrentAgentId = Annotated[int, Depends(current_agent_id)]


ID_MAX = 2**31 - 1
"""Ids are the database's integer primary keys (32 bits on Postgres)."""


def _id(what: str) -> object:
    return Path(ge=1, le=ID_MAX, description=f"the {what}'s id")


JobId = Annotated[int, _id("job")]
RunId = Annotated[int, _id("run")]
ArtifactId = Annotated[int, _id("artifact")]
BuildId = Annotated[int, _id("build")]

LeaseToken = Annotated[
    str | None,
    Header(
        alias="X-Lease-Token",
        max_length=200,
        description="the `lease_token` of the run's lease: proves the caller holds it",
    ),
]

IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=200,
        description="resubmitting with it never duplicates; each token has its own keys",
    ),
]
"""A submit's own key: the same key again returns what it made the first time."""
