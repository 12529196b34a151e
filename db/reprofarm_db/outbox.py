"""The transactional outbox: a Celery task is written in the same transaction
as the state it is about, and sent after commit by a relay that retries."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reprofarm_db.models import Outbox, utcnow


def add(session: Session, *, task: str, args: Sequence[Any]) -> Outbox:
    row = Outbox(task=task, args=list(args))
    session.add(row)
    return row


def list_unsent(session: Session, *, limit: int = 100) -> list[Outbox]:
    """Unsent rows, locked for this relay: with several api processes and the worker
    relaying at once (Postgres), each row is sent by one of them (SKIP LOCKED)."""
    query = select(Outbox).where(Outbox.sent_at.is_(None)).order_by(Outbox.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def relay(session: Session, *, send: Callable[[str, list[Any]], None]) -> int:
    """Send unsent tasks in order; stop at the first failure (the broker is
    down: the next relay pass tries again). Returns how many were sent."""
    sent = 0
    for row in list_unsent(session):
        send(row.task, row.args)
        row.sent_at = utcnow()
        session.flush()
        sent += 1
    return sent
