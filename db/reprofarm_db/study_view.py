"""What a study's runs say: its decision, per cell and arm, recomputed from the runs each
time (the worker's step acts on it; the api shows it). Nothing here writes: a study's
state is a function of its runs, so a restart of any process loses nothing.

The counting rules (docs/statistics.md, "Studies"):
- counted runs are passed + hung + failed, as everywhere;
- verify: a hang counts for the bug when its label is the bug's (``label`` of the
  study, else the baseline's most common hang label); a hang with another label is
  shown and left out of its arm's runs; a hang not analysed yet (``pending``) is left
  out too, and while a candidate hang is pending the study cannot call it fixed;
- search: every hang counts (a cell reproduces *a* hang at that rate).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

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

VERIFY_SCREEN = rules.SearchRule(lo=0.005, hi=0.05)
"""How verify drops a cell where the baseline does not reproduce: the search's default
sequential decision, on the baseline's runs of that cell."""

MAX_TRACE_POINTS = 200


@dataclass(frozen=True)
class RunFact:
    """One run of a study, as the decision needs it (``finished`` orders the trace)."""

    cell: int
    arm: str | None
    status: str
    label: str | None
    agent_id: int | None
    duration_s: float
    started: bool  # leased at some point: it used the budget


@dataclass
class _Counts:
    runs: int = 0
    hangs: int = 0
    other: int = 0
    pending: int = 0
    open: int = 0
    per_agent: dict[int, list[int]] = field(default_factory=dict)  # agent -> [hangs, runs]

    def add(self, fact: RunFact, *, bug: str | None, verify: bool) -> None:
        if fact.status in OPEN_RUN_STATES:
            self.open += 1
            return
        if fact.status not in COUNTED_RUN_STATES:
            return
        hung = fact.status == RunState.HUNG
        if verify and hung:
            if fact.label is None or bug is None:
                self.pending += 1
                return
            if fact.label != bug:
                self.other += 1
                return
        self.runs += 1
        self.hangs += int(hung)
        if fact.agent_id is not None:
            slot = self.per_agent.setdefault(fact.agent_id, [0, 0])
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
        )
        for source in (self.per_agent, other.per_agent):
            for agent, (h, n) in source.items():
                slot = out.per_agent.setdefault(agent, [0, 0])
                slot[0] += h
                slot[1] += n
        return out


def bug_label(spec: VerifyCreate, facts: Iterable[RunFact]) -> str | None:
    """The label a candidate hang must carry to count as the bug: the study's, or the
    baseline's most common hang label (ties: the alphabetically first, so it is stable)."""
    if spec.label is not None:
        return spec.label
    seen = Counter(
        f.label
        for f in facts
        if f.arm == Arm.BASELINE and f.status == RunState.HUNG and f.label is not None
    )
    if not seen:
        return None
    return min(seen, key=lambda label: (-seen[label], label))


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


def evaluate(
    *,
    job_id: int,
    status: str,
    spec: VerifyCreate | SearchCreate,
    spec_json: dict[str, Any],
    cells: Sequence[dict[str, Any]],
    facts: Sequence[RunFact],
    trace: bool = True,
) -> Evaluation:
    """The decision so far. ``facts`` in the order the runs finished (open runs last)."""
    used = sum(1 for f in facts if f.started or f.status in OPEN_RUN_STATES)
    hours = sum(f.duration_s for f in facts) / 3600
    budget = spec.budget
    runs_left = None if budget.runs is None else max(0, budget.runs - used)
    hours_left = None if budget.run_hours is None else max(0.0, budget.run_hours - hours)
    if isinstance(spec, VerifyCreate):
        out = _evaluate_verify(spec, cells, facts, trace=trace)
    else:
        out = _evaluate_search(spec, cells, facts, trace=trace)
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
    return Evaluation(read, active, open_by_cell, runs_left, hours_left, order)


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
    spec: VerifyCreate, cells: Sequence[dict[str, Any]], facts: Sequence[RunFact], *, trace: bool
) -> _Result:
    bug = bug_label(spec, facts)
    counts: dict[tuple[int, str], _Counts] = defaultdict(_Counts)
    for fact in facts:
        counts[(fact.cell, fact.arm or Arm.BASELINE)].add(fact, bug=bug, verify=True)
    read = _empty_read(JobKind.VERIFY)
    read.label = bug
    active: list[int] = []
    by_hardware: dict[str, tuple[_Counts, _Counts]] = {}
    open_by_cell: dict[tuple[int, str | None], int] = {}
    for cell in cells:
        i = cell["index"]
        base, cand = counts[(i, Arm.BASELINE)], counts[(i, Arm.CANDIDATE)]
        open_by_cell[(i, Arm.BASELINE)] = base.open
        open_by_cell[(i, Arm.CANDIDATE)] = cand.open
        phi = base.phi()
        screen = rules.cell_decision(base.hangs, base.runs, VERIFY_SCREEN, phi=phi)
        dropped = screen is rules.CellDecision.DOES_NOT
        if not dropped:
            active.append(i)
            pair = by_hardware.get(cell["hardware"], (_Counts(), _Counts()))
            by_hardware[cell["hardware"]] = (pair[0].merged(base), pair[1].merged(cand))
        model = _cell_model(cell, base.merged(cand), "does-not" if dropped else screen.value)
        model.arms = {Arm.BASELINE.value: base.tally(), Arm.CANDIDATE.value: cand.tally()}
        model.phi = phi
        read.cells.append(model)
    total_base, total_cand = _Counts(), _Counts()
    for hardware, (base, cand) in sorted(by_hardware.items()):
        outcome = _verdict(spec, base, cand)
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
    # Every arm's runs, dropped cells included, for the arms' own totals.
    all_base, all_cand = _Counts(), _Counts()
    for (_, arm), c in counts.items():
        if arm == Arm.BASELINE:
            all_base = all_base.merged(c)
        else:
            all_cand = all_cand.merged(c)
    read.baseline, read.candidate = all_base.tally(), all_cand.tally()
    read.runs_counted = all_base.runs + all_cand.runs
    outcome = _verdict(spec, total_base, total_cand)
    read.verdict = outcome.verdict.value
    read.p_value, read.ratio_upper95 = outcome.p_value, outcome.ratio_upper95
    read.more_clean_runs = outcome.more_clean_runs
    if outcome.verdict is rules.VerifyVerdict.NOT_FIXED:
        read.decided = True
        read.reason = f"the candidate hung with the bug's label ({bug})"
    elif outcome.verdict is rules.VerifyVerdict.FIXED:
        read.decided = True
        read.reason = (
            f"{total_cand.runs} clean candidate runs exclude a rate of the baseline's / "
            f"{spec.margin:g} at 95% (p = {outcome.p_value:.3g})"
        )
    elif not active:
        read.decided = True
        read.reason = "the baseline does not reproduce on any cell: nothing to verify against"
    elif total_cand.pending:
        read.reason = f"{total_cand.pending} candidate hangs wait for their dumps' analysis"
    elif bug is None:
        read.reason = "waiting for a baseline hang (and its analysis) to know the bug's label"
    else:
        more = outcome.more_clean_runs
        read.reason = "deciding" + (
            f": {more} more clean candidate runs would decide" if more else ""
        )
    read.trace = _verify_trace(spec, cells, facts, bug) if trace else []
    return read, ([] if read.decided else active), open_by_cell, []


def _verdict(spec: VerifyCreate, base: _Counts, cand: _Counts) -> rules.VerifyOutcome:
    outcome = rules.verify_verdict(
        rules.ArmCounts(base.runs, base.hangs),
        rules.ArmCounts(cand.runs, cand.hangs),
        margin=spec.margin,
    )
    if outcome.verdict is rules.VerifyVerdict.FIXED and cand.pending:
        # A candidate hang not analysed yet may be the bug: no "fixed" before it is read.
        return rules.VerifyOutcome(
            rules.VerifyVerdict.UNDECIDED, outcome.p_value, outcome.ratio_upper95, 0
        )
    return outcome


def _verify_trace(
    spec: VerifyCreate, cells: Sequence[dict[str, Any]], facts: Sequence[RunFact], bug: str | None
) -> list[TracePoint]:
    """The 95% upper bound of the rate ratio after each finished run (at most
    ``MAX_TRACE_POINTS`` points), over every cell the baseline reproduces in by the end."""
    finished = [f for f in facts if f.status not in OPEN_RUN_STATES]
    step = max(1, len(finished) // MAX_TRACE_POINTS)
    base, cand = _Counts(), _Counts()
    points = []
    for n, fact in enumerate(finished, 1):
        (base if (fact.arm or Arm.BASELINE) == Arm.BASELINE else cand).add(
            fact, bug=bug, verify=True
        )
        if n % step == 0 or n == len(finished):
            outcome = rules.verify_verdict(
                rules.ArmCounts(base.runs, base.hangs),
                rules.ArmCounts(cand.runs, cand.hangs),
                margin=spec.margin,
            )
            points.append(TracePoint(runs=n, value=outcome.ratio_upper95))
    return points


def search_rule(spec: SearchCreate) -> rules.SearchRule:
    return rules.SearchRule(
        lo=spec.lo,
        hi=spec.hi,
        alpha=spec.alpha,
        beta=spec.beta,
        max_runs_per_cell=spec.max_runs_per_cell,
    )


def _evaluate_search(
    spec: SearchCreate, cells: Sequence[dict[str, Any]], facts: Sequence[RunFact], *, trace: bool
) -> _Result:
    rule = search_rule(spec)
    counts: dict[int, _Counts] = defaultdict(_Counts)
    for fact in facts:
        counts[fact.cell].add(fact, bug=None, verify=False)
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
    read.runs_uniform = len(cells) * rules.uniform_runs_per_cell(rule)[0]
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
    """Cells decided after each finished run (at most ``MAX_TRACE_POINTS`` points)."""
    finished = [f for f in facts if f.status not in OPEN_RUN_STATES]
    step = max(1, len(finished) // MAX_TRACE_POINTS)
    counts: dict[int, _Counts] = defaultdict(_Counts)
    decided: set[int] = set()
    points = []
    for n, fact in enumerate(finished, 1):
        c = counts[fact.cell]
        c.add(fact, bug=None, verify=False)
        if fact.cell not in decided:
            decision = rules.cell_decision(c.hangs, c.runs, rule, phi=c.phi())
            if decision is not rules.CellDecision.UNDECIDED:
                decided.add(fact.cell)
        if n % step == 0 or n == len(finished):
            points.append(TracePoint(runs=n, value=float(len(decided))))
    return points
