"""Waking idle agents' long-polls when work appears, instead of polling the database.

Each api process keeps its waiting lease requests in a queue (oldest first). They
are woken:
- at once, in this process, when a request here made runs ready (a submit whose
  builds exist);
- through Redis pub/sub (channel ``reprofarm:work``), when another api process or the
  worker made runs ready (distributed mode; the embedded mode has no Redis);
- by a safety re-check every ``recheck_s``: one cheap query per process (the number
  of ready runs and the newest ready time), whatever the number of waiting agents.

The same channel carries token revocations to every process's token cache
(reprofarm_api.token_cache): ``tokens_revoked`` publishes them, ``on_revoked`` hears them.

A wake-up carries how many runs became ready and wakes that many waiters, plus a
margin (some woken agents may not match); the rest sleep on. Runs left ready after a
round (no woken agent could take them) wake the next waiters at the next re-check,
so every idle agent gets its turn and none sleeps while a run it could take waits
longer than about ``recheck_s``. Waiters never hold a database transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from reprofarm_db.engine import transaction
from reprofarm_db.models import Run
from reprofarm_db.wakeups import (
    CHANNEL,
    TICK,
    publish,
    publish_revoked,
    revoked_of,
    runs_of,
)
from reprofarm_protocol.jobs import RunState
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

_MARGIN = 4
_PING_S = 5.0
"""How often an api process ticks on its own channel (see ``_hear``)."""
_SILENT_S = 3 * _PING_S


class WorkSignal:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        redis_url: str | None,
        *,
        recheck_s: float = 2.0,
        on_revoked: Callable[[list[str]], None] = lambda _hashes: None,
        on_listening: Callable[[bool], None] = lambda _subscribed: None,
    ) -> None:
        self._sessions = sessions
        self._on_revoked = on_revoked
        self._on_listening = on_listening
        self._redis_url = redis_url
        self._recheck_s = recheck_s
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._tasks: list[asyncio.Task[None]] = []
        self._last: tuple[int, datetime | None] = (0, None)
        self._publisher: object | None = None

    # -- waiting ---------------------------------------------------------------

    async def wait(self, timeout: float) -> bool:
        """Sleep until woken (True) or ``timeout`` seconds pass (False)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
            return True
        except TimeoutError:
            return waiter.done()  # woken in the same pass as the timeout: still a wake-up
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def wake(self, runs: int) -> int:
        """Wake the oldest waiters for ``runs`` new ready runs; returns how many."""
        woken = 0
        while self._waiters and woken < runs + _MARGIN:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                woken += 1
        return woken

    # -- telling ---------------------------------------------------------------

    def runs_ready(self, runs: int) -> None:
        """Runs became ready in this process (after the commit): wake waiters here,
        and tell the other api processes. Thread-safe (called from request threads)."""
        loop = self._loop
        if loop is None:
            return
        loop.call_soon_threadsafe(self.wake, runs)
        if self._redis_url:
            # A blocking connect-and-publish (up to its timeout with Redis away)
            # must not hold the event loop: a worker thread sends it.
            loop.call_soon_threadsafe(loop.run_in_executor, None, publish, self._redis_url, runs)

    def tokens_revoked(self, token_hashes: list[str]) -> None:
        """Tokens were revoked here (after the commit): forget them in this process
        at once, and tell the other api processes over the same channel (their
        token caches; reprofarm_api.token_cache). Called in the event loop."""
        self._on_revoked(token_hashes)
        loop = self._loop
        if self._redis_url and loop is not None:
            loop.run_in_executor(None, publish_revoked, self._redis_url, token_hashes)

    # -- background ------------------------------------------------------------

    _loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks.append(asyncio.create_task(self._recheck_loop(), name="work-recheck"))
        if self._redis_url:
            self._tasks.append(asyncio.create_task(self._listen(), name="work-listen"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._loop = None

    def _ready_snapshot(self) -> tuple[int, datetime | None]:
        with transaction(self._sessions) as session:
            count, newest = session.execute(
                select(func.count(), func.max(Run.ready_at)).where(Run.status == RunState.READY)
            ).one()
        return int(count), newest

    async def _recheck_loop(self) -> None:
        while True:
            await asyncio.sleep(self._recheck_s)
            if not self._waiters:
                continue
            try:
                count, newest = await asyncio.to_thread(self._ready_snapshot)
            except Exception as exc:  # noqa: BLE001 - the db is down: waiters time out anyway
                log.warning("work re-check failed: %s", exc)
                continue
            if count:
                self.wake(count)
            self._last = (count, newest)

    async def _hear(self, client: Any, pubsub: Any) -> None:
        """Handle the channel's messages until the subscription fails. This process's
        own tick, published every _PING_S and heard back, proves the subscription
        still receives: the token cache trusts its entries for long only from the first
        tick heard until one is missing for _SILENT_S (a connection that died unnoticed
        would otherwise lose revocations for as long as TCP takes to notice)."""
        loop = asyncio.get_running_loop()
        ticked = heard = loop.time()
        await client.publish(CHANNEL, TICK)
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=_PING_S)
            now = loop.time()
            if message is not None and message.get("type") == "message":
                heard = now
                data = message.get("data")
                if revoked := revoked_of(data):
                    self._on_revoked(revoked)
                elif runs := runs_of(data):
                    self.wake(runs)
                elif not self._listening:
                    self._listening = True  # a tick came back: the subscription receives
                    self._on_listening(True)
            if now - heard > _SILENT_S:
                raise ConnectionError(f"nothing heard on {CHANNEL} for {now - heard:.0f} s")
            if now - ticked >= _PING_S:
                ticked = now
                await client.publish(CHANNEL, TICK)

    _listening = False

    def _deaf(self) -> None:
        if self._listening:
            self._listening = False
            self._on_listening(False)

    async def _listen(self) -> None:
        import redis.asyncio as aioredis

        backoff = 1.0
        while True:
            try:
                # A timeout on every socket: a tick published into a dead connection
                # must fail, not wait for TCP.
                client = aioredis.Redis.from_url(
                    self._redis_url or "", socket_timeout=_PING_S, socket_connect_timeout=_PING_S
                )
                async with client, client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    backoff = 1.0
                    await self._hear(client, pubsub)
            except asyncio.CancelledError:
                self._deaf()
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: the re-check covers
                self._deaf()
                log.warning("work wake-ups from Redis lost (%s); retrying", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
