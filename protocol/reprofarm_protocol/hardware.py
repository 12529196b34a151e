"""The description of one machine, as the agent's probe reports it."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from reprofarm_protocol.limits import Count

_AT_LEAST_ONE = Field(ge=1, le=65535)

Platform = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,20}$")]
"""An OS or architecture name as GOOS/GOARCH spell it: the pair is a build target."""


def clip(limit: int) -> BeforeValidator:
    """Descriptive text a machine reports is cut, not refused: a long CPU model name
    must not cost a lab machine its registration."""

    def clip(value: object) -> object:
        return value[:limit] if isinstance(value, str) else value

    return BeforeValidator(clip)


Described = Annotated[str, clip(200)]


class CpuInfo(BaseModel):
    """One logical CPU and where it sits in the machine's topology."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(
        ge=0, le=65535, description="OS number of the logical CPU (within its group on Windows)"
    )
    core: int = Field(ge=0, le=2**31 - 1, description="physical core id, unique within the machine")
    package: int = Field(0, ge=0, le=65535)
    numa_node: int = Field(0, ge=0, le=65535)
    group: int = Field(0, ge=0, le=65535, description="Windows processor group; 0 elsewhere")
    efficiency_class: int = Field(
        0,
        ge=0,
        le=255,
        description="higher is faster (Windows EfficiencyClass); all 0 on uniform machines",
    )


class HardwareInfo(BaseModel):
    """What the farm groups hit rates by. ``fingerprint`` hashes the fields that
    identify a hardware configuration (not the host name, not free memory)."""

    model_config = ConfigDict(frozen=True)

    os: Platform = Field(description="windows or linux")
    os_version: Annotated[str, clip(100)] = Field(
        description="release and build, e.g. '10.0.26100' or '6.1.0-28'"
    )
    os_name: Described = Field(
        description="human name, e.g. 'Windows 11 Pro' or 'Debian GNU/Linux 12'"
    )
    arch: Platform = Field(description="native machine architecture: amd64, arm64, 386, arm")
    python_arch: Annotated[str, clip(20)] = Field(
        description="architecture the agent's Python runs as (emulated?)"
    )
    cpu_model: Described
    logical_cpus: int = _AT_LEAST_ONE
    physical_cores: int = _AT_LEAST_ONE
    packages: int = _AT_LEAST_ONE
    numa_nodes: int = _AT_LEAST_ONE
    processor_groups: int = _AT_LEAST_ONE
    efficiency_classes: list[Annotated[int, Field(ge=0, le=255)]] = Field(
        max_length=256, description="distinct classes, ascending"
    )
    hypervisor: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_.-]{1,40}$")] = Field(
        description="none, hyper-v, vmware, kvm, xen, virtualbox, ..."
    )
    memory_bytes: Count
    cpus: list[CpuInfo] = Field(min_length=1, max_length=65536)
    hostname: Annotated[str, clip(255)]
    fingerprint: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="sha256 of the normalized identifying fields"
    )
