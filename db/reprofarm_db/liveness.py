"""Agents' liveness (``agents.last_seen``), written for many agents in one statement.

Why batched: an idle agent shows it is alive only by its long-polls, and each one
wrote its agent's row (at 10,000 agents, 200 row writes a second for nothing the
sweep needs). ``last_seen`` decides only whether an agent is online (seen within two
lease periods: the dashboard, and whether a job has an agent to plan for); a lease's
expiry is its own column, so a run whose agent goes silent is still lost within its
lease. The api notes the agents it hears from and writes them here about once a
second (reprofarm_api.agents.liveness); a process that dies loses at most that
second of notes, far inside the two lease periods.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, bindparam, select, update
from sqlalchemy.orm import Session

from reprofarm_db.models import Base

_agents = Base.metadata.tables["agents"]


def seen_every(lease_s: float) -> timedelta:
    """How stale a ``last_seen`` may be before it is written again: a quarter lease,
    so it never makes a live agent look offline (two lease periods)."""
    return timedelta(seconds=min(15.0, lease_s / 4))


def mark_seen(
    session: Session, *, agent_ids: Collection[int], now: datetime, lease_s: float
) -> int:
    """Set ``last_seen`` to ``now`` for those of ``agent_ids`` last seen a quarter lease
    ago or more, in one statement; returns how many rows it wrote. On Postgres rows
    that another transaction holds (a result releasing its agent, a registration, the
    other api process's batch) are skipped, not waited for: the note is lost, and the
    agent's next request (a long-poll at most 50 s later, well within the two leases
    that keep it online) notes it again."""
    if not agent_ids:
        return 0
    stale: ColumnElement[bool] = _agents.c.last_seen <= bindparam(
        "stale_before", type_=_agents.c.last_seen.type
    )
    listed = _agents.c.id.in_(bindparam("ids", expanding=True))
    which: ColumnElement[bool] = listed
    if session.get_bind().dialect.name == "postgresql":
        free = select(_agents.c.id).where(listed, stale).with_for_update(skip_locked=True)
        which = _agents.c.id.in_(free)
    written = session.connection().execute(
        update(_agents)
        .where(which, stale)
        .values(last_seen=bindparam("now", type_=_agents.c.last_seen.type)),
        {"ids": sorted(agent_ids), "now": now, "stale_before": now - seen_every(lease_s)},
    )
    return int(written.rowcount or 0)
