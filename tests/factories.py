"""Building test data through the real business functions."""

from __future__ import annotations

import hashlib
from pathlib import Path

from reprofarm_db import builds, registration
from reprofarm_db.models import Agent, ApiToken, Build
from reprofarm_protocol.builds import BuildManifest
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
        machine_secret=machine_secret(name),
    )
    registered, plain = registration.register(session, request=request, caller=ENROLLMENT)
    agent = session.get(Agent, registered.id, populate_existing=True)
    assert agent is not None
    return agent, plain


ENROLLMENT = ApiToken(name="enrollment", role="agent", agent_id=None)
"""An enrollment token as the business rules see it (role agent, no agent yet)."""


def machine_secret(name: str) -> str:
    """A stable machine secret per agent name: the same name re-registers, a
    different secret is another machine."""
    return hashlib.sha256(f"machine of {name}".encode()).hexdigest()


# The hangtest source hash that fake builds claim; mark_ready must be given the same.
FAKE_SOURCE = "s" * 64


def fake_build(
    session: Session,
    *,
    target: str = "windows/arm64",
    path: Path | None = None,
    go_version: str = "1.27.3",
    source_sha256: str = FAKE_SOURCE,
) -> Build:
    """Record a build of ``path`` (or of nothing) without running Go; claiming the
    real hangtest source's hash (``source_sha256``) lets the worker's planning use it."""
    data = path.read_bytes() if path is not None else b""
    manifest = BuildManifest(
        go_version=f"go{go_version}",
        target=target,
        source_sha256=source_sha256,
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        path=str(path or "/nonexistent"),
        hangtest_version="test",
        fix_present=False,
        toolchain="/go",
        binary_machine=target,
    )
    return builds.record(session, go_version=go_version, manifest=manifest)
