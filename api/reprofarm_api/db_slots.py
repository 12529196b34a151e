"""How many requests of one api process use the database at once.

A sync endpoint's session holds its connection until the function-scoped
dependency commits, and that happens only after FastAPI has validated the
response, which for a sync endpoint runs in a worker thread of the shared pool
(``serialize_response``). When every worker thread waits for a connection while
the requests holding the connections wait for a thread to finish in, nothing
moves until the pool's timeout: at 2,000 simulated agents, 30-second stalls and
thousands of errors. Here a request takes a slot in the event loop, before it
touches the database, and there are fewer slots than connections, so a thread
never waits for one.

Authentication has slots of its own because it runs in its own short
transaction, sometimes while the same request already holds a request slot
(dependencies resolve in their parameters' order): one pool for both could
deadlock, each request holding one slot and waiting for another.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import ParamSpec, TypeVar

from fastapi.concurrency import run_in_threadpool

P = ParamSpec("P")
T = TypeVar("T")

AUTH_SLOTS = 2
"""Token checks at once: one indexed lookup each, a few milliseconds."""
BACKGROUND_CONNECTIONS = 3
"""Connections outside requests: the outbox relay, the work re-check and the agents'
liveness (reprofarm_api.agents.liveness)."""


def pool_size(request_slots: int) -> int:
    """Connections an api process needs so that no slot holder ever waits."""
    return request_slots + AUTH_SLOTS + BACKGROUND_CONNECTIONS


class DatabaseSlots:
    """An asyncio semaphore binds to an event loop only when a caller must wait,
    so one made here serves the loop the app runs in."""

    def __init__(self, request_slots: int) -> None:
        self.request_slots = request_slots
        self._requests = asyncio.Semaphore(request_slots)
        self._auth = asyncio.Semaphore(AUTH_SLOTS)

    @asynccontextmanager
    async def request(self) -> AsyncIterator[None]:
        async with self._requests:
            yield

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn`` (which opens its own transaction) in a worker thread, in a slot."""
        async with self._requests:
            return await run_in_threadpool(fn, *args, **kwargs)

    async def authenticate(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        async with self._auth:
            return await run_in_threadpool(fn, *args, **kwargs)
