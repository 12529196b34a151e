"""Coalesced liveness: the agents this api process heard from, written about once a
second in one statement (reprofarm_db.liveness says why, and why a lost second is
harmless), instead of a row write per long-poll or heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from reprofarm_db.engine import transaction
from reprofarm_db.liveness import mark_seen
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)


class SeenAgents:
    def __init__(
        self, sessions: sessionmaker[Session], *, lease_s: float, flush_every_s: float = 1.0
    ) -> None:
        self._sessions = sessions
        self._lease_s = lease_s
        self._flush_every_s = flush_every_s
        self._heard: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    def note(self, agent_id: int) -> None:
        """The agent spoke now. Called from the event loop or a worker thread (a set's
        add is atomic; ``flush`` swaps the set before reading it)."""
        self._heard.add(agent_id)

    async def flush(self) -> int:
        """Write what was heard since the last flush; returns the rows written."""
        heard, self._heard = self._heard, set()
        if not heard:
            return 0
        try:
            return await asyncio.to_thread(self._write, heard, datetime.now(UTC))
        except BaseException:
            self._heard |= heard  # kept for the next flush
            raise

    def _write(self, agent_ids: set[int], now: datetime) -> int:
        with transaction(self._sessions) as session:
            return mark_seen(session, agent_ids=agent_ids, now=now, lease_s=self._lease_s)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="liveness")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):  # the database may be gone at shutdown
            await self.flush()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_every_s)
            try:
                await self.flush()
            except Exception as exc:  # noqa: BLE001 - the db is away: liveness waits
                log.warning("writing agents' last_seen failed: %s", exc)
