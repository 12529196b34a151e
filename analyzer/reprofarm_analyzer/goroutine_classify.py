"""Applying the rules of ``goroutine_rules`` to one parsed dump.

Order of work, each step cheap because it runs on groups of identical stacks, not on
single goroutines (10,000 workers stuck at one line are one group):

1. read why the dump was written (``dump_context``);
2. set aside ignored goroutines and those not blocked;
3. keep as *stuck* the blocked rest, all of them when the dump says "hang" or says nothing,
   only those waiting a minute or more in an on-demand dump, none in a crash;
4. the first rule whose roles distinct stuck goroutines can fill gives label, signature and
   evidence; a rule of several roles that only some stuck goroutines fill says so in the
   evidence (the verdict then comes from a later rule, never from half a pattern);
5. the confidence: how complete the goroutines the label rests on are (``_confidence``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reprofarm_protocol.analysis import Analysis, Confidence, DumpKind, Evidence, StuckGroup

from reprofarm_analyzer.dump_context import DumpContext, Trigger, read_context
from reprofarm_analyzer.goroutine_model import GoroutineDump
from reprofarm_analyzer.goroutine_rules import (
    IGNORED,
    NOT_BLOCKED,
    RULES,
    RULES_VERSION,
    Ignore,
    Role,
    Rule,
)
from reprofarm_analyzer.stacks import StackGroup, group_goroutines, meaningful

SIGNATURE_FRAMES = 3
"""Function names per stuck goroutine in a signature, from the role's anchor outwards."""

SIGNATURE_STACKS = 4
"""Distinct stacks per role in a signature (sorted, so the choice is stable)."""

MAX_IDS = 200
"""Goroutine ids listed per stuck group or evidence item; ``count`` keeps the total."""

_CANDIDATES = 64


@dataclass(slots=True)
class _Match:
    """A stuck group filling a role, and where its anchor frame sits."""

    group: StackGroup
    anchor: int


def classify_dump(dump: GoroutineDump) -> Analysis:
    """Label, signature, evidence and stuck groups of one dump. Never raises."""
    context = read_context(dump)
    groups = group_goroutines(dump.goroutines)
    ignored: dict[str, int] = {}
    stuck: list[StackGroup] = []
    for group in groups:
        aside = _ignore_rule(group)
        if aside is not None:
            ignored[aside.name] = ignored.get(aside.name, 0) + len(group.members)
            continue
        kept = _stuck_members(group, context)
        if kept is not None:
            stuck.append(kept)
    every_function = {f for group in groups for f in group.functions}
    evidence = [_context_evidence(context)]
    if ignored:
        evidence.append(_ignored_evidence(ignored))
    for rule in RULES:
        matches = _apply(rule, stuck, context, every_function)
        if matches is None:
            evidence.extend(_half_pattern(rule, stuck, context))
            continue
        evidence.extend(_role_evidence(rule, matches))
        confidence, why = _confidence(rule, matches, context, dump)
        evidence.append(Evidence(rule="confidence", detail=f"{confidence.value}: {why}"))
        return Analysis(
            kind=DumpKind.GOROUTINES,
            label=rule.label,
            signature=_signature(rule, matches, context),
            confidence=confidence,
            rules_version=RULES_VERSION,
            evidence=evidence,
            problems=list(dump.problems),
            stuck=[_wire_group(g) for g in _ordered(stuck)],
            goroutines=len(dump.goroutines),
        )
    raise AssertionError("the last rule matches every dump")  # pragma: no cover


def _ignore_rule(group: StackGroup) -> Ignore | None:
    tops = meaningful(group.functions)
    for rule in IGNORED:
        if rule.states and group.state not in rule.states:
            continue
        if rule.functions and rule.functions.isdisjoint(group.functions):
            continue
        if rule.tops and not any(tuple(tops[: len(top)]) == top for top in rule.tops):
            continue
        if rule.states or rule.functions or rule.tops:
            return rule
    return None


def _stuck_members(group: StackGroup, context: DumpContext) -> StackGroup | None:
    if group.state in NOT_BLOCKED or context.trigger is Trigger.CRASH:
        return None
    members = group.members
    if context.trigger is Trigger.REQUEST:
        # An on-demand dump of a live run catches every goroutine mid-wait; only a wait
        # Go has timed at a minute or more says stuck.
        members = [g for g in members if (g.wait_minutes or 0) >= 1]
    if not members:
        return None
    return StackGroup(group.state, group.functions, list(members))


def _apply(
    rule: Rule, stuck: list[StackGroup], context: DumpContext, every_function: set[str]
) -> list[list[_Match]] | None:
    if rule.triggers and context.trigger not in rule.triggers:
        return None
    if not rule.absent.isdisjoint(every_function):
        return None
    matches = [[m for g in stuck if (m := _fill(role, g)) is not None] for role in rule.roles]
    if any(not found for found in matches):
        return None
    candidates = [[g.id for m in found for g in m.group.members][:_CANDIDATES] for found in matches]
    if not _distinct(candidates, set()):
        return None
    return matches


def _fill(role: Role, group: StackGroup) -> _Match | None:
    if role.states and group.state not in role.states:
        return None
    if not role.anchors:
        return _Match(group, -1)
    functions = group.functions
    # The outermost anchor: syscall.readFile sits under syscall.ReadFile, and
    # internal/sync.(*Mutex).Lock under sync.(*Mutex).Lock; starting from the public name
    # keeps the signature the same across Go releases that print one or both.
    hits = [i for i, f in enumerate(functions[: role.depth]) if f in role.anchors]
    if not hits:
        return None
    index = hits[-1]
    if role.under and role.under.isdisjoint(functions[index + 1 :]):
        return None
    return _Match(group, index)


def _distinct(candidates: Sequence[list[int]], used: set[int]) -> bool:
    """Can each role be filled by a goroutine no other role uses?"""
    if not candidates:
        return True
    for goroutine in candidates[0]:
        if goroutine in used:
            continue
        used.add(goroutine)
        if _distinct(candidates[1:], used):
            return True
        used.discard(goroutine)
    return False


def _chain(match: _Match) -> str:
    group = match.group
    if match.anchor < 0:
        frames = meaningful(group.functions)[:SIGNATURE_FRAMES]
        return f"{group.state}@{','.join(frames) or '?'}"
    frames = meaningful(group.functions[match.anchor :])[:SIGNATURE_FRAMES]
    return ",".join(frames)


def _signature(rule: Rule, matches: list[list[_Match]], context: DumpContext) -> str:
    """``label:role1|role2``: function names only, so ids, addresses and minutes never
    change it. With no roles the dump's trigger stands in: ``no-hang:crash``."""
    if not matches:
        crash = f":{context.crash}" if context.crash else ""
        return f"{rule.label.value}:{context.trigger.value}{crash}"
    parts = []
    for found in matches:
        chains = sorted({_chain(m) for m in found})[:SIGNATURE_STACKS]
        parts.append("+".join(chains))
    return f"{rule.label.value}:{'|'.join(parts)}"


def _half_pattern(rule: Rule, stuck: list[StackGroup], context: DumpContext) -> list[Evidence]:
    """A rule of several roles that some stuck goroutines fill and none fill the rest: why
    it did not fire (a reader cut off, a canceller whose reader is not in the text). Says
    which frames were found, in which goroutines, and which frames are missing, with the
    nearest miss: a goroutine that has the frame but not the state (its header was cut)."""
    if len(rule.roles) < 2 or (rule.triggers and context.trigger not in rule.triggers):
        return []
    filled = [[m for g in stuck if (m := _fill(role, g)) is not None] for role in rule.roles]
    if all(filled) or not any(filled):
        return []
    present: list[str] = []
    missing: list[str] = []
    for role, found in zip(rule.roles, filled, strict=True):
        if found:
            present.append(_found_role(role, found))
        else:
            missing.append(_missing_role(role, stuck))
    return [
        Evidence(
            rule=rule.name,
            detail=f"not applied, half of the pattern: found {'; '.join(present)};"
            f" missing {'; '.join(missing)}",
            goroutines=sorted(g.id for found in filled for m in found for g in m.group.members)[
                :MAX_IDS
            ],
        )
    ]


def _found_role(role: Role, found: list[_Match]) -> str:
    """``canceller: syscall.CancelIoEx in goroutine 21``."""
    where = []
    for match in found[:3]:
        frame = match.group.functions[match.anchor] if match.anchor >= 0 else match.group.state
        where.append(f"{frame} in {_goroutines(match.group)}")
    more = f" and {len(found) - 3} more stacks" if len(found) > 3 else ""
    return f"{role.name}: {', '.join(where)}{more}"


def _missing_role(role: Role, stuck: list[StackGroup]) -> str:
    """``sync-io: one of syscall.ReadFile, ... among a stuck goroutine's innermost 8 frames,
    in state syscall (goroutine -1 has syscall.ReadFile, but in state unknown)``."""
    needs = f"one of {', '.join(sorted(role.anchors))} among a stuck goroutine's innermost"
    needs += f" {role.depth} frames"
    if role.under:
        needs += f", called from {' or '.join(sorted(role.under))}"
    if role.states:
        needs += f", in state {' or '.join(sorted(role.states))}"
    near = []
    for group in stuck:
        hits = [f for f in group.functions[: role.depth] if f in role.anchors]
        if not hits:
            continue
        if role.states and group.state not in role.states:
            why = f"in state {group.state}"
        else:
            why = f"not called from {' or '.join(sorted(role.under))}"
        near.append(f"{_goroutines(group)} has {hits[-1]}, but {why}")
    found = "; ".join(near[:3]) if near else "no stuck goroutine has any of these frames"
    return f"{role.name}: {needs} ({found})"


def _goroutines(group: StackGroup) -> str:
    """``goroutine 21`` or ``goroutines 3, 4, 5, 6, 7 (of 40)``."""
    ids = ", ".join(str(g.id) for g in group.members[:5])
    count = len(group.members)
    if count == 1:
        return f"goroutine {ids}"
    return f"goroutines {ids}" + (f" (of {count})" if count > 5 else "")


def _confidence(
    rule: Rule, matches: list[list[_Match]], context: DumpContext, dump: GoroutineDump
) -> tuple[Confidence, str]:
    """``weak`` when the text has no goroutine header at all or a role rests on single
    frames; ``partial`` when the text was repaired or cut (a deciding goroutine without
    its header, cut or elided) or does not say why it was written; else ``strong``."""
    deciding = [g for found in matches for m in found for g in m.group.members]
    if dump.goroutines and all(g.headerless for g in dump.goroutines):
        return Confidence.WEAK, "no goroutine header in the text: ids and states unknown"
    for found in matches:
        if all(len(g.frames) <= 1 for m in found for g in m.group.members):
            return Confidence.WEAK, "the label comes from single frames"
    if dump.problems:
        return Confidence.PARTIAL, f"the text was repaired or cut ({len(dump.problems)} problems)"
    if any(g.truncated or g.elided or g.headerless for g in deciding):
        return Confidence.PARTIAL, "goroutines the label rests on are cut or elided"
    pattern = bool(rule.roles and rule.roles[0].anchors)
    if context.trigger is Trigger.UNKNOWN and not pattern:
        return Confidence.PARTIAL, "the text does not say why it was written"
    return Confidence.STRONG, "the goroutines the label rests on are complete tracebacks"


def _context_evidence(context: DumpContext) -> Evidence:
    shown = f": {context.line[:160]}" if context.line else ""
    return Evidence(rule="trigger", detail=f"dump written for: {context.trigger.value}{shown}")


def _ignored_evidence(ignored: dict[str, int]) -> Evidence:
    counts = ", ".join(f"{name} {count}" for name, count in ignored.items())
    return Evidence(rule="ignored", detail=f"goroutines set aside: {counts}")


def _role_evidence(rule: Rule, matches: list[list[_Match]]) -> list[Evidence]:
    if not matches:
        return [Evidence(rule=rule.name, detail=rule.why)]
    evidence = []
    for role, found in zip(rule.roles, matches, strict=True):
        ids = sorted(g.id for m in found for g in m.group.members)
        first = found[0]
        start = max(first.anchor, 0)
        evidence.append(
            Evidence(
                rule=rule.name,
                detail=f"{role.name} ({len(ids)} goroutines): {role.why}",
                goroutines=ids[:MAX_IDS],
                frames=meaningful(first.group.functions[start:])[: SIGNATURE_FRAMES + 2],
            )
        )
    return evidence


def _ordered(groups: list[StackGroup]) -> list[StackGroup]:
    return sorted(groups, key=lambda g: (-len(g.members), g.state, g.functions))


def _wire_group(group: StackGroup) -> StuckGroup:
    """Frames without plumbing: a reader of the dashboard wants ``sync.(*Mutex).Lock <-
    main.lockLeftThenRight``, not four runtime frames that every blocked goroutine shares.
    A stack that is all plumbing keeps its frames."""
    return StuckGroup(
        count=len(group.members),
        state=group.state,
        goroutines=group.ids[:MAX_IDS],
        frames=meaningful(group.functions) or list(group.functions),
    )
