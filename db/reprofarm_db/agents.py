"""Agents and the hardware configurations they report."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from reprofarm_protocol.controls import AgentHealth
from reprofarm_protocol.jobs import AgentState
from sqlalchemy import ColumnElement, and_, case, cast, func, literal, or_, select, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from reprofarm_db.errors import NotFound
from reprofarm_db.models import Agent, HardwareConfig, hardware_label


def hardware_names(session: Session, *, ids: Collection[int]) -> dict[int, tuple[str, str]]:
    """(fingerprint, label) of each hardware configuration id: how statistics and the
    dashboard name a configuration. Only the columns a label needs are read: the JSON
    descriptions of 2,000 configurations cost more than the statistics themselves."""
    if not ids:
        return {}
    rows = session.execute(
        select(
            HardwareConfig.id,
            HardwareConfig.fingerprint,
            HardwareConfig.cpu_model,
            HardwareConfig.arch,
            HardwareConfig.logical_cpus,
            HardwareConfig.hypervisor,
            HardwareConfig.os,
        ).where(HardwareConfig.id.in_(ids))
    )
    return {c.id: (c.fingerprint, hardware_label(c)) for c in rows}


class AgentTraits(Protocol):
    """What matching agents to a job reads: an ``Agent``, or an ``AgentSummary``."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def pools(self) -> list[str]: ...
    @property
    def target(self) -> str: ...
    @property
    def logical_cpus(self) -> int: ...
    @property
    def facts(self) -> dict[str, Any]: ...
    @property
    def needs_reboot(self) -> bool: ...
    @property
    def last_seen(self) -> datetime: ...
    @property
    def hardware_config_id(self) -> int: ...


@dataclass(frozen=True, slots=True)
class AgentSummary:
    """An agent's columns a job's expansion reads, from one row: a submit read every
    agent as an ORM object, a fifth of an api process's CPU at 2,000 agents."""

    id: int
    name: str
    pools: list[str]
    target: str
    logical_cpus: int
    facts: dict[str, Any]
    needs_reboot: bool
    last_seen: datetime
    hardware_config_id: int


def summaries(session: Session, *, seen_since: datetime | None = None) -> list[AgentSummary]:
    """Every agent (seen since ``seen_since``, when given), by name."""
    query = select(
        Agent.id,
        Agent.name,
        Agent.pools,
        Agent.target,
        Agent.logical_cpus,
        Agent.facts,
        Agent.needs_reboot,
        Agent.last_seen,
        Agent.hardware_config_id,
    ).order_by(Agent.name)
    if seen_since is not None:
        query = query.where(Agent.last_seen >= seen_since)
    return [AgentSummary(*row) for row in session.execute(query)]


def get_or_raise(session: Session, *, agent_id: int) -> Agent:
    agent = session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} does not exist")
    return agent


def list_(session: Session) -> list[Agent]:
    return list(session.scalars(select(Agent).order_by(Agent.name)))


@dataclass(frozen=True)
class AgentFilter:
    """Which agents a page holds; None: any. Every filter given must match."""

    pool: str | None = None
    online: bool | None = None
    state: AgentState | None = None
    health: str | None = None
    name_prefix: str | None = None
    name: str | None = None  # the whole name, exactly
    agent_id: int | None = None
    # A case-insensitive substring of the name, the target (os/arch) or the CPU
    # model, or one of its pools named whole.
    search: str | None = None


@dataclass(frozen=True)
class Counts:
    """How many agents are in each state, over every agent (no filter): the
    dashboard's summary line. ``online`` counts every agent seen within two lease
    periods, including one that needs a reboot; the four states add up to ``agents``."""

    agents: int
    online: int
    busy: int
    idle: int
    offline: int
    needs_reboot: int
    healthy: int
    unhealthy: int
    unknown: int


@dataclass(frozen=True)
class Page:
    agents: list[tuple[Agent, AgentState]]  # by name, each with its state
    total: int  # agents that match the filter, over all pages
    counts: Counts  # over every agent


def state_of(*, now: datetime, lease_s: float) -> ColumnElement[str]:
    """An agent's ``AgentState`` as SQL: the one definition that the page's filter,
    its counts and each row's state read."""
    return case(
        (Agent.needs_reboot, AgentState.NEEDS_REBOOT.value),
        (~_seen(now=now, lease_s=lease_s), AgentState.OFFLINE.value),
        (Agent.current_run_id.is_not(None), AgentState.BUSY.value),
        else_=AgentState.IDLE.value,
    )


def list_with_state(
    session: Session,
    *,
    where: AgentFilter,
    now: datetime,
    lease_s: float,
    limit: int | None = None,
    offset: int = 0,
) -> list[tuple[Agent, AgentState]]:
    """The agents that match, by name, each with its state; ``limit`` from ``offset``."""
    query = (
        select(Agent, state_of(now=now, lease_s=lease_s))
        .where(*_conditions(session, where, now=now, lease_s=lease_s))
        .order_by(Agent.name)
        .limit(limit)
        .offset(offset)
    )
    return [(agent, AgentState(state)) for agent, state in session.execute(query)]


def page(
    session: Session,
    *,
    where: AgentFilter,
    now: datetime,
    lease_s: float,
    limit: int,
    offset: int,
) -> Page:
    """One page of the agents that match, by name, how many match in all, and the
    counts over every agent. Two statements: the page, and one aggregate over the
    agents table for the total and the counts together."""
    conditions = _conditions(session, where, now=now, lease_s=lease_s)
    state = state_of(now=now, lease_s=lease_s)
    tally = select(
        func.count().label("agents"),
        func.count().filter(and_(true(), *conditions)).label("total"),
        func.count().filter(_seen(now=now, lease_s=lease_s)).label("online"),
        # Labelled as Counts' fields: a state or health added later fails here, loudly.
        *(func.count().filter(state == s.value).label(s.name.lower()) for s in AgentState),
        *(func.count().filter(Agent.health == h.value).label(h.value) for h in AgentHealth),
    ).select_from(Agent)
    counted = session.execute(tally).one()._asdict()
    total = counted.pop("total")
    rows = list_with_state(
        session, where=where, now=now, lease_s=lease_s, limit=limit, offset=offset
    )
    return Page(agents=rows, total=total, counts=Counts(**counted))


def _conditions(
    session: Session, where: AgentFilter, *, now: datetime, lease_s: float
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if where.agent_id is not None:
        conditions.append(Agent.id == where.agent_id)
    if where.name is not None:
        conditions.append(Agent.name == where.name)
    if where.pool is not None:
        conditions.append(_in_pool(session, where.pool))
    if where.online is not None:
        seen = _seen(now=now, lease_s=lease_s)
        conditions.append(seen if where.online else ~seen)
    if where.state is not None:
        conditions.append(state_of(now=now, lease_s=lease_s) == where.state.value)
    if where.health is not None:
        conditions.append(Agent.health == where.health)
    if where.name_prefix:
        conditions.append(Agent.name.startswith(where.name_prefix, autoescape=True))
    if where.search:
        needle = where.search
        conditions.append(
            or_(
                Agent.name.icontains(needle, autoescape=True),
                Agent.target.icontains(needle, autoescape=True),
                Agent.facts["cpu_model"].as_string().icontains(needle, autoescape=True),
                _in_pool(session, needle),
            )
        )
    return conditions


def _in_pool(session: Session, pool: str) -> ColumnElement[bool]:
    """The agent's pools (a JSON list) hold ``pool``."""
    if session.get_bind().dialect.name == "postgresql":
        held: ColumnElement[bool] = cast(Agent.pools, JSONB).contains(literal([pool], JSONB))
        return held
    member = func.json_each(Agent.pools).table_valued("value").alias("member")
    return select(1).select_from(member).where(member.c.value == pool).exists()


def count_in_pools(session: Session, *, pools: Collection[str]) -> dict[str, int]:
    """How many agents each of ``pools`` holds (a pool no agent names is absent),
    counted in SQL: `GET /pools` comes with every refresh of the dashboard's agents
    page, and loading thousands of agents to count them cost as much as the page."""
    if not pools:
        return {}
    if session.get_bind().dialect.name == "postgresql":
        elements = func.jsonb_array_elements_text(cast(Agent.pools, JSONB))
    else:
        elements = func.json_each(Agent.pools)
    member = elements.table_valued("value", joins_implicitly=True).alias("member")
    counted = session.execute(
        select(member.c.value, func.count())
        .select_from(Agent, member)
        .where(member.c.value.in_(pools))
        .group_by(member.c.value)
    )
    return dict(counted.all())


def online_since(*, now: datetime, lease_s: float) -> datetime:
    """Agents seen after this are online: two lease periods of silence make an
    agent offline, and no run is planned for it."""
    return now - timedelta(seconds=2 * lease_s)


def _seen(*, now: datetime, lease_s: float) -> ColumnElement[bool]:
    """``is_online`` in SQL."""
    return Agent.last_seen > online_since(now=now, lease_s=lease_s)


def is_online(agent: Agent, *, now: datetime, lease_s: float) -> bool:
    return agent.last_seen > online_since(now=now, lease_s=lease_s)


def matches(
    agent: AgentTraits, *, pools: list[str], names: list[str], selector: Mapping[str, str]
) -> bool:
    """Whether an agent is eligible for a job's targets. An empty target list
    means every agent; a selector must match every fact it names."""
    if agent.needs_reboot:
        return False
    if any(str(agent.facts.get(k)) != v for k, v in selector.items()):
        return False
    if not pools and not names:
        return True
    return agent.name in names or bool(set(agent.pools) & set(pools))
