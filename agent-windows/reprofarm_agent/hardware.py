"""Turning probed facts into a HardwareInfo with a stable fingerprint."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from reprofarm_protocol.hardware import CpuInfo, HardwareInfo

_GIB = 1 << 30


@dataclass
class ProbedFacts:
    """What a platform probe reads; everything the fingerprint needs is here."""

    os: str
    os_version: str
    os_name: str
    arch: str
    python_arch: str
    cpu_model: str
    hypervisor: str
    memory_bytes: int
    hostname: str
    cpus: list[CpuInfo] = field(default_factory=list)


def fingerprint(facts: ProbedFacts) -> str:
    """Hash of the fields that identify a hardware configuration.

    Memory is rounded to whole GiB (firmware reserves vary by a few MiB between
    identical machines); the host name and the agent's own Python arch are
    left out, so two identical lab machines share one fingerprint.
    """
    normalized = {
        "os": facts.os,
        "os_version": facts.os_version,
        "arch": facts.arch,
        "cpu_model": " ".join(facts.cpu_model.split()),
        "hypervisor": facts.hypervisor,
        "memory_gib": round(facts.memory_bytes / _GIB),
        "topology": sorted(
            (c.group, c.index, c.core, c.package, c.numa_node, c.efficiency_class)
            for c in facts.cpus
        ),
    }
    blob = json.dumps(normalized, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def describe(facts: ProbedFacts) -> HardwareInfo:
    cpus = facts.cpus
    return HardwareInfo(
        os=facts.os,
        os_version=facts.os_version,
        os_name=facts.os_name,
        arch=facts.arch,
        python_arch=facts.python_arch,
        cpu_model=facts.cpu_model,
        logical_cpus=len(cpus),
        physical_cores=len({c.core for c in cpus}),
        packages=len({c.package for c in cpus}),
        numa_nodes=len({c.numa_node for c in cpus}),
        processor_groups=len({c.group for c in cpus}),
        efficiency_classes=sorted({c.efficiency_class for c in cpus}),
        hypervisor=facts.hypervisor,
        memory_bytes=facts.memory_bytes,
        cpus=sorted(cpus, key=lambda c: (c.group, c.index)),
        hostname=facts.hostname,
        fingerprint=fingerprint(facts),
    )
