"""Telling the api processes that runs became ready, so idle agents' long-polls wake
at once (reprofarm_api.agents.wakeup listens), and that tokens were revoked (their
token caches forget them). Redis pub/sub, best effort: every api
process re-checks the ready runs every few seconds anyway, and the embedded mode
(no Redis) relies on that and on in-process wake-ups. Here so that both the api and
the worker (which never import each other) can publish."""

from __future__ import annotations

import json
import logging
import time

log = logging.getLogger(__name__)

CHANNEL = "reprofarm:work"
TICK = json.dumps({"tick": True})
"""What each api process publishes every few seconds to hear it come back: proof that
its subscription still receives (reprofarm_api.agents.wakeup). It wakes nobody."""


def publish(redis_url: str | None, runs: int) -> None:
    if runs > 0:
        _send(redis_url, {"runs": runs}, what="a work wake-up")


def publish_revoked(redis_url: str | None, token_hashes: list[str]) -> None:
    """Tell every api process that these tokens (by hash) were revoked: they drop
    them from their token caches (reprofarm_api.token_cache) at once, instead of
    within the cache's bound."""
    if token_hashes:
        # The other processes trust their cached tokens for minutes while they hear the
        # channel: a revocation is worth a few retries.
        _send(redis_url, {"revoked": token_hashes}, what="token revocations", retries=(0.2, 1, 3))


def _send(
    redis_url: str | None,
    message: dict[str, object],
    *,
    what: str,
    retries: tuple[float, ...] = (),
) -> None:
    """Publish, trying again after each of ``retries`` seconds if Redis refuses."""
    if not redis_url:
        return
    import redis

    for pause in (*retries, None):
        try:
            client = redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
            try:
                client.publish(CHANNEL, json.dumps(message))
            finally:
                client.close()
            return
        except redis.RedisError as exc:
            if pause is None:
                log.error("could not publish %s: %s", what, exc)
                return
            log.warning("could not publish %s (%s); again in %s s", what, exc, pause)
            time.sleep(pause)


def runs_of(data: object) -> int:
    """The run count a wake-up message carries: 0 for a revocation or a tick, 1 when
    unreadable."""
    try:
        message = json.loads(data)  # type: ignore[arg-type]
        if "revoked" in message or "tick" in message:
            return 0
        return max(1, int(message["runs"]))
    except (TypeError, ValueError, KeyError):
        return 1


def revoked_of(data: object) -> list[str]:
    """The token hashes a revocation message carries (none for a wake-up)."""
    try:
        hashes = json.loads(data)["revoked"]  # type: ignore[arg-type]
    except (TypeError, ValueError, KeyError):
        return []
    return [h for h in hashes if isinstance(h, str)] if isinstance(hashes, list) else []
