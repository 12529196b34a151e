"""Token checks come from a per-process cache, and a revoked token is refused by
every api process within the stated bound: at once through Redis while the process's
subscription is up (``token_cache_listening_s`` bounds only a message lost on it), or
within ``token_cache_s`` when it is not (no Redis: the embedded mode; or a subscription
that went silent). Two real app instances share one Postgres (and one Redis when there
is one)."""

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

from fastapi.testclient import TestClient
from reprofarm_api.app import create_app
from reprofarm_api.token_cache import TokenCache
from reprofarm_db import wakeups
from reprofarm_db.migrate import upgrade
from reprofarm_db.models import ApiToken
from reprofarm_db.settings import ControllerSettings

from api.tests.conftest import Api
from tests.api_calls import register
from tests.e2e.tcp_proxy import TcpProxy


@contextmanager
def _app(tmp_path, postgres_url, **fields) -> Iterator[Api]:
    settings = ControllerSettings(data_dir=tmp_path, database_url=postgres_url, **fields)
    with TestClient(create_app(settings, relay=False)) as client:
        yield Api(client, settings, admin="")


def _lease_status(api: Api, token: str) -> int:
    """An agent's call that needs its token (an empty long-poll: 204, or 401)."""
    r = api.client.post("/api/v1/agents/me/lease", headers=api.headers(token), json={"wait_s": 0})
    return r.status_code


def _refused_after(api: Api, token: str, *, revoked_at: float, limit_s: float) -> float:
    """Seconds from the revocation to the first 401 of ``api``, asking every 50 ms."""
    while time.monotonic() - revoked_at < limit_s:
        if _lease_status(api, token) == 401:
            return time.monotonic() - revoked_at
        time.sleep(0.05)
    return float("inf")


def test_a_revocation_reaches_the_other_api_process_through_redis_long_before_the_bound(
    tmp_path, postgres_url, redis_url
):
    upgrade(postgres_url)
    # The second process would trust its cached token for 30 s: only the
    # published revocation can make it refuse the token within a few seconds.
    with (
        _app(tmp_path / "a", postgres_url, broker_url=redis_url) as first,
        _app(tmp_path / "b", postgres_url, broker_url=redis_url, token_cache_s=30.0) as second,
    ):
        old = register(first, name="lab-1")
        assert _lease_status(second, old) == 204  # checked, so cached, by the second process
        register(first, name="lab-1")  # registering again revokes the earlier token
        revoked_at = time.monotonic()
        refused = _refused_after(second, old, revoked_at=revoked_at, limit_s=10.0)
        assert refused < 5.0, f"the second process still took the revoked token {refused:.1f}s on"
        assert _lease_status(first, old) == 401


def test_without_redis_a_revoked_token_is_refused_within_the_bound(tmp_path, postgres_url):
    upgrade(postgres_url)
    bound = 2.0
    with (
        _app(tmp_path / "a", postgres_url, token_cache_s=bound) as first,
        _app(tmp_path / "b", postgres_url, token_cache_s=bound) as second,
    ):
        old = register(first, name="lab-1")
        assert _lease_status(second, old) == 204
        register(first, name="lab-1")
        revoked_at = time.monotonic()
        assert _lease_status(first, old) == 401  # the revoking process forgets it at once
        refused = _refused_after(second, old, revoked_at=revoked_at, limit_s=3 * bound)
        # The entry was made before the revocation: it cannot outlive the bound
        # (plus one poll and one request on a busy machine).
        assert refused <= bound + 0.5, f"refused {refused:.2f}s after the revocation"


def test_a_cached_token_is_trusted_for_the_bound_and_checked_again_after():
    now = [100.0]
    cache = TokenCache(2.0, clock=lambda: now[0])
    token = ApiToken(id=1, name="lab", role="agent", token_hash="h")
    cache.put("h", token, checked_at=cache.now())
    now[0] += 1.9
    assert cache.get("h") is token
    now[0] += 0.1
    assert cache.get("h") is None, "an entry as old as the bound must be checked again"
    cache.put("h", token, checked_at=now[0])
    cache.evict(["h"])
    assert cache.get("h") is None


def test_a_revocation_on_the_wake_up_channel_wakes_no_long_poll():
    revocation = json.dumps({"revoked": ["a" * 64]})
    assert (wakeups.runs_of(revocation), wakeups.revoked_of(revocation)) == (0, ["a" * 64])
    wake_up = json.dumps({"runs": 3})
    assert (wakeups.runs_of(wake_up), wakeups.revoked_of(wake_up)) == (3, [])


def test_the_long_trust_holds_only_while_the_subscription_is_heard(
    tmp_path, postgres_url, redis_url
):
    """A Redis link that goes silent (nothing closed, nothing fails) ends the long trust
    within the silence the listener allows (15 s, plus a tick), and a subscription
    heard again brings it back, the cache emptied of what it may have missed."""
    upgrade(postgres_url)
    redis = urlparse(redis_url)
    with TcpProxy(redis.port or 6379, redis.hostname or "127.0.0.1") as link:
        broker = f"redis://127.0.0.1:{link.port}{redis.path}"
        with _app(tmp_path, postgres_url, broker_url=broker) as api:
            cache: TokenCache = api.client.app.state.token_cache  # type: ignore[attr-defined]

            def bound_becomes(value: float, within_s: float) -> float:
                start = time.monotonic()
                while time.monotonic() - start < within_s:
                    if cache.bound_s == value:
                        return time.monotonic() - start
                    time.sleep(0.1)
                raise AssertionError(f"the bound stayed {cache.bound_s} s for {within_s} s")

            bound_becomes(300.0, within_s=10)
            token = register(api, name="lab-1")
            assert _lease_status(api, token) == 204
            assert len(cache) > 0
            link.stall()
            took = bound_becomes(2.0, within_s=30)
            assert took <= 22, f"a silent link kept the long trust {took:.0f} s"
            link.restore()
            bound_becomes(300.0, within_s=40)
            assert len(cache) == 0, "a subscription that starts must forget what it missed"


def test_a_cache_that_hears_revocations_trusts_longer_and_forgets_when_it_starts_hearing():
    now = [100.0]
    cache = TokenCache(2.0, listening_ttl_s=300.0, clock=lambda: now[0])
    token = ApiToken(id=1, name="lab", role="agent", token_hash="h")
    cache.listening(True)
    cache.put("h", token, checked_at=cache.now())
    now[0] += 250
    assert cache.get("h") is token
    cache.listening(False)  # deaf: the short bound applies to entries already kept
    assert cache.get("h") is None
    cache.put("h", token, checked_at=cache.now())
    cache.listening(True)
    assert cache.get("h") is None, "what was revoked while deaf was never heard"


def test_a_check_that_raced_a_revocation_gets_the_short_bound_even_while_listening():
    """The check read the token before its revocation committed; the revocation's message
    came while nothing was cached, so its eviction found nothing: the entry that follows
    must not be trusted for the long bound."""
    now = [100.0]
    cache = TokenCache(2.0, listening_ttl_s=300.0, clock=lambda: now[0])
    cache.listening(True)
    token = ApiToken(id=1, name="lab", role="agent", token_hash="h")
    checked_at = cache.now()  # the check begins
    now[0] += 0.1
    cache.evict(["h"])  # the revocation is heard meanwhile
    now[0] += 0.1
    cache.put("h", token, checked_at=checked_at)  # the check ends: it read the token valid
    now[0] += 2.0
    assert cache.get("h") is None, "a raced check kept the long trust"
    cache.put("h", token, checked_at=cache.now())  # a check after the revocation
    now[0] += 250
    assert cache.get("h") is token
