from pathlib import Path

from reprofarm_agent.hardware import describe
from reprofarm_agent.platform import current_platform
from reprofarm_agent.platform.linux_probe import cpu_model, hypervisor, parse_cpu_list, topology
from reprofarm_agent.settings import AgentSettings


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def intel_hybrid_tree(root: Path) -> Path:
    """A captured shape of a 12th-gen Intel laptop: 2 P-cores with SMT
    (CPUs 0-3) and 4 E-cores (CPUs 4-7)."""
    write(root, "proc/cpuinfo", "processor\t: 0\nmodel name\t: 12th Gen Intel(R) Core(TM) i7\n")
    write(root, "sys/devices/cpu_core/cpus", "0-3\n")
    write(root, "sys/devices/cpu_atom/cpus", "4-7\n")
    write(root, "sys/devices/system/node/node0/cpulist", "0-7\n")
    for cpu, core in enumerate([0, 0, 4, 4, 8, 9, 10, 11]):
        write(root, f"sys/devices/system/cpu/cpu{cpu}/topology/core_id", f"{core}\n")
        write(root, f"sys/devices/system/cpu/cpu{cpu}/topology/physical_package_id", "0\n")
    return root


def arm_big_little_tree(root: Path) -> Path:
    """An arm64 board: 4 little cores (capacity 446) and 4 big (1024), two NUMA-less clusters."""
    blocks = [f"processor\t: {i}\nCPU implementer\t: 0x41\nCPU part\t: 0xd05" for i in range(8)]
    write(root, "proc/cpuinfo", "\n\n".join(blocks) + "\n")
    for cpu in range(8):
        write(root, f"sys/devices/system/cpu/cpu{cpu}/cpu_capacity", "446" if cpu < 4 else "1024")
        write(root, f"sys/devices/system/cpu/cpu{cpu}/topology/core_id", f"{cpu % 4}\n")
        write(root, f"sys/devices/system/cpu/cpu{cpu}/topology/physical_package_id", str(cpu // 4))
    return root


def test_cpu_lists_parse_ranges_and_singles():
    assert parse_cpu_list("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert parse_cpu_list("") == []


def test_intel_hybrid_cores_get_two_efficiency_classes(tmp_path):
    cpus = topology(intel_hybrid_tree(tmp_path), range(8))
    assert [c.efficiency_class for c in cpus] == [1, 1, 1, 1, 0, 0, 0, 0]
    assert [c.core for c in cpus] == [0, 0, 1, 1, 2, 3, 4, 5]


def test_arm_capacities_rank_into_classes_and_core_ids_stay_unique(tmp_path):
    root = arm_big_little_tree(tmp_path)
    cpus = topology(root, range(8))
    assert [c.efficiency_class for c in cpus] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert len({c.core for c in cpus}) == 8  # core_id repeats across packages
    assert cpu_model(root) == "ARM implementer 0x41 part 0xd05"


def test_only_usable_cpus_are_listed(tmp_path):
    cpus = topology(intel_hybrid_tree(tmp_path), [1, 5])
    assert [c.index for c in cpus] == [1, 5]


def test_hypervisor_is_named_from_dmi_or_clock_source(tmp_path):
    write(tmp_path, "proc/cpuinfo", "flags\t: fpu hypervisor\n")
    assert hypervisor(tmp_path) == "unknown"
    write(
        tmp_path,
        "sys/devices/system/clocksource/clocksource0/available_clocksource",
        "tsc kvm-clock\n",
    )
    assert hypervisor(tmp_path) == "kvm"
    write(tmp_path, "sys/class/dmi/id/sys_vendor", "VMware, Inc.\n")
    assert hypervisor(tmp_path) == "vmware"


def test_bare_metal_without_the_flag_is_none(tmp_path):
    write(tmp_path, "proc/cpuinfo", "flags\t: fpu sse\n")
    assert hypervisor(tmp_path) == "none"


def test_this_machine_probes_completely():
    platform = current_platform(AgentSettings())
    info = describe(platform.probe())
    assert info.os == platform.name
    assert info.logical_cpus >= 1
    assert info.physical_cores >= 1
    assert info.arch in {"amd64", "arm64"}
    assert len(info.fingerprint) == 64
    assert info.fingerprint == describe(platform.probe()).fingerprint
