"""Token checks without a query per request: each api process keeps the tokens
it checked, keyed by their hash.

A revocation (registering an agent again revokes its earlier tokens; nothing else
revokes) is told to every api process: the process that revoked evicts at once,
after its commit, and publishes the revoked hashes on the wake-up channel
(``reprofarm:work``, reprofarm_db.wakeups), which every api process listens to.

How long an entry is trusted depends on whether this process can hear revocations:
- while its subscription to the channel is up, ``listening_ttl_s``
  (``REPROFARM_TOKEN_CACHE_LISTENING_S``, 300 s): a revocation arrives with its
  message, and the bound only covers a message lost on a connection that died
  unnoticed. Idle agents long-poll every 50 s, so a bound of a few seconds missed the
  cache on nearly every request (docs/operations.md, "Sizing");
- otherwise (Redis away, reconnecting, or the embedded mode, which has no Redis),
  ``ttl_s`` (``REPROFARM_TOKEN_CACHE_S``, 2 s). Entries kept while listening become
  subject to it at once, and the cache is emptied whenever a subscription starts
  (messages sent while it was down are lost).

What a caller may rely on: a revoked token is refused by every api process as soon
as the message arrives, and at most ``token_cache_s`` after the revocation committed
if the process was not subscribed. ``token_cache_listening_s`` is the bound for a
message that never arrived while the subscription looked up: lost on a connection
that died unnoticed, or never published (the revoking process retries for a few
seconds, then logs the failure). A check that raced a revocation gets the short bound.

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
    def __init__(
        self,
        ttl_s: float,
        *,
        listening_ttl_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.listening_ttl_s = ttl_s if listening_ttl_s is None else listening_ttl_s
        self._listening = False
        self._clock = clock
        self._tokens: dict[str, tuple[float, ApiToken, bool]] = {}
        self._forgot_at = float("-inf")

    def listening(self, subscribed: bool) -> None:
        """Whether this process now hears revocations (its subscription is up). A
        subscription that starts empties the cache: what was revoked while it was
        down was never heard."""
        if subscribed and not self._listening:
            self._tokens.clear()
            self._forgot_at = self._clock()
        self._listening = subscribed

    @property
    def bound_s(self) -> float:
        """How long an entry is trusted now."""
        return self.listening_ttl_s if self._listening else self.ttl_s

    def get(self, token_hash: str) -> ApiToken | None:
        """The token checked less than ``bound_s`` ago (``ttl_s`` for an entry whose
        check raced a revocation), or None (check it again)."""
        entry = self._tokens.get(token_hash)
        if entry is None:
            return None
        checked_at, token, long_trust = entry
        bound = self.bound_s if long_trust else min(self.bound_s, self.ttl_s)
        if self._clock() - checked_at >= bound:
            self._tokens.pop(token_hash, None)
            return None
        return token

    def put(self, token_hash: str, token: ApiToken, *, checked_at: float) -> None:
        """Keep a valid token, as of ``checked_at`` (this cache's clock, read before
        the query). A check that began before the last revocation heard (or the last
        emptying) may have read the token before it was revoked, and the revocation's
        eviction found nothing to evict: such an entry gets the short bound,
        ``ttl_s``, even while listening."""
        if self.bound_s <= 0:
            return
        if len(self._tokens) >= MAX_ENTRIES:
            self._tokens.clear()
        self._tokens[token_hash] = (checked_at, token, checked_at >= self._forgot_at)

    def now(self) -> float:
        return self._clock()

    def evict(self, token_hashes: Iterable[str]) -> None:
        self._forgot_at = self._clock()
        for token_hash in token_hashes:
            self._tokens.pop(token_hash, None)

    def __len__(self) -> int:
        return len(self._tokens)
