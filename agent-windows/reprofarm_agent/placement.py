"""CPU placement: from ``--cpus N`` and an affinity policy to an explicit CPU set.

Policies (docs/cli.md):
- ``compact``: fill a physical core's logical CPUs before the next core;
- ``spread``: one logical CPU per physical core first, then the siblings;
- ``pcores`` / ``ecores``: only the most / least performant efficiency class,
  one per physical core first (``ecores`` needs a machine with two classes);
- ``all``: every CPU the process may use;
- ``mask:0x..``: exactly the CPUs of a hexadecimal mask (processor group 0 on
  Windows).
A set never spans Windows processor groups: one affinity mask cannot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reprofarm_protocol.affinity import POLICIES, parse_mask
from reprofarm_protocol.hardware import CpuInfo

from reprofarm_agent.errors import PlacementError

__all__ = ["POLICIES", "CpuPlacement", "place", "validate_policy"]


@dataclass(frozen=True)
class CpuPlacement:
    group: int
    cpus: tuple[int, ...]

    @property
    def mask(self) -> int:
        return sum(1 << c for c in self.cpus)


def validate_policy(policy: str) -> str:
    """The policy if the protocol accepts it (the api checks the same rule)."""
    try:
        parse_mask(policy)
    except ValueError as exc:
        raise PlacementError(f"affinity: {exc}") from None
    return policy


def _by_core_then_sibling(cpus: Sequence[CpuInfo]) -> list[list[CpuInfo]]:
    cores: dict[tuple[int, int, int], list[CpuInfo]] = {}
    for c in sorted(cpus, key=lambda c: (c.group, c.index)):
        cores.setdefault((c.group, c.package, c.core), []).append(c)
    return [cores[k] for k in sorted(cores)]


def _compact(cpus: Sequence[CpuInfo]) -> list[CpuInfo]:
    return [c for core in _by_core_then_sibling(cpus) for c in core]


def _spread(cpus: Sequence[CpuInfo]) -> list[CpuInfo]:
    cores = _by_core_then_sibling(cpus)
    depth = max((len(core) for core in cores), default=0)
    return [core[i] for i in range(depth) for core in cores if i < len(core)]


def _ordered_candidates(cpus: Sequence[CpuInfo], policy: str) -> list[CpuInfo]:
    classes = sorted({c.efficiency_class for c in cpus})
    if policy in ("compact", "all"):
        return _compact(cpus)
    if policy == "spread":
        return _spread(cpus)
    if policy == "pcores":
        return _spread([c for c in cpus if c.efficiency_class == classes[-1]])
    if policy == "ecores":
        if len(classes) < 2:
            raise PlacementError(
                "affinity ecores: this machine has no efficiency cores "
                "(all its cores are of one efficiency class)"
            )
        return _spread([c for c in cpus if c.efficiency_class == classes[0]])
    raise AssertionError(policy)  # validate_policy ran first


def _from_mask(cpus: Sequence[CpuInfo], mask: int, count: int | None) -> CpuPlacement:
    wanted = [bit for bit in range(mask.bit_length()) if mask >> bit & 1]
    if not wanted:
        raise PlacementError("affinity mask: the mask selects no CPU")
    usable = {c.index for c in cpus if c.group == 0}
    missing = [bit for bit in wanted if bit not in usable]
    if missing:
        raise PlacementError(
            f"affinity mask: CPU {missing[0]} is not usable here "
            f"(usable in group 0: {_ranges(sorted(usable))})"
        )
    if count is not None and count != len(wanted):
        raise PlacementError(f"cpus: asked for {count} CPUs but the mask selects {len(wanted)}")
    return CpuPlacement(group=0, cpus=tuple(wanted))


def place(cpus: Sequence[CpuInfo], count: int | None, policy: str) -> CpuPlacement:
    """The CPU set for ``count`` CPUs (None: all that the policy allows).

    Raises PlacementError, naming the field and the reason, for any request
    this machine cannot honour.
    """
    validate_policy(policy)
    mask = parse_mask(policy)
    if not cpus:
        raise PlacementError("this machine reported no usable CPU")
    if count is not None and count < 1:
        raise PlacementError(f"cpus: must be at least 1, got {count}")
    if mask is not None:
        return _from_mask(cpus, mask, count)
    candidates = _ordered_candidates(cpus, policy)
    if policy == "all" and count is not None and count != len(candidates):
        raise PlacementError(
            f"cpus: affinity all uses every CPU ({len(candidates)}), but {count} were asked"
        )
    n = len(candidates) if count is None else count
    if n > len(candidates):
        what = "CPUs" if policy in ("compact", "spread") else f"CPUs for affinity {policy}"
        raise PlacementError(f"cpus: asked for {n} CPUs, this machine has {len(candidates)} {what}")
    chosen = candidates[:n]
    groups = {c.group for c in chosen}
    if len(groups) > 1:
        raise PlacementError(
            f"cpus: {n} CPUs would span processor groups {sorted(groups)}; "
            "one affinity mask covers one group"
        )
    return CpuPlacement(group=chosen[0].group, cpus=tuple(sorted(c.index for c in chosen)))


def _ranges(values: Sequence[int]) -> str:
    """Render ascending CPU numbers as ``0-3,8``."""
    parts: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return ",".join(parts)
