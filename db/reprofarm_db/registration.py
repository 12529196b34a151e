"""An agent's registration: who may take a name, and its row, its hardware and its
fresh token written as statements.

A lab that powers on registers thousands of agents within a minute (issue 18's
storm); each registration is a handful of statements with nothing loaded into the
ORM: the agent's row is read under lock (its id, secret and reboot state), the
hardware configuration found or inserted without a race, the agent's row written
(``INSERT`` or ``UPDATE``), its earlier tokens revoked by one ``UPDATE ... RETURNING``
(``tokens.revoke_for_agent``) and its new token inserted."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from reprofarm_protocol.hardware import HardwareInfo
from reprofarm_protocol.jobs import AgentRegister
from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from reprofarm_db import tokens
from reprofarm_db.errors import Conflict, Forbidden, Invalid
from reprofarm_db.models import ApiToken, Base, utcnow
from reprofarm_db.tokens import Role

_agents = Base.metadata.tables["agents"]
_configs = Base.metadata.tables["hardware_configs"]
_tokens = Base.metadata.tables["api_tokens"]


class _Claimed(Protocol):
    """What deciding a claim reads of the agent that holds the name, if any."""

    @property
    def id(self) -> int: ...
    @property
    def machine_secret_hash(self) -> str | None: ...


@dataclass(frozen=True)
class Registered:
    """The agent as its registration left it: what the canary check and the reply need."""

    id: int
    name: str
    pools: list[str]
    needs_reboot: bool


_HOLDER = (
    select(_agents.c.id, _agents.c.machine_secret_hash, _agents.c.needs_reboot, _agents.c.reboots)
    .where(_agents.c.name == bindparam("name"))
    .with_for_update()
)

_CONFIG_ID = select(_configs.c.id).where(_configs.c.fingerprint == bindparam("fingerprint"))


def _check_claim(holder: _Claimed | None, *, request: AgentRegister, caller: ApiToken) -> None:
    """Who may register this name. Raises Forbidden or Conflict naming the reason.

    An agent's own token registers only that agent; a name already bound to a
    machine needs that machine's secret (only an admin may hand it to another);
    a new agent must bring a secret so that it can be bound at all."""
    if caller.role == Role.ADMIN:
        return
    if caller.agent_id is not None and (holder is None or holder.id != caller.agent_id):
        raise Forbidden(
            f"name: this agent's token registers only its own agent, not {request.name!r}"
        )
    if request.machine_secret is None:
        raise Invalid("machine_secret", "required: the agent's own secret binds the name to it")
    if holder is None:
        return
    if holder.machine_secret_hash is None:
        if caller.agent_id == holder.id:
            return  # registered before names were bound: its own token binds it now
        raise Conflict(
            f"name: agent {request.name!r} exists and is not bound to a machine yet; "
            "register it with its own token or an admin token"
        )
    if not tokens.matches(request.machine_secret, holder.machine_secret_hash):
        raise Conflict(
            f"name: agent {request.name!r} is registered by another machine; "
            "an admin token can register it anew"
        )


def register(
    session: Session, *, request: AgentRegister, caller: ApiToken
) -> tuple[Registered, str]:
    """Register (or re-register) an agent by name once ``caller`` proved it may
    (see ``_check_claim``); it gets a fresh token of its own, and its earlier
    tokens are revoked (their hashes noted for ``tokens.revoked_in``). The ORM's
    objects of this agent in ``session``, if any, are not refreshed."""
    conn = session.connection()
    holder = conn.execute(_HOLDER, {"name": request.name}).one_or_none()
    _check_claim(holder, request=request, caller=caller)
    now = utcnow()
    values = _described(request, config_id=_config_id_of(conn, hardware=request.hardware), now=now)
    if request.machine_secret is not None:
        values["machine_secret_hash"] = tokens.hash_secret(request.machine_secret)
    needs_reboot = bool(holder.needs_reboot) if holder is not None else False
    if request.reboot is not None:
        # The agent rebooted its machine for a process it could not kill: lease again.
        needs_reboot = False
        values |= {"last_reboot_at": now, "reboots": (holder.reboots if holder else 0) + 1}
    elif caller.role == Role.ADMIN:
        needs_reboot = False  # an admin vouches for the machine
    # Otherwise needs_reboot stays: an agent restart does not end a stuck process.
    values["needs_reboot"] = needs_reboot
    if holder is None:
        agent_id = conn.execute(
            insert(_agents).values(name=request.name, **values).returning(_agents.c.id)
        ).scalar_one()
    else:
        agent_id = holder.id
        conn.execute(update(_agents).where(_agents.c.id == agent_id).values(**values))
    tokens.revoke_for_agent(session, agent_id=agent_id)
    plain = tokens.mint(
        conn, name=f"agent {request.name}"[:100], role=Role.AGENT, agent_id=agent_id
    )
    registered = Registered(
        id=agent_id, name=request.name, pools=values["pools"], needs_reboot=needs_reboot
    )
    return registered, plain


def _described(request: AgentRegister, *, config_id: int, now: datetime) -> dict[str, Any]:
    """The agent's columns that each registration rewrites from what it reports."""
    hw = request.hardware
    return {
        "pools": sorted(set(request.pools)),
        "hardware_config_id": config_id,
        "target": f"{hw.os}/{hw.arch}",
        "logical_cpus": hw.logical_cpus,
        "facts": {
            "os": hw.os,
            "arch": hw.arch,
            "hypervisor": hw.hypervisor,
            "cpu_model": hw.cpu_model,
            "fingerprint": hw.fingerprint,
            "os_version": hw.os_version,
        },
        "agent_version": request.agent_version,
        "last_seen": now,
    }


def _config_id_of(conn: Connection, *, hardware: HardwareInfo) -> int:
    """The id of this fingerprint's configuration, inserted on first sight. Two agents
    of a new configuration registering at once both get the one row: the insert that
    loses the race does nothing, and the read after it finds the winner's."""
    found = conn.execute(_CONFIG_ID, {"fingerprint": hardware.fingerprint}).scalar()
    if found is not None:
        return int(found)
    conn.execute(
        _insert_config(conn.dialect.name),
        {
            "fingerprint": hardware.fingerprint,
            "os": hardware.os,
            "os_version": hardware.os_version,
            "arch": hardware.arch,
            "cpu_model": hardware.cpu_model,
            "logical_cpus": hardware.logical_cpus,
            "physical_cores": hardware.physical_cores,
            "hypervisor": hardware.hypervisor,
            "description": hardware.model_dump(mode="json", exclude={"hostname"}),
            "first_seen": utcnow(),
        },
    )
    return int(conn.execute(_CONFIG_ID, {"fingerprint": hardware.fingerprint}).scalar_one())


@functools.cache
def _insert_config(dialect: str) -> Any:
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert_(_configs).on_conflict_do_nothing(index_elements=["fingerprint"])
