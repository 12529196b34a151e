"""Pools' standing controls as an admin sets them, and what they make of one agent.

A pool is only a name an agent registers with; a pool with controls has a row in
``pools``. An agent in several pools takes the strictest of them (``for_agent``)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from reprofarm_protocol.controls import PoolControls
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from reprofarm_db.models import Agent, PoolSettings, utcnow


class InPools(Protocol):
    """An agent as far as its pools go (an ``Agent``, or a registration's result)."""

    @property
    def pools(self) -> list[str]: ...


def read(row: PoolSettings) -> PoolControls:
    return PoolControls(
        negative_control=row.negative_control,
        canary_at_start=row.canary_at_start,
        positive_control_every_s=row.positive_control_every_s,
        positive_control_chance=row.positive_control_chance,
        positive_control_duration_s=row.positive_control_duration_s,
        go_version=row.go_version,
    )


def set_(session: Session, *, name: str, controls: PoolControls, by: str) -> PoolSettings:
    """Create or replace a pool's controls; the whole set, so a PUT is repeatable. The row
    is made first if missing (two PUTs of a new pool at once: the second waits, then
    replaces), then locked and written."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(PoolSettings)
        .values(name=name, **controls.model_dump(), updated_at=utcnow(), updated_by=by[:100])
        .on_conflict_do_nothing(index_elements=["name"])
    )
    row = session.scalar(
        select(PoolSettings)
        .where(PoolSettings.name == name)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert row is not None  # inserted above, or there already
    for field, value in controls.model_dump().items():
        setattr(row, field, value)
    row.updated_at = utcnow()
    row.updated_by = by[:100]
    session.flush()
    return row


def list_(session: Session) -> list[PoolSettings]:
    return list(session.scalars(select(PoolSettings).order_by(PoolSettings.name)))


def of_names(session: Session, *, names: Collection[str]) -> list[PoolSettings]:
    """The settings of these pools that have any (no query for no pool)."""
    if not names:
        return []
    query = select(PoolSettings).where(PoolSettings.name.in_(names)).order_by(PoolSettings.name)
    return list(session.scalars(query))  # by name, as list_: for_agent takes the first canary


def negative_pools(session: Session) -> set[str]:
    """Names of the negative-control pools: read once per hang, a handful of rows."""
    return set(session.scalars(select(PoolSettings.name).where(PoolSettings.negative_control)))


def is_negative(agent: Agent, negative: set[str]) -> bool:
    return bool(set(agent.pools or []) & negative)


@dataclass(frozen=True)
class AgentControls:
    """The controls that apply to one agent: ``positive`` is the pool whose schedule is the
    shortest (its chance and duration are the check's), None when no pool has one."""

    negative: bool
    canary_at_start: bool
    positive: PoolControls | None
    canary: PoolControls | None  # the pool asking for the canary (its Go version)


def for_agent(agent: InPools, settings: Sequence[PoolSettings]) -> AgentControls:
    mine = [read(row) for row in settings if row.name in set(agent.pools or [])]
    scheduled = [c for c in mine if c.positive_control_every_s is not None]
    canaries = [c for c in mine if c.canary_at_start]
    return AgentControls(
        negative=any(c.negative_control for c in mine),
        canary_at_start=bool(canaries),
        positive=min(scheduled, key=lambda c: c.positive_control_every_s or 0.0)
        if scheduled
        else None,
        canary=canaries[0] if canaries else None,
    )
