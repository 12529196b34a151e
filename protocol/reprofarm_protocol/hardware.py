"""The description of one machine, as the agent's probe reports it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CpuInfo(BaseModel):
    """One logical CPU and where it sits in the machine's topology."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(description="OS number of the logical CPU (within its group on Windows)")
    core: int = Field(description="physical core id, unique within the machine")
    package: int = 0
    numa_node: int = 0
    group: int = Field(0, description="Windows processor group; 0 elsewhere")
    efficiency_class: int = Field(
        0, description="higher is faster (Windows EfficiencyClass); all 0 on uniform machines"
    )


class HardwareInfo(BaseModel):
    """What the farm groups hit rates by. ``fingerprint`` hashes the fields that
    identify a hardware configuration (not the host name, not free memory)."""

    model_config = ConfigDict(frozen=True)

    os: str = Field(description="windows or linux")
    os_version: str = Field(description="release and build, e.g. '10.0.26100' or '6.1.0-28'")
    os_name: str = Field(description="human name, e.g. 'Windows 11 Pro' or 'Debian GNU/Linux 12'")
    arch: str = Field(description="native machine architecture: amd64, arm64, 386, arm")
    python_arch: str = Field(description="architecture the agent's Python runs as (emulated?)")
    cpu_model: str
    logical_cpus: int
    physical_cores: int
    packages: int
    numa_nodes: int
    processor_groups: int
    efficiency_classes: list[int] = Field(description="distinct classes, ascending")
    hypervisor: str = Field(description="none, hyper-v, vmware, kvm, xen, virtualbox, ...")
    memory_bytes: int
    cpus: list[CpuInfo]
    hostname: str
    fingerprint: str = Field(description="sha256 of the normalized identifying fields")
