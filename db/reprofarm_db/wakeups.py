"""Telling the api processes that runs became ready, so idle agents' long-polls wake
at once (reprofarm_api.agents.wakeup listens). Redis pub/sub, best effort: every api
process re-checks the ready runs every few seconds anyway, and the embedded mode
(no Redis) relies on that and on in-process wake-ups. Here so that both the api and
the worker (which never import each other) can publish."""

from __future__ import annotations

import json
import logging

log = logging.getLogger(__name__)

CHANNEL = "reprofarm:work"


def publish(redis_url: str | None, runs: int) -> None:
    if not redis_url or runs <= 0:
        return
    import redis

    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
        try:
            client.publish(CHANNEL, json.dumps({"runs": runs}))
        finally:
            client.close()
    except redis.RedisError as exc:
        log.warning("could not publish a work wake-up: %s", exc)


def runs_of(data: object) -> int:
    """The run count a wake-up message carries (1 when unreadable)."""
    try:
        return max(1, int(json.loads(data)["runs"]))  # type: ignore[arg-type]
    except (TypeError, ValueError, KeyError):
        return 1
