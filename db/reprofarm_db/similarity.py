"""How close two signatures' stuck goroutines are: the stuck-set similarity triage uses to
offer a farm bucket for a dump that matches none exactly.

A signature names its stuck goroutines by short function chains (``label:role|role``, a
role's stacks joined by ``+``, each ``state@f1,f2,f3`` or, from a rule's anchor, ``f1,f2,f3``:
``goroutine_classify._signature``). Two things make equal goroutines read differently, and
both are common in dumps cut from CI logs and issues:

- the wait state: a goroutine whose header was cut off is ``unknown@...``, the same one
  whole is ``semacquire@...``; so chains are compared without their states;
- the window: a chain is three frames taken from a rule's anchor outwards, or from the top
  of the stack when no rule's pattern fired; a cut paste often loses the header a rule's
  pattern needed, so its label (other-hang) and its window differ from the farm's
  (control-deadlock) for the same goroutine. Two chains are the same goroutine when they
  are windows of one stack: one holds the other, or one's outer end overlaps the other's
  inner end by two functions or more (``lockSlow,Lock,lockLeftThenRight`` and
  ``Lock,lockLeftThenRight,iteration.func1``). Chains that merely start alike (two socket
  reads: ``pollDesc.wait,pollDesc.waitRead,...``) do not match: their outer ends differ.

The similarity is a Jaccard index over goroutines: matched chains (paired one to one) over
all the distinct chains of both signatures. Labels are not compared.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

Chain = tuple[str, ...]

MIN_OVERLAP = 2
"""Functions two windows of one stack must share at their ends (fewer when a chain is
shorter): one shared function is too often a library's (``sync.(*Mutex).Lock``)."""


def chains_of(signature: str) -> frozenset[Chain]:
    """The stuck goroutines' function chains a signature names, without their wait
    states: ``label:s@a,b|c+d`` -> {(a, b), (c,), (d,)}. A signature without stacks
    (``other-hang:test-timeout``, ``no-hang:crash:panic``) names none; nor does an
    unreadable stack (``select@?``)."""
    _, _, body = signature.partition(":")
    if "@" not in body and "," not in body:
        return frozenset()
    chains = set()
    for role in body.split("|"):
        for stack in role.split("+"):
            _state, _, functions = stack.rpartition("@")
            chain = tuple(f for f in functions.split(",") if f and f != "?")
            if chain:
                chains.add(chain)
    return frozenset(chains)


def one_stack(a: Chain, b: Chain) -> bool:
    """Are ``a`` and ``b`` windows of one goroutine's stack (innermost first)?"""
    if _contains(a, b) or _contains(b, a):
        return True
    need = min(MIN_OVERLAP, len(a), len(b))
    for n in range(min(len(a), len(b)) - 1, need - 1, -1):
        if a[-n:] == b[:n] or b[-n:] == a[:n]:
            return True
    return False


def _contains(outer: Chain, inner: Chain) -> bool:
    size = len(inner)
    return any(outer[i : i + size] == inner for i in range(len(outer) - size + 1))


@dataclass(frozen=True)
class Similarity:
    score: float  # 0..1; 1.0 for equal signatures
    shared: list[tuple[Chain, Chain]]  # (ours, theirs) matched as one goroutine
    ours: int  # distinct chains of each signature
    theirs: int


def similarity(ours: str, theirs: str) -> Similarity:
    """Jaccard overlap of two signatures' stuck goroutines, states and labels aside."""
    left, right = chains_of(ours), chains_of(theirs)
    if ours == theirs:
        return Similarity(1.0, [(c, c) for c in sorted(left)], len(left), len(right))
    shared = _pairs(sorted(left), sorted(right))
    union = len(left) + len(right) - len(shared)
    score = len(shared) / union if union else 0.0
    return Similarity(score, shared, len(left), len(right))


def _pairs(left: Iterable[Chain], right: list[Chain]) -> list[tuple[Chain, Chain]]:
    """Chains paired one to one (each goroutine counts once), equal chains first, in a
    stable order. Greedy: signatures hold a handful of chains."""
    free = list(right)
    pairs: list[tuple[Chain, Chain]] = []
    rest = []
    for chain in left:
        if chain in free:
            free.remove(chain)
            pairs.append((chain, chain))
        else:
            rest.append(chain)
    for chain in rest:
        match = next((other for other in free if one_stack(chain, other)), None)
        if match is not None:
            free.remove(match)
            pairs.append((chain, match))
    return pairs
