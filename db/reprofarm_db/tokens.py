"""Bearer tokens with roles. Only sha256 hashes are stored: a leaked database
does not leak tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from enum import StrEnum

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.orm import Session

from reprofarm_db.errors import Invalid
from reprofarm_db.models import ApiToken, Base, utcnow

_tokens = Base.metadata.tables["api_tokens"]


class Role(StrEnum):
    VIEWER = "viewer"
    SUBMITTER = "submitter"
    AGENT = "agent"
    ADMIN = "admin"


# What each role may do, besides what it is. Agents read what they run and
# nothing else; admins may do everything.
GRANTS: dict[Role, frozenset[Role]] = {
    Role.VIEWER: frozenset({Role.VIEWER}),
    Role.SUBMITTER: frozenset({Role.VIEWER, Role.SUBMITTER}),
    Role.AGENT: frozenset({Role.AGENT}),
    Role.ADMIN: frozenset(Role),
}


def hash_secret(secret: str) -> str:
    """How every secret is kept (tokens, machine secrets, lease tokens): a leaked
    database leaks none of them."""
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str | None, stored_hash: str | None) -> bool:
    """Whether ``secret`` is the one whose hash was stored (constant time)."""
    if secret is None or stored_hash is None:
        return False
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def create(session: Session, *, name: str, role: str, agent_id: int | None = None) -> str:
    """Create a token and return its plain text: the only time it is seen."""
    if role not in Role.__members__.values():
        raise Invalid("role", f"{role!r} is not one of {', '.join(r.value for r in Role)}")
    return mint(session.connection(), name=name, role=Role(role), agent_id=agent_id)


def mint(conn: Connection, *, name: str, role: Role, agent_id: int | None = None) -> str:
    """Insert a new token as one statement (registration storms mint thousands a
    minute) and return its plain text."""
    plain = "rf_" + new_secret()
    conn.execute(
        insert(_tokens).values(
            name=name,
            role=role.value,
            token_hash=hash_secret(plain),
            agent_id=agent_id,
            created_at=utcnow(),
        )
    )
    return plain


def authenticate(session: Session, *, plain: str) -> ApiToken | None:
    return authenticate_hash(session, token_hash=hash_secret(plain))


def authenticate_hash(session: Session, *, token_hash: str) -> ApiToken | None:
    """The valid token whose hash this is (the api hashes once, for its cache too)."""
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash))
    if token is None or token.revoked_at is not None:
        return None
    return token


def allows(token_role: str, needed: Role) -> bool:
    return needed in GRANTS.get(Role(token_role), frozenset())


_REVOKED = "revoked_token_hashes"


_REVOKE = (
    update(_tokens)
    .where(_tokens.c.agent_id == bindparam("agent"), _tokens.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("at"))
    .returning(_tokens.c.token_hash)
)


def revoke_for_agent(session: Session, *, agent_id: int) -> None:
    """Revoke the agent's tokens in one statement; their hashes are noted in the
    session (see ``revoked_in``) for whoever must forget them once this commits."""
    hashes = session.connection().execute(_REVOKE, {"agent": agent_id, "at": utcnow()}).scalars()
    session.info.setdefault(_REVOKED, []).extend(hashes)


def revoked_in(session: Session) -> list[str]:
    """Hashes of the tokens this session revoked: api processes cache valid tokens
    for a few seconds (reprofarm_api.token_cache) and evict these after the commit."""
    return list(session.info.get(_REVOKED, []))
