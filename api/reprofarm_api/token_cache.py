"""Token checks without a query per request: each api process keeps the tokens
it checked for a few seconds (``REPROFARM_TOKEN_CACHE_S``), keyed by their hash.

A revocation (registering an agent again revokes its earlier tokens) is told to
every api process: the process that revoked evicts at once, after its commit,
and publishes the revoked hashes on the wake-up channel (``reprofarm:work``,
reprofarm_db.wakeups), which every api process already listens to. What a caller
may rely on: a revoked token is refused by every api process at most
``token_cache_s`` after the revocation committed, whatever happens to the
message (Redis away, a process that was reconnecting, or the embedded mode,
which has no Redis); with Redis up, as soon as the message arrives.

Only tokens that exist and are not revoked are kept: an unknown token costs its
query every time, so random tokens cannot fill the cache. The cached
``ApiToken`` is a detached row shared by the requests of this process: read its
columns, never add it to a session.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from reprofarm_db.models import ApiToken

MAX_ENTRIES = 100_000
"""More live tokens than this in one process's window empty the cache (a few
hundred bytes each): a bound on memory, not a working size."""


class TokenCache:
    def __init__(self, ttl_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._tokens: dict[str, tuple[float, ApiToken]] = {}

    def get(self, token_hash: str) -> ApiToken | None:
        """The token checked less than ``ttl_s`` ago, or None (check it again)."""
        entry = self._tokens.get(token_hash)
        if entry is None:
            return None
        checked_at, token = entry
        if self._clock() - checked_at >= self.ttl_s:
            self._tokens.pop(token_hash, None)
            return None
        return token

    def put(self, token_hash: str, token: ApiToken, *, checked_at: float) -> None:
        """Keep a valid token, as of ``checked_at`` (this cache's clock, read before
        the query: a revocation that raced the query is then bounded by the ttl)."""
        if self.ttl_s <= 0:
            return
        if len(self._tokens) >= MAX_ENTRIES:
            self._tokens.clear()
        self._tokens[token_hash] = (checked_at, token)

    def now(self) -> float:
        return self._clock()

    def evict(self, token_hashes: Iterable[str]) -> None:
        for token_hash in token_hashes:
            self._tokens.pop(token_hash, None)

    def __len__(self) -> int:
        return len(self._tokens)
