"""Building test data through the real business functions."""

from __future__ import annotations

import hashlib

from reprofarm_db import agents
from reprofarm_db.models import Agent
from reprofarm_protocol.hardware import CpuInfo, HardwareInfo
from reprofarm_protocol.jobs import AgentRegister
from sqlalchemy.orm import Session


def hardware(
    *,
    cpus: int = 4,
    arch: str = "arm64",
    os: str = "windows",
    model: str = "Snapdragon X Elite",
    hypervisor: str = "none",
) -> HardwareInfo:
    fingerprint = hashlib.sha256(f"{os}{arch}{model}{cpus}{hypervisor}".encode()).hexdigest()
    return HardwareInfo(
        os=os,
        os_version="10.0.26100.1",
        os_name="Windows 11 Pro",
        arch=arch,
        python_arch=arch,
        cpu_model=model,
        logical_cpus=cpus,
        physical_cores=cpus,
        packages=1,
        numa_nodes=1,
        processor_groups=1,
        efficiency_classes=[0],
        hypervisor=hypervisor,
        memory_bytes=16 << 30,
        cpus=[CpuInfo(index=i, core=i) for i in range(cpus)],
        hostname="lab",
        fingerprint=fingerprint,
    )


def register_agent(
    session: Session,
    name: str,
    *,
    pools: list[str] | None = None,
    cpus: int = 4,
    arch: str = "arm64",
    os: str = "windows",
    hypervisor: str = "none",
) -> tuple[Agent, str]:
    request = AgentRegister(
        name=name,
        pools=pools or [],
        hardware=hardware(
            cpus=cpus, arch=arch, os=os, model=f"cpu of {name}", hypervisor=hypervisor
        ),
    )
    return agents.register(session, request=request)
