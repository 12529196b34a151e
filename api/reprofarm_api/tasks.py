"""Sending Celery tasks by name (the api never imports the worker), and the
relay that empties the outbox into the broker."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import Celery
from reprofarm_db import outbox
from reprofarm_db.engine import transaction
from reprofarm_db.settings import ControllerSettings
from reprofarm_protocol.queues import TASK_QUEUES
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)


class TaskSender:
    def __init__(self, settings: ControllerSettings) -> None:
        self._celery = Celery("reprofarm-api", set_as_current=False)
        self._celery.conf.update(settings.celery_conf())

    def send(self, task: str, args: list[Any]) -> None:
        # No retry here: a broker that is down leaves the row in the outbox,
        # and the relay tries again on its next pass.
        self._celery.send_task(task, args=args, queue=TASK_QUEUES[task], retry=False)


def relay_once(factory: sessionmaker[Session], sender: TaskSender) -> int:
    with transaction(factory) as session:
        return outbox.relay(session, send=sender.send)


class OutboxRelay:
    """A thread that relays the outbox every ``period_s``; failures (broker
    down) are logged at most once a minute and retried, never dropped."""

    def __init__(
        self, factory: sessionmaker[Session], sender: TaskSender, period_s: float = 1.0
    ) -> None:
        self._factory, self._sender, self._period = factory, sender, period_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="outbox-relay", daemon=True)
        self._last_warning = 0.0

    def start(self) -> None:
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                relay_once(self._factory, self._sender)
            except Exception as exc:  # noqa: BLE001 - kept in the outbox, retried next pass
                if time.monotonic() - self._last_warning > 60:
                    log.warning("outbox relay failed, will retry: %s", exc)
                    self._last_warning = time.monotonic()
            self._wake.wait(self._period)
            self._wake.clear()
