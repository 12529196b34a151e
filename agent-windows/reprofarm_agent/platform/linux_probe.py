"""Reading a Linux machine's topology and identity from /proc and /sys.

Every function takes the filesystem root, so tests run them on captured
trees (a hybrid Intel laptop, an ARM big.LITTLE board) as well as on /.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from reprofarm_protocol.hardware import CpuInfo

from reprofarm_agent.errors import ProbeError
from reprofarm_agent.hypervisor import classify_hypervisor


def parse_cpu_list(text: str) -> list[int]:
    """Parse the kernel's CPU list format (``0-3,8,10-11``)."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            cpus.extend(range(int(lo), int(hi) + 1))
        else:
            cpus.append(int(part))
    return cpus


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return default


def _cpuinfo_blocks(text: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    for raw in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in raw.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if fields:
            blocks.append(fields)
    return blocks


def cpu_model(root: Path) -> str:
    """The CPU's marketing name, or the ARM implementer/part when the kernel
    gives no name (arm64 /proc/cpuinfo has none)."""
    blocks = _cpuinfo_blocks(_read(root / "proc/cpuinfo"))
    for block in blocks:
        for key in ("model name", "Model", "Hardware", "cpu model"):
            if block.get(key):
                return block[key]
    for block in blocks:
        if "CPU implementer" in block:
            return f"ARM implementer {block['CPU implementer']} part {block.get('CPU part', '?')}"
    return "unknown"


def hypervisor_flag(root: Path) -> bool:
    for block in _cpuinfo_blocks(_read(root / "proc/cpuinfo")):
        if "hypervisor" in block.get("flags", "").split():
            return True
    return False


def hypervisor(root: Path) -> str:
    dmi = root / "sys/class/dmi/id"
    strings = [_read(dmi / name) for name in ("sys_vendor", "product_name", "board_vendor")]
    strings.append(_read(root / "sys/hypervisor/type"))
    clocks = _read(root / "sys/devices/system/clocksource/clocksource0/available_clocksource")
    # The paravirtual clock sources name the hypervisor when DMI is absent
    # (Firecracker and other minimal VMs expose no DMI table).
    for clock, name in (("kvm-clock", "kvm"), ("hyperv_clocksource", "hyper-v"), ("xen", "xen")):
        if clock in clocks.split():
            strings.append(name)
    return classify_hypervisor(strings, hypervisor_present=hypervisor_flag(root))


def memory_bytes(root: Path) -> int:
    m = re.search(r"^MemTotal:\s+(\d+) kB", _read(root / "proc/meminfo"), re.MULTILINE)
    return int(m.group(1)) * 1024 if m else 0


def os_identity(root: Path) -> tuple[str, str]:
    """(pretty name, kernel release) from os-release and /proc."""
    name = "Linux"
    for line in _read(root / "etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            name = line.split("=", 1)[1].strip('"')
    return name, _read(root / "proc/sys/kernel/osrelease", "unknown")


def _numa_of(root: Path) -> dict[int, int]:
    nodes: dict[int, int] = {}
    for node_dir in (root / "sys/devices/system/node").glob("node[0-9]*"):
        node = int(node_dir.name[4:])
        for cpu in parse_cpu_list(_read(node_dir / "cpulist")):
            nodes[cpu] = node
    return nodes


def _efficiency_classes(root: Path, cpus: Iterable[int]) -> dict[int, int]:
    """Rank CPUs by capacity: higher class is faster, as Windows' EfficiencyClass.

    Intel hybrid parts list their P and E cores under cpu_core/cpu_atom; ARM
    big.LITTLE (and recent x86 kernels) publish cpu_capacity per CPU.
    """
    cpus = list(cpus)
    core_list = _read(root / "sys/devices/cpu_core/cpus")
    atom_list = _read(root / "sys/devices/cpu_atom/cpus")
    if core_list and atom_list:
        pcores = set(parse_cpu_list(core_list))
        return {c: 1 if c in pcores else 0 for c in cpus}
    capacity = {}
    for c in cpus:
        text = _read(root / f"sys/devices/system/cpu/cpu{c}/cpu_capacity")
        capacity[c] = int(text) if text.isdigit() else 0
    ranks = {cap: rank for rank, cap in enumerate(sorted(set(capacity.values())))}
    return {c: ranks[cap] for c, cap in capacity.items()}


def topology(root: Path, usable: Iterable[int]) -> list[CpuInfo]:
    """One CpuInfo per usable logical CPU. Physical cores get machine-wide ids
    (the kernel's core_id repeats across packages)."""
    usable = sorted(set(usable))
    if not usable:
        raise ProbeError("no usable CPU: the process affinity mask is empty")
    numa = _numa_of(root)
    classes = _efficiency_classes(root, usable)
    core_ids: dict[tuple[int, int], int] = {}
    out: list[CpuInfo] = []
    for cpu in usable:
        topo = root / f"sys/devices/system/cpu/cpu{cpu}/topology"
        package_text = _read(topo / "physical_package_id", "0")
        core_text = _read(topo / "core_id", str(cpu))
        package = int(package_text) if package_text.lstrip("-").isdigit() else 0
        raw_core = int(core_text) if core_text.lstrip("-").isdigit() else cpu
        core = core_ids.setdefault((package, raw_core), len(core_ids))
        out.append(
            CpuInfo(
                index=cpu,
                core=core,
                package=max(package, 0),
                numa_node=numa.get(cpu, 0),
                group=0,
                efficiency_class=classes.get(cpu, 0),
            )
        )
    return out
