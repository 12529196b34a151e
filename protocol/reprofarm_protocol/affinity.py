"""Scenarios and CPU affinity policies: the one definition the api, the agent and
the CLI all import (two copies once drifted, and the api accepted ``mask:0xZZ``,
which every agent then refused)."""

from __future__ import annotations

import re
from typing import Literal, get_args

Scenario = Literal["pipe-close-race", "socket-pipe-mix", "control-deadlock"]
SCENARIOS: tuple[str, ...] = get_args(Scenario)

POLICIES = ("compact", "spread", "pcores", "ecores", "all")
"""Named placements; ``mask:0x<hex>`` names an exact CPU set instead."""

MASK_BITS = 64
"""A Windows affinity mask covers one processor group: 64 CPUs at most."""

_MASK = re.compile(r"mask:0x([0-9a-fA-F]{1,16})")


def parse_mask(policy: str) -> int | None:
    """The mask of a ``mask:0x..`` policy, None for a named policy.

    Raises ValueError with the reason for anything else: unknown names, non-hex
    digits, an empty mask, or more than 64 bits."""
    if policy in POLICIES:
        return None
    if not policy.startswith("mask:"):
        raise ValueError(f"{policy[:40]!r} is not one of {', '.join(POLICIES)} or mask:0x<hex>")
    match = _MASK.fullmatch(policy)
    if match is None:
        raise ValueError(
            f"{policy[:40]!r}: a mask is mask:0x followed by 1 to 16 hex digits "
            f"({MASK_BITS} CPUs, one processor group)"
        )
    mask = int(match.group(1), 16)
    if mask == 0:
        raise ValueError(f"{policy!r} selects no CPU")
    return mask


def check_policy(policy: str) -> str:
    """``policy`` if it is valid; ValueError with the reason otherwise."""
    parse_mask(policy)
    return policy
