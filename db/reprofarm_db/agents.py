"""Agents and the hardware configurations they report."""

from __future__ import annotations

from datetime import datetime

from reprofarm_protocol.hardware import HardwareInfo
from reprofarm_protocol.jobs import AgentRegister
from sqlalchemy import select
from sqlalchemy.orm import Session

from reprofarm_db import tokens
from reprofarm_db.errors import NotFound
from reprofarm_db.models import Agent, HardwareConfig, utcnow


def hardware_config_for(session: Session, *, hardware: HardwareInfo) -> HardwareConfig:
    """The row of this fingerprint, created on first sight."""
    found = session.scalar(
        select(HardwareConfig).where(HardwareConfig.fingerprint == hardware.fingerprint)
    )
    if found is not None:
        return found
    config = HardwareConfig(
        fingerprint=hardware.fingerprint,
        os=hardware.os,
        os_version=hardware.os_version,
        arch=hardware.arch,
        cpu_model=hardware.cpu_model,
        logical_cpus=hardware.logical_cpus,
        physical_cores=hardware.physical_cores,
        hypervisor=hardware.hypervisor,
        description=hardware.model_dump(mode="json", exclude={"hostname"}),
    )
    session.add(config)
    session.flush()
    return config


def register(session: Session, *, request: AgentRegister) -> tuple[Agent, str]:
    """Register (or re-register) an agent by name; it gets a fresh token of its
    own, and its earlier tokens are revoked."""
    config = hardware_config_for(session, hardware=request.hardware)
    hw = request.hardware
    agent = session.scalar(select(Agent).where(Agent.name == request.name))
    if agent is None:
        agent = Agent(name=request.name)
        session.add(agent)
    agent.pools = sorted(set(request.pools))
    agent.hardware_config_id = config.id
    agent.target = f"{hw.os}/{hw.arch}"
    agent.logical_cpus = hw.logical_cpus
    agent.facts = {
        "os": hw.os,
        "arch": hw.arch,
        "hypervisor": hw.hypervisor,
        "cpu_model": hw.cpu_model,
        "fingerprint": hw.fingerprint,
        "os_version": hw.os_version,
    }
    agent.agent_version = request.agent_version
    agent.last_seen = utcnow()
    agent.needs_reboot = False
    session.flush()
    tokens.revoke_for_agent(session, agent_id=agent.id)
    plain = tokens.create(session, name=f"agent {agent.name}", role="agent", agent_id=agent.id)
    return agent, plain


def get_or_raise(session: Session, *, agent_id: int) -> Agent:
    agent = session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} does not exist")
    return agent


def list_(session: Session) -> list[Agent]:
    return list(session.scalars(select(Agent).order_by(Agent.name)))


def is_online(agent: Agent, *, now: datetime, lease_s: float) -> bool:
    return (now - agent.last_seen).total_seconds() < 2 * lease_s


def matches(agent: Agent, *, pools: list[str], names: list[str], selector: dict[str, str]) -> bool:
    """Whether an agent is eligible for a job's targets. An empty target list
    means every agent; a selector must match every fact it names."""
    if agent.needs_reboot:
        return False
    if any(str(agent.facts.get(k)) != v for k, v in selector.items()):
        return False
    if not pools and not names:
        return True
    return agent.name in names or bool(set(agent.pools) & set(pools))
