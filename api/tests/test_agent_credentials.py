"""The real agent service against the real app (Starlette's TestClient is an
httpx.Client): how it recovers when its token is revoked, and how it stops when
no credential of it is accepted any more."""

import pytest
from reprofarm_agent.client import ApiClient
from reprofarm_agent.errors import EnrollmentRefusedError
from reprofarm_agent.identity import load_or_create
from reprofarm_agent.platform import current_platform
from reprofarm_agent.service import AgentService
from reprofarm_agent.settings import AgentSettings
from reprofarm_db import tokens
from reprofarm_db.engine import transaction
from reprofarm_db.models import ApiToken, utcnow
from sqlalchemy import select


def agent_service(api, tmp_path, enrollment):
    settings = AgentSettings(work_dir=tmp_path / "agent", cache_dir=tmp_path / "cache")
    return AgentService(
        client=ApiClient(api.client, enrollment),
        platform=current_platform(settings),
        settings=settings,
        name="lab-1",
        pools=["p"],
        lease_wait_s=0,
        sleep=lambda _s: None,
    )


def revoke(api, *, agent_id=None, plain=None):
    """Revoke in the database, then tell the app, as the api does after its own
    revocations (a revocation behind its back is seen within token_cache_s)."""
    with transaction(api.client.app.state.sessions) as s:
        if agent_id is not None:
            tokens.revoke_for_agent(s, agent_id=agent_id)
        if plain is not None:
            s.scalar(
                select(ApiToken).where(ApiToken.token_hash == tokens.hash_secret(plain))
            ).revoked_at = utcnow()
        revoked = tokens.revoked_in(s) + ([tokens.hash_secret(plain)] if plain else [])
    api.client.app.state.token_cache.evict(revoked)


def test_a_revoked_agent_registers_again_with_its_enrollment_token(api, tmp_path):
    enrollment = api.token("agent")
    service = agent_service(api, tmp_path, enrollment)
    first_id = service.register()
    first_token = service.client.token
    revoke(api, agent_id=first_id)
    with pytest.raises(Exception, match="401"):
        service.lease()
    assert service.register() == first_id  # same machine secret: the same agent
    assert service.client.token != first_token
    assert service.lease() is None  # the new token works


def test_an_agent_whose_every_token_is_refused_stops_with_a_clear_error(api, tmp_path):
    enrollment = api.token("agent")
    service = agent_service(api, tmp_path, enrollment)
    agent_id = service.register()
    revoke(api, agent_id=agent_id, plain=enrollment)
    with pytest.raises(EnrollmentRefusedError, match="new enrollment token"):
        service.serve()


def test_the_machine_secret_survives_restarts_and_binds_the_name(api, tmp_path):
    enrollment = api.token("agent")
    agent_id = agent_service(api, tmp_path, enrollment).register()
    secret = load_or_create(tmp_path / "agent").machine_secret
    again = agent_service(api, tmp_path, enrollment)  # a restarted agent, same work dir
    assert again.register() == agent_id
    assert load_or_create(tmp_path / "agent").machine_secret == secret
    other_machine = agent_service(api, tmp_path / "elsewhere", enrollment)
    with pytest.raises(Exception, match="409"):
        other_machine.register()
