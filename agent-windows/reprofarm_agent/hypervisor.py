"""Naming the hypervisor from the strings the OS exposes.

Windows gives the BIOS manufacturer and product (registry), Linux the DMI
strings, /sys/hypervisor/type or the clock sources the kernel found. Both
funnel into one classification so that a VMware VM is "vmware" whichever OS
runs in it.
"""

from __future__ import annotations

from collections.abc import Iterable

# Ordered: the first marker found in any string wins. Hyper-V's product name is
# "Virtual Machine" from manufacturer "Microsoft Corporation"; both must match.
_MARKERS: tuple[tuple[str, str], ...] = (
    ("vmware", "vmware"),
    ("virtualbox", "virtualbox"),
    ("innotek", "virtualbox"),
    ("parallels", "parallels"),
    ("qemu", "kvm"),
    ("kvm", "kvm"),
    ("firecracker", "kvm"),
    ("amazon ec2", "kvm"),
    ("google compute engine", "kvm"),
    ("xen", "xen"),
    ("bochs", "kvm"),
    ("apple virtualization", "apple"),
    ("hyperv", "hyper-v"),
    ("hyper-v", "hyper-v"),
)


def classify_hypervisor(strings: Iterable[str], *, hypervisor_present: bool) -> str:
    """Return the hypervisor's short name, ``none`` on bare metal, or
    ``unknown`` when the CPU says it is virtualized but nothing names the vendor."""
    lowered = [s.lower() for s in strings if s]
    if any("microsoft corporation" in s for s in lowered) and any(
        "virtual machine" in s for s in lowered
    ):
        return "hyper-v"
    for marker, name in _MARKERS:
        if any(marker in s for s in lowered):
            return name
    return "unknown" if hypervisor_present else "none"
