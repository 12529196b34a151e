"""Pure decoding of what Windows APIs return, testable on any OS.

- ``parse_processor_information``: the buffer of
  GetLogicalProcessorInformationEx(RelationAll), a sequence of variable-size
  SYSTEM_LOGICAL_PROCESSOR_INFORMATION_EX records (winnt.h).
- ``native_arch``: IsWow64Process2's native machine, or GetNativeSystemInfo's
  processor architecture on Windows before 10 1709.
- ``product_name``: the registry still says "Windows 10" on Windows 11.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from reprofarm_protocol.hardware import CpuInfo

from reprofarm_agent.binaries import machine_name
from reprofarm_agent.errors import PlacementError, ProbeError

RELATION_PROCESSOR_CORE = 0
RELATION_NUMA_NODE = 1
RELATION_CACHE = 2
RELATION_PROCESSOR_PACKAGE = 3
RELATION_GROUP = 4
RELATION_ALL = 0xFFFF

# Record header: Relationship (DWORD), Size (DWORD).
_HEADER = struct.Struct("<II")
# PROCESSOR_RELATIONSHIP: Flags, EfficiencyClass, Reserved[20], GroupCount;
# the GROUP_AFFINITY array starts 8-aligned, at offset 32 of the record.
_PROCESSOR = struct.Struct("<BB20xH")
# NUMA_NODE_RELATIONSHIP: NodeNumber, Reserved[18], GroupCount.
_NUMA = struct.Struct("<I18xH")
# GROUP_AFFINITY: Mask (KAFFINITY, 64-bit), Group, Reserved[3].
_GROUP_AFFINITY = struct.Struct("<QH6x")
_AFFINITY_OFFSET = 32

# GetNativeSystemInfo wProcessorArchitecture values.
_PROCESSOR_ARCHITECTURES = {0: "386", 5: "arm", 9: "amd64", 12: "arm64"}


@dataclass
class _Unit:
    """Logical CPUs of one core, package or NUMA node, as (group, index)."""

    cpus: list[tuple[int, int]] = field(default_factory=list)
    efficiency_class: int = 0


def _affinities(buf: bytes, offset: int, count: int, end: int) -> list[tuple[int, int]]:
    cpus: list[tuple[int, int]] = []
    for i in range(count):
        at = offset + _AFFINITY_OFFSET + i * _GROUP_AFFINITY.size
        if at + _GROUP_AFFINITY.size > end:
            raise ProbeError(f"processor information: group mask {i} runs past its record")
        mask, group = _GROUP_AFFINITY.unpack_from(buf, at)
        cpus.extend((group, bit) for bit in range(64) if mask >> bit & 1)
    return cpus


def parse_processor_information(buf: bytes) -> list[CpuInfo]:
    """Decode a RelationAll buffer into one CpuInfo per logical processor.

    Raises ProbeError on a buffer that is cut short or whose records do not
    add up (a record of size 0 would loop forever).
    """
    cores: list[_Unit] = []
    packages: list[_Unit] = []
    numa: dict[int, _Unit] = {}
    offset = 0
    while offset < len(buf):
        if offset + _HEADER.size > len(buf):
            raise ProbeError(f"processor information: truncated header at byte {offset}")
        relation, size = _HEADER.unpack_from(buf, offset)
        end = offset + size
        if size < _HEADER.size or end > len(buf):
            raise ProbeError(f"processor information: bad record size {size} at byte {offset}")
        if relation in (RELATION_PROCESSOR_CORE, RELATION_PROCESSOR_PACKAGE):
            if size < _AFFINITY_OFFSET:
                raise ProbeError(f"processor information: short processor record at {offset}")
            _flags, efficiency, count = _PROCESSOR.unpack_from(buf, offset + _HEADER.size)
            unit = _Unit(_affinities(buf, offset, count, end), efficiency)
            (cores if relation == RELATION_PROCESSOR_CORE else packages).append(unit)
        elif relation == RELATION_NUMA_NODE:
            if size < _AFFINITY_OFFSET:
                raise ProbeError(f"processor information: short NUMA record at {offset}")
            node, count = _NUMA.unpack_from(buf, offset + _HEADER.size)
            # Before Windows 10 20H2 GroupCount is 0 and one GroupMask follows.
            numa[node] = _Unit(_affinities(buf, offset, max(count, 1), end))
        offset = end
    if not cores:
        raise ProbeError("processor information: no processor core record")
    package_of = {cpu: i for i, unit in enumerate(packages) for cpu in unit.cpus}
    node_of = {cpu: node for node, unit in numa.items() for cpu in unit.cpus}
    out = [
        CpuInfo(
            index=index,
            group=group,
            core=core_id,
            package=package_of.get((group, index), 0),
            numa_node=node_of.get((group, index), 0),
            efficiency_class=core.efficiency_class,
        )
        for core_id, core in enumerate(cores)
        for group, index in core.cpus
    ]
    return sorted(out, key=lambda c: (c.group, c.index))


def native_arch(native_machine: int | None, processor_architecture: int | None) -> str:
    """The machine's own architecture, never the emulated one the process sees."""
    if native_machine:
        return machine_name(native_machine)
    if processor_architecture is not None:
        return _PROCESSOR_ARCHITECTURES.get(processor_architecture, "unknown")
    raise ProbeError("neither IsWow64Process2 nor GetNativeSystemInfo gave an architecture")


def product_name(registry_name: str, build: int) -> str:
    """Windows 11 kept "Windows 10" in ProductName; build 22000 is its first."""
    if build >= 22000 and registry_name.startswith("Windows 10"):
        return "Windows 11" + registry_name[len("Windows 10") :]
    return registry_name or "Windows"


def affinity_mask_for(cpus: tuple[int, ...]) -> int:
    """The KAFFINITY mask of CPU numbers within one processor group."""
    for c in cpus:
        if not 0 <= c < 64:
            raise PlacementError(f"cpus: CPU {c} cannot be in a processor group's 64-bit mask")
    return sum(1 << c for c in cpus)
