"""What a study's runs say: its decision, per cell and arm, recomputed from the runs each
time (the worker's step acts on it; the api shows it). Nothing here writes: a study's
state is a function of its runs, so a restart of any process loses nothing.

The counting rules (docs/statistics.md, "Studies"):
- counted runs are passed + hung + failed, as everywhere, in the order they were made
  (a run counts once every run made before it in its cell and arm has ended);
- verify: a hang counts for the bug when it shows the bug (``Bug``: the study's label,
  else the first analysed baseline hang's, or one of its signatures); a hang with
  another label is shown and left out of its arm's runs; a hang not analysed yet
  (``pending``) holds the runs after it, and while a candidate hang is pending the
  study cannot call it fixed;
- search: every hang counts (a cell reproduces *a* hang at that rate).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from reprofarm_protocol.analysis import Label
from reprofarm_protocol.jobs import COUNTED_RUN_STATES, OPEN_RUN_STATES, RunState
from reprofarm_protocol.rates import wilson_interval
from reprofarm_protocol.studies import (
    Arm,
    HardwareVerdict,
    JobKind,
    SearchCreate,
    StudyCell,
    StudyRead,
    Tally,
    TracePoint,
    VerifyCreate,
)

from reprofarm_db import study_rules as rules

MAX_TRACE_POINTS = 200


PENDING_PATIENCE = timedelta(minutes=15)
"""A hang still not analysed this long after it ended (no dump came, the analysis failed
to record) counts as another hang, so a study never waits on it forever."""


@dataclass(frozen=True)
class RunFact:
    """One run of a study, as the decision needs it."""

    run_id: int
    cell: int
    arm: str | None
    status: str
    label: str | None
    signature_key: str | None
    agent_id: int | None
    duration_s: float
    started: bool  # leased at some point: it used the budget
    finished_at: datetime | None
    discounted: bool = False  # a harness problem (reprofarm_db.health): never counted


@dataclass(frozen=True)
class Bug:
    """What a candidate hang must show to be the bug: the label, or the signature of one
    of the baseline's hangs with that label (``other-hang`` alone says too little: with it,
    only a signature match counts)."""

    label: str
    keys: frozenset[str]

    def shown_by(self, fact: RunFact) -> bool:
        if fact.signature_key is not None and fact.signature_key in self.keys:
            return True
        return fact.label == self.label and self.label != Label.OTHER_HANG


# How one finished run counts: see _classify.
_CLEAN, _HANG, _OTHER, _PENDING = "clean", "hang", "other", "pending"


def _classify(fact: RunFact, *, bug: Bug | None, verify: bool, now: datetime) -> str | None:
    """``clean``, ``hang`` (one that counts), ``other`` (a hang shown, not counted),
    ``pending`` (a hang whose label is not known yet), or None: not a counted run."""
    if fact.status not in COUNTED_RUN_STATES or fact.discounted:
        return None
    if fact.status != RunState.HUNG:
        return _CLEAN
    if not verify:
        return _HANG
    if fact.label is None:
        ended = fact.finished_at
        return _OTHER if ended is not None and now - ended > PENDING_PATIENCE else _PENDING
    if bug is None:
        return _PENDING  # the baseline has not shown which label is the bug's yet
    return _HANG if bug.shown_by(fact) else _OTHER


@dataclass
class _Counts:
    """One cell's (and arm's) counts, in the order its runs were created: a run is counted
    only once every run created before it in the same cell and arm has ended. A hang
    keeps its run going for its dumps while clean runs end fast, so counting runs as they
    end would count the clean ones first and make the rate look lower than it is
    (simulated: `fixed` at the margin in 12% of studies instead of 5%)."""

    runs: int = 0
    hangs: int = 0
    other: int = 0
    pending: int = 0
    open: int = 0
    held: int = 0  # ended, but after a run still open or pending: counted later
    any_hang: bool = False  # a hang of any kind ended here (counted or not yet)
    hangs_seen: int = 0  # hangs that count, held ones included
    per_agent: dict[int, list[int]] = field(default_factory=dict)  # agent -> [hangs, runs]

    def walk(
        self, facts: Iterable[RunFact], *, bug: Bug | None, verify: bool, now: datetime
    ) -> None:
        blocked = False
        for fact in sorted(facts, key=lambda f: f.run_id):
            if fact.status in OPEN_RUN_STATES:
                self.open += 1
                blocked = True
                continue
            kind = _classify(fact, bug=bug, verify=verify, now=now)
            if kind is None:
                continue
            if kind != _CLEAN:
                self.any_hang = True
            if kind == _HANG:
                self.hangs_seen += 1
            if kind == _PENDING:
                self.pending += 1
                blocked = True
            elif kind == _OTHER:
                self.other += 1
            elif blocked:
                self.held += 1
            else:
                self.count(hung=kind == _HANG, agent_id=fact.agent_id)

    def count(self, *, hung: bool, agent_id: int | None) -> None:
        self.runs += 1
        self.hangs += int(hung)
        if agent_id is not None:
            slot = self.per_agent.setdefault(agent_id, [0, 0])
            slot[0] += int(hung)
            slot[1] += 1

    def tally(self) -> Tally:
        low, high = interval(self.hangs, self.runs)
        return Tally(
            runs=self.runs,
            hangs=self.hangs,
            other_hangs=self.other,
            pending=self.pending,
            open=self.open,
            held=self.held,
            ci95_low=low,
            ci95_high=high,
        )

    def phi(self) -> float:
        return rules.overdispersion([(h, n) for h, n in self.per_agent.values()])

    def merged(self, other: _Counts) -> _Counts:
        out = _Counts(
            self.runs + other.runs,
            self.hangs + other.hangs,
            self.other + other.other,
            self.pending + other.pending,
            self.open + other.open,
            self.held + other.held,
            self.any_hang or other.any_hang,
            self.hangs_seen + other.hangs_seen,
        )
        for source in (self.per_agent, other.per_agent):
            for agent, (h, n) in source.items():
                slot = out.per_agent.setdefault(agent, [0, 0])
                slot[0] += h
                slot[1] += n
        return out


def bug_of(spec: VerifyCreate, facts: Sequence[RunFact]) -> Bug | None:
    """The bug a candidate hang must show: the study's label, else the label of the first
    analysed baseline hang (by when it ended) that names a known hang, else of the first
    analysed one; with the signatures of the baseline's hangs that carry it. Fixed by
    the first hangs, so later ones cannot move it."""
    analysed = [f for f in facts if f.arm == Arm.BASELINE and f.status == RunState.HUNG and f.label]
    label = spec.label
    if label is None:
        known = [f.label for f in analysed if f.label not in (Label.OTHER_HANG, Label.NO_HANG)]
        first = known or [f.label for f in analysed]
        if not first or first[0] is None:
            return None
        label = first[0]
    keys = frozenset(f.signature_key for f in analysed if f.label == label and f.signature_key)
    return Bug(label=label, keys=keys)


def as_decided(facts: Sequence[RunFact], decided_at: datetime) -> tuple[list[RunFact], int]:
    """The runs as they stood when the study decided: those that had ended by then, and
    how many ended later (they were out, and were told to stop). A hang found while
    stopping is evidence for the dumps, not a vote that rewrites the answer."""
    kept = [f for f in facts if f.finished_at is not None and f.finished_at <= decided_at]
    return kept, len(facts) - len(kept)


def interval(hangs: int, runs: int) -> tuple[float, float]:
    """Wilson's 95% interval; with no run yet, everything is possible."""
    return wilson_interval(hangs, runs) if runs else (0.0, 1.0)


def _cell_model(cell: dict[str, Any], counts: _Counts, decision: str) -> StudyCell:
    low, high = interval(counts.hangs, counts.runs)
    return StudyCell(
        index=cell["index"],
        hardware=cell["hardware"],
        hardware_fingerprint=cell["fingerprint"],
        target=cell["target"],
        go_version=cell["go_version"],
        cpus=cell["cpus"],
        affinity=cell["affinity"],
        control_chance=cell["control_chance"],
        decision=decision,
        runs=counts.runs,
        hangs=counts.hangs,
        open=counts.open,
        ci95_low=low,
        ci95_high=high,
    )


@dataclass
class Evaluation:
    """A study's state: the public view, and what the worker's step needs to act."""

    read: StudyRead
    active_cells: list[int]  # cells that still take runs (per arm, in verify)
    open_by_cell: dict[tuple[int, str | None], int]
    budget_left: int | None  # runs; None: no run budget
    hours_left: float | None
    pick_order: list[int] = field(default_factory=list)  # search: cells for the next runs
    runs_made: int = 0  # every run of the study, whatever its state (the job's run limit)


def evaluate(
    *,
    job_id: int,
    status: str,
    spec: VerifyCreate | SearchCreate,
    spec_json: dict[str, Any],
    cells: Sequence[dict[str, Any]],
    facts: Sequence[RunFact],
    now: datetime,
    trace: bool = True,
) -> Evaluation:
    """The decision so far, at ``now``. ``facts`` in the order the runs finished (open
    runs last)."""
    used = sum(1 for f in facts if f.started or f.status in OPEN_RUN_STATES)
    hours = sum(f.duration_s for f in facts) / 3600
    budget = spec.budget
    runs_left = None if budget.runs is None else max(0, budget.runs - used)
    hours_left = None if budget.run_hours is None else max(0.0, budget.run_hours - hours)
    if isinstance(spec, VerifyCreate):
        out = _evaluate_verify(spec, cells, facts, trace=trace, now=now)
    else:
        out = _evaluate_search(spec, cells, facts, trace=trace, now=now)
    computed, active, open_by_cell, order = out
    read = computed.model_copy(
        update={
            "job_id": job_id,
            "status": status,  # the job's, as read: a study's own state is `decided`
            "spec": spec_json,
            "runs_used": used,
            "run_hours_used": round(hours, 4),
            "budget_runs": budget.runs,
            "budget_run_hours": budget.run_hours,
        }
    )
    out_of_budget = runs_left == 0 or hours_left == 0
    if not read.decided and out_of_budget:
        still_open = sum(open_by_cell.values())
        if still_open == 0:
            read.decided = True
            read.reason = "the budget ran out before the study could decide"
        else:
            read.reason = f"the budget is spent; waiting for {still_open} runs still out"
    return Evaluation(read, active, open_by_cell, runs_left, hours_left, order, len(facts))


def _empty_read(kind: JobKind) -> StudyRead:
    return StudyRead(
        job_id=0,
        kind=kind,
        status="",
        decided=False,
        reason="",
        spec={},
        runs_used=0,
        runs_counted=0,
        budget_runs=None,
        run_hours_used=0.0,
        budget_run_hours=None,
        cells=[],
        trace=[],
    )


_Result = tuple[StudyRead, list[int], dict[tuple[int, str | None], int], list[int]]


def _evaluate_verify(
    spec: VerifyCreate,
    cells: Sequence[dict[str, Any]],
    facts: Sequence[RunFact],
    *,
    trace: bool,
    now: datetime,
) -> _Result:
    bug = bug_of(spec, facts)
    groups: dict[tuple[int, str], list[RunFact]] = defaultdict(list)
    for fact in facts:
        groups[(fact.cell, fact.arm or Arm.BASELINE)].append(fact)
    counts: dict[tuple[int, str], _Counts] = defaultdict(_Counts)
    for key, members in groups.items():
        counts[key].walk(members, bug=bug, verify=True, now=now)
    screen = rules.SearchRule(lo=spec.screen_lo, hi=spec.screen_hi)
    read = _empty_read(JobKind.VERIFY)
    read.label = bug.label if bug else None
    active: list[int] = []
    by_hardware: dict[str, tuple[_Counts, _Counts]] = {}
    open_by_cell: dict[tuple[int, str | None], int] = {}
    all_base, all_cand = _Counts(), _Counts()
    for cell in cells:
        i = cell["index"]
        base, cand = counts[(i, Arm.BASELINE)], counts[(i, Arm.CANDIDATE)]
        all_base, all_cand = all_base.merged(base), all_cand.merged(cand)
        open_by_cell[(i, Arm.BASELINE)] = base.open
        open_by_cell[(i, Arm.CANDIDATE)] = cand.open
        phi = base.phi()
        decision = rules.cell_decision(base.hangs, base.runs, screen, phi=phi)
        # A cell is dropped only while its baseline never hung: one hang (even one not
        # analysed yet) keeps it, and a drop is final (the cell gets no more runs).
        dropped = decision is rules.CellDecision.DOES_NOT and not base.any_hang
        if not dropped:
            active.append(i)
            pair = by_hardware.get(cell["hardware"], (_Counts(), _Counts()))
            by_hardware[cell["hardware"]] = (pair[0].merged(base), pair[1].merged(cand))
        state = "does-not" if dropped else "reproduces" if base.any_hang else "undecided"
        model = _cell_model(cell, base.merged(cand), state)
        model.arms = {Arm.BASELINE.value: base.tally(), Arm.CANDIDATE.value: cand.tally()}
        model.phi = phi
        read.cells.append(model)
    total_base, total_cand = _Counts(), _Counts()
    for hardware, (base, cand) in sorted(by_hardware.items()):
        outcome = _verdict(spec, base, cand, bug_hangs=cand.hangs_seen)
        read.by_hardware = (read.by_hardware or []) + [
            HardwareVerdict(
                hardware=hardware,
                verdict=outcome.verdict.value,
                baseline=base.tally(),
                candidate=cand.tally(),
                p_value=outcome.p_value,
                ratio_upper95=outcome.ratio_upper95,
            )
        ]
        total_base, total_cand = total_base.merged(base), total_cand.merged(cand)
    read.baseline, read.candidate = all_base.tally(), all_cand.tally()
    read.runs_counted = all_base.runs + all_cand.runs
    # One candidate hang showing the bug, in any cell (a dropped one too), is proof.
    outcome = _verdict(spec, total_base, total_cand, bug_hangs=all_cand.hangs_seen)
    if all_cand.pending and outcome.verdict is rules.VerifyVerdict.FIXED:
        outcome = rules.VerifyOutcome(
            rules.VerifyVerdict.UNDECIDED, outcome.p_value, outcome.ratio_upper95, None
        )
    read.verdict = outcome.verdict.value
    read.p_value, read.ratio_upper95 = outcome.p_value, outcome.ratio_upper95
    read.more_clean_runs = None if all_cand.pending else outcome.more_clean_runs
    if outcome.verdict is rules.VerifyVerdict.NOT_FIXED:
        read.decided = True
        assert bug is not None
        read.reason = f"the candidate hung with the bug's label ({bug.label})"
    elif outcome.verdict is rules.VerifyVerdict.FIXED:
        read.decided = True
        read.reason = (
            f"{total_cand.runs} clean candidate runs exclude a rate of the baseline's / "
            f"{spec.margin:g} at 95% (p = {outcome.p_value:.3g})"
        )
    elif not active:
        read.decided = True
        read.reason = "the baseline does not reproduce on any cell: nothing to verify against"
    elif all_cand.pending:
        read.reason = f"{all_cand.pending} candidate hangs wait for their dumps' analysis"
    elif bug is None:
        read.reason = "waiting for a baseline hang (and its analysis) to know the bug's label"
    else:
        more = outcome.more_clean_runs
        read.reason = "deciding" + (
            f": {more} more clean candidate runs would decide" if more else ""
        )
    read.trace = _verify_trace(spec, set(active), facts, bug, now) if trace else []
    return read, ([] if read.decided else active), open_by_cell, []


def _verdict(
    spec: VerifyCreate, base: _Counts, cand: _Counts, *, bug_hangs: int
) -> rules.VerifyOutcome:
    if bug_hangs:
        return rules.VerifyOutcome(rules.VerifyVerdict.NOT_FIXED, None, None, 0)
    return rules.verify_verdict(
        rules.ArmCounts(base.runs, base.hangs),
        rules.ArmCounts(cand.runs, cand.hangs),
        margin=spec.margin,
    )


def _verify_trace(
    spec: VerifyCreate,
    kept: set[int],
    facts: Sequence[RunFact],
    bug: Bug | None,
    now: datetime,
) -> list[TracePoint]:
    """For the plot: the 95% upper bound of the rate ratio after each finished run (at most
    ``MAX_TRACE_POINTS`` points), over the cells kept, counting runs as they ended (the
    verdict's own counts wait for earlier runs: its last bound is ``ratio_upper95``)."""
    finished = [f for f in facts if f.status not in OPEN_RUN_STATES and f.cell in kept]
    step = max(1, len(finished) // MAX_TRACE_POINTS)
    base, cand = _Counts(), _Counts()
    points = []
    for n, fact in enumerate(finished, 1):
        kind = _classify(fact, bug=bug, verify=True, now=now)
        if kind in (_CLEAN, _HANG):
            arm = base if (fact.arm or Arm.BASELINE) == Arm.BASELINE else cand
            arm.count(hung=kind == _HANG, agent_id=None)
        if n % step == 0 or n == len(finished):
            outcome = rules.verify_verdict(
                rules.ArmCounts(base.runs, base.hangs),
                rules.ArmCounts(cand.runs, cand.hangs),
                margin=spec.margin,
            )
            points.append(TracePoint(runs=n, value=outcome.ratio_upper95))
    return points


_uniform_runs = functools.lru_cache(maxsize=64)(rules.uniform_runs_per_cell)
"""The fixed-n design of a rule, once per process: it walks every n up to its answer."""


def search_rule(spec: SearchCreate) -> rules.SearchRule:
    return rules.SearchRule(
        lo=spec.lo,
        hi=spec.hi,
        alpha=spec.alpha,
        beta=spec.beta,
        max_runs_per_cell=spec.max_runs_per_cell,
    )


def _evaluate_search(
    spec: SearchCreate,
    cells: Sequence[dict[str, Any]],
    facts: Sequence[RunFact],
    *,
    trace: bool,
    now: datetime,
) -> _Result:
    rule = search_rule(spec)
    groups: dict[int, list[RunFact]] = defaultdict(list)
    for fact in facts:
        groups[fact.cell].append(fact)
    counts: dict[int, _Counts] = defaultdict(_Counts)
    for cell_index, members in groups.items():
        counts[cell_index].walk(members, bug=None, verify=False, now=now)
    read = _empty_read(JobKind.SEARCH)
    undecided: list[int] = []
    open_by_cell: dict[tuple[int, str | None], int] = {}
    for cell in cells:
        i = cell["index"]
        c = counts[i]
        open_by_cell[(i, None)] = c.open
        phi = c.phi()
        decision = rules.cell_decision(c.hangs, c.runs, rule, phi=phi)
        model = _cell_model(cell, c, decision.value)
        model.llr = rules.log_likelihood_ratio(c.hangs, c.runs, rule) / phi
        model.phi = phi
        read.cells.append(model)
        if decision is rules.CellDecision.UNDECIDED and c.runs < rule.max_runs_per_cell:
            undecided.append(i)
        read.runs_counted += c.runs
    read.runs_uniform = len(cells) * _uniform_runs(rule)[0]
    decided = sum(1 for m in read.cells if m.decision != rules.CellDecision.UNDECIDED)
    if not undecided:
        read.decided = True
        left = len(cells) - decided
        read.reason = f"every cell decided ({decided} of {len(cells)})" + (
            f"; {left} stayed undecided at {rule.max_runs_per_cell} runs" if left else ""
        )
    else:
        read.reason = f"{decided} of {len(cells)} cells decided"
    read.trace = _search_trace(rule, cells, facts) if trace else []
    return read, undecided, open_by_cell, undecided


def _search_trace(
    rule: rules.SearchRule, cells: Sequence[dict[str, Any]], facts: Sequence[RunFact]
) -> list[TracePoint]:
    """For the plot: cells decided after each finished run (at most ``MAX_TRACE_POINTS``
    points), counting runs as they ended."""
    finished = [f for f in facts if f.status not in OPEN_RUN_STATES]
    step = max(1, len(finished) // MAX_TRACE_POINTS)
    counts: dict[int, _Counts] = defaultdict(_Counts)
    decided: set[int] = set()
    points = []
    for n, fact in enumerate(finished, 1):
        c = counts[fact.cell]
        if fact.status in COUNTED_RUN_STATES and not fact.discounted:
            c.count(hung=fact.status == RunState.HUNG, agent_id=fact.agent_id)
        if fact.cell not in decided:
            decision = rules.cell_decision(c.hangs, c.runs, rule, phi=c.phi())
            if decision is not rules.CellDecision.UNDECIDED:
                decided.add(fact.cell)
        if n % step == 0 or n == len(finished):
            points.append(TracePoint(runs=n, value=float(len(decided))))
    return points
