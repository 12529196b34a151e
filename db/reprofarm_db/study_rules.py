"""The statistics of studies, from counts alone (no database): when a study may stop and
what it may say. The controller calls these after every run; the derivations, worked
numbers and measured figures are in docs/statistics.md ("Studies: verify and search").

verify ("is it fixed?"): a baseline and a candidate arm interleaved 1:1 on the same cells.
One hang of the candidate with the bug's label ends it ``not-fixed``; ``fixed`` needs zero
such hangs and the exact conditional binomial test to reject "the candidate hangs at least
1/margin as often as the baseline" at level alpha.

search ("where does it reproduce?"): per cell, Wald's sequential probability ratio test
between "rate <= lo" and "rate >= hi", its log-likelihood ratio divided by the cell's
overdispersion, truncated at a run budget; runs go to the undecided cells by Thompson
sampling.

Invalid arguments raise ``ValueError`` naming the argument (or field).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy.special import bdtr, betaincinv  # type: ignore[import-untyped]

# The level of the displayed upper bound on the rate ratio (one-sided), whatever the test's alpha.
RATIO_LEVEL = 0.95


class VerifyVerdict(StrEnum):
    FIXED = "fixed"
    NOT_FIXED = "not-fixed"
    UNDECIDED = "undecided"


class CellDecision(StrEnum):
    REPRODUCES = "reproduces"
    DOES_NOT = "does-not"
    UNDECIDED = "undecided"


@dataclass(frozen=True)
class ArmCounts:
    runs: int  # counted runs of the arm
    hangs: int  # hangs with the bug's label (other hangs are excluded from runs by the caller)

    def __post_init__(self) -> None:
        _check_counts(self.hangs, self.runs)


@dataclass(frozen=True)
class VerifyOutcome:
    verdict: VerifyVerdict
    p_value: float | None  # the conditional test's p (None when not computable: no baseline hang)
    ratio_upper95: float | None  # 95% upper bound of rate_c / rate_b (None: none or unbounded)
    more_clean_runs: int | None  # 0 when decided, None when the baseline has no hang


# ---------------------------------------------------------------------------------- verify


def verify_verdict(
    baseline: ArmCounts, candidate: ArmCounts, *, margin: float, alpha: float = 0.05
) -> VerifyOutcome:
    """The verdict of a verify study on its counts so far; safe to call after every run.

    Given K = x_b + x_c hangs in all, x_c ~ Binomial(K, pi) with
    pi = n_c r_c / (n_c r_c + n_b r_b), which depends on the rates only through their
    ratio, so the baseline's own uncertainty is in the test. At the boundary of
    H0: r_c >= r_b / margin, pi0 = n_c / (n_c + margin n_b), and p = P(X <= x_c | K, pi0).

    ``fixed`` is declared only with x_c = 0, and the first labelled hang of the candidate
    ends the study ``not-fixed`` (one hang with the bug's signature is proof, not a
    statistical call). So, for a given baseline, "fixed at some look" is the event "no
    hang in the first n* candidate runs", n* = ``clean_runs_needed``: a curtailed
    fixed-n test, and looking after every run does not inflate its error. The baseline
    grows as the study runs, which this argument does not cover; the simulation in
    db/tests/test_study_rules.py checks the whole procedure.
    """
    _check_level(margin=margin, alpha=alpha)
    p = _p_value(baseline, candidate, margin)
    ratio = _ratio_upper(baseline, candidate)
    if candidate.hangs > 0:
        return VerifyOutcome(VerifyVerdict.NOT_FIXED, p, ratio, 0)
    if p is not None and p <= alpha:
        return VerifyOutcome(VerifyVerdict.FIXED, p, ratio, 0)
    needed = clean_runs_needed(baseline, margin=margin, alpha=alpha)
    more = None if needed is None else needed - candidate.runs
    return VerifyOutcome(VerifyVerdict.UNDECIDED, p, ratio, more)


def clean_runs_needed(baseline: ArmCounts, *, margin: float, alpha: float = 0.05) -> int | None:
    """The total of clean candidate runs that makes ``verify_verdict`` say ``fixed`` against
    this baseline: the smallest n_c with (margin n_b / (n_c + margin n_b))^x_b <= alpha,
    about margin n_b (alpha^(-1/x_b) - 1). None when the baseline has no hang: no number
    of clean candidate runs can show a rate lower than one never seen; the baseline must
    run more. The closed form is checked against the p-value ``verify_verdict`` uses, so
    the two never disagree by a rounding."""
    _check_level(margin=margin, alpha=alpha)
    if baseline.hangs == 0:
        return None
    n_b, x_b = baseline.runs, baseline.hangs
    n = max(0, math.ceil(margin * n_b * math.expm1(-math.log(alpha) / x_b)))
    while _clean_p(n, n_b, x_b, margin) > alpha:
        n += 1
    while n > 0 and _clean_p(n - 1, n_b, x_b, margin) <= alpha:
        n -= 1
    return n


def _clean_p(n_c: int, n_b: int, x_b: int, margin: float) -> float:
    """P(X <= 0 | K = x_b, pi0): the p-value with a clean candidate, (1 - pi0)^x_b."""
    return float((margin * n_b / (n_c + margin * n_b)) ** x_b)


def _p_value(baseline: ArmCounts, candidate: ArmCounts, margin: float) -> float | None:
    if baseline.hangs == 0:
        return None  # nothing to compare with (with candidate hangs it would be 1)
    if candidate.hangs == 0:
        return _clean_p(candidate.runs, baseline.runs, baseline.hangs, margin)
    pi0 = candidate.runs / (candidate.runs + margin * baseline.runs)
    return float(bdtr(candidate.hangs, baseline.hangs + candidate.hangs, pi0))


def _ratio_upper(baseline: ArmCounts, candidate: ArmCounts) -> float | None:
    """One-sided 95% Clopper-Pearson upper bound on pi, turned into one on r_c / r_b through
    r_c / r_b = pi n_b / ((1 - pi) n_c). With alpha = 0.05 it is the test's dual: the test
    rejects exactly when this bound is at most 1/margin."""
    k = baseline.hangs + candidate.hangs
    if k == 0 or candidate.runs == 0 or candidate.hangs == k:
        return None  # no information, or no finite bound
    pi_upper = float(betaincinv(candidate.hangs + 1, k - candidate.hangs, RATIO_LEVEL))
    if pi_upper >= 1.0:
        return None
    return pi_upper * baseline.runs / ((1.0 - pi_upper) * candidate.runs)


def _check_level(*, margin: float, alpha: float) -> None:
    if not (margin > 0 and math.isfinite(margin)):
        raise ValueError(f"margin must be a positive number, got {margin}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")


def _check_counts(hangs: int, runs: int) -> None:
    if runs < 0:
        raise ValueError(f"runs must not be negative, got {runs}")
    if not 0 <= hangs <= runs:
        raise ValueError(f"hangs must be between 0 and runs ({runs}), got {hangs}")


# ---------------------------------------------------------------------------------- search


@dataclass(frozen=True)
class SearchRule:
    """A cell ``reproduces`` when its rate is at least ``hi`` and ``does-not`` when at most
    ``lo``; between them either answer is acceptable (the indifference zone). ``alpha``
    bounds P(reproduces | rate <= lo), ``beta`` bounds P(does-not | rate >= hi).
    A cell still undecided after ``max_runs_per_cell`` runs stays ``undecided``."""

    lo: float = 0.005
    hi: float = 0.05
    alpha: float = 0.05
    beta: float = 0.05
    max_runs_per_cell: int = 600

    def __post_init__(self) -> None:
        if not 0 <= self.lo < 1:
            raise ValueError(f"lo must be in [0, 1), got {self.lo}")
        if not self.lo < self.hi <= 1:
            raise ValueError(f"hi must be in (lo, 1] = ({self.lo}, 1], got {self.hi}")
        if not 0 < self.alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5), got {self.alpha}")
        if not 0 < self.beta < 0.5:
            raise ValueError(f"beta must be in (0, 0.5), got {self.beta}")
        if self.max_runs_per_cell < 1:
            raise ValueError(f"max_runs_per_cell must be at least 1, got {self.max_runs_per_cell}")

    @property
    def upper(self) -> float:
        """The LLR at which a cell ``reproduces``: ln(1 / alpha).

        Wald's inequalities give P(reproduces | lo) <= e^-upper and
        P(does-not | hi) <= e^lower for any stopping rule that stops only past these
        thresholds, so these bounds hold exactly, truncated or not. Wald's usual
        ln((1 - beta) / alpha) and ln(beta / (1 - alpha)) only approximate them: at the
        defaults they call a cell at rate hi ``does-not`` with probability 0.0504."""
        return -math.log(self.alpha)

    @property
    def lower(self) -> float:
        """The LLR at which a cell ``does-not`` reproduce: ln(beta)."""
        return math.log(self.beta)

    @property
    def per_hang(self) -> float:
        """What one hang adds to the LLR: ln(hi / lo), +inf when lo = 0."""
        return math.inf if self.lo == 0 else math.log(self.hi / self.lo)

    @property
    def per_clean_run(self) -> float:
        """What one run without the hang adds: ln((1 - hi) / (1 - lo)), -inf when hi = 1."""
        return -math.inf if self.hi == 1 else math.log1p(-self.hi) - math.log1p(-self.lo)


def overdispersion(per_agent: Sequence[tuple[int, int]]) -> float:
    """phi = max(1, X^2 / (agents - 1)), Pearson's X^2 on the agents x (hang, no hang) table
    of one cell, from (hangs, runs) per agent; 1 when it cannot be measured (fewer than two
    agents with runs, or no hang, or nothing but hangs).

    Machines of one configuration may hang at different rates; the runs of one machine
    then agree with each other more than independent trials would, and a cell's counts
    carry less evidence than their number says. phi estimates by how much (binomial: 1).
    X^2 = sum (h_i - n_i p)^2 / (n_i p (1 - p)) with p = H / N."""
    used = [(h, n) for h, n in per_agent if n > 0]
    for h, n in used:
        _check_counts(h, n)
    hangs = sum(h for h, _ in used)
    runs = sum(n for _, n in used)
    if len(used) < 2 or hangs == 0 or hangs == runs:
        return 1.0
    p = hangs / runs
    x2 = sum((h - n * p) ** 2 / (n * p * (1 - p)) for h, n in used)
    return max(1.0, x2 / (len(used) - 1))


def log_likelihood_ratio(hangs: int, runs: int, rule: SearchRule) -> float:
    """ln of P(counts | rate = hi) / P(counts | rate = lo) for Bernoulli runs:
    hangs ln(hi/lo) + (runs - hangs) ln((1-hi)/(1-lo)). +inf when lo = 0 and a run hung
    (it proves the rate is above lo; that holds even when hi = 1 and a run passed, which
    would exclude rate >= hi too: a rate above lo called ``reproduces`` is never the
    error alpha bounds). -inf when hi = 1 and a run passed and lo > 0 or none hung."""
    _check_counts(hangs, runs)
    if hangs and rule.lo == 0:
        return math.inf
    if runs - hangs and rule.hi == 1:
        return -math.inf
    llr = 0.0
    if hangs:
        llr += hangs * rule.per_hang
    if runs - hangs:
        llr += (runs - hangs) * rule.per_clean_run
    return llr


def cell_decision(hangs: int, runs: int, rule: SearchRule, *, phi: float = 1.0) -> CellDecision:
    """Wald's SPRT on the LLR divided by ``phi`` (a quasi-likelihood SPRT): ``reproduces``
    at ``rule.upper`` = ln(1/alpha) or above, ``does-not`` at ``rule.lower`` = ln(beta)
    or below, else ``undecided``. An ``undecided`` cell with
    ``runs >= rule.max_runs_per_cell`` is final: give it no more runs. Truncating can
    only turn wrong calls into undecided ones, so for independent runs the error rates
    stay within alpha and beta whatever ``phi`` is (phi >= 1 only moves the thresholds
    outwards); ``search_characteristics`` computes them exactly."""
    if not phi >= 1:
        raise ValueError(f"phi must be at least 1, got {phi}")
    llr = log_likelihood_ratio(hangs, runs, rule) / phi
    if llr >= rule.upper:
        return CellDecision.REPRODUCES
    if llr <= rule.lower:
        return CellDecision.DOES_NOT
    return CellDecision.UNDECIDED


def pick_cells(
    cells: Sequence[tuple[int, int]],
    slots: int,
    rule: SearchRule,
    rng: random.Random,
    *,
    phi: Sequence[float] | None = None,
) -> list[int]:
    """Indices of undecided cells (given as (hangs, runs), already filtered to undecided by
    the caller) to give the next ``slots`` runs, repeats allowed, most informative first.

    Thompson sampling for "which cell reproduces": each slot goes to the cell with the
    largest draw from its Beta(1 + h/phi, 1 + (n - h)/phi) posterior. Every cell is
    decided by its own SPRT, so the order of the runs changes little in how many runs
    the study needs in all; what the order changes is how soon the first reproducing
    cell is certified (the question people wait on) and what a cut budget leaves
    undecided. Thompson sends runs where a hang is likely, and a cell at rate 1.0 is
    certified in its first two runs. A thresholding-bandit index such as APT (Locatelli
    et al. 2016) does the opposite: it spends on the cells nearest the threshold and
    starves the clear ones, which suits a fixed budget without early stopping, not this.

    A cell gets no more slots in one call than the fewest runs that could decide it
    (a cell one hang from certified gets one, not all), unless slots would otherwise
    stay empty, and never past ``rule.max_runs_per_cell``. Fewer than ``slots`` indices
    come back only when every cell is at that cap. Deterministic given ``rng``'s state.
    """
    if slots < 0:
        raise ValueError(f"slots must not be negative, got {slots}")
    phis = [1.0] * len(cells) if phi is None else list(phi)
    if len(phis) != len(cells):
        raise ValueError(f"phi must have one value per cell ({len(cells)}), got {len(phis)}")
    room = [max(0, rule.max_runs_per_cell - n) for _, n in cells]
    soon = [
        min(room[i], _fewest_runs_to_decide(h, n, rule, phis[i])) for i, (h, n) in enumerate(cells)
    ]
    picked: list[int] = []
    for caps in (soon, room):
        used = [picked.count(i) for i in range(len(cells))]
        while len(picked) < slots:
            best = _thompson_pick(
                cells, phis, [c - u for c, u in zip(caps, used, strict=True)], rng
            )
            if best is None:
                break
            picked.append(best)
            used[best] += 1
    return picked


def _thompson_pick(
    cells: Sequence[tuple[int, int]], phis: Sequence[float], left: Sequence[int], rng: random.Random
) -> int | None:
    best, best_draw = None, -1.0
    for i, (h, n) in enumerate(cells):
        if left[i] <= 0:
            continue
        draw = rng.betavariate(1 + h / phis[i], 1 + (n - h) / phis[i])
        if draw > best_draw:
            best, best_draw = i, draw
    return best


def _fewest_runs_to_decide(hangs: int, runs: int, rule: SearchRule, phi: float) -> int:
    """Runs that could decide the cell at the soonest: all hanging, or all clean."""
    llr = log_likelihood_ratio(hangs, runs, rule) / phi
    up = rule.per_hang / phi
    down = -rule.per_clean_run / phi
    by_hangs = 1 if math.isinf(up) else math.ceil((rule.upper - llr) / up)
    by_clean = 1 if math.isinf(down) else math.ceil((llr - rule.lower) / down)
    return max(1, min(by_hangs, by_clean))


@dataclass(frozen=True)
class SearchCharacteristics:
    p_reproduces: float
    p_does_not: float
    p_undecided: float  # still undecided at max_runs_per_cell
    expected_runs: float


def search_characteristics(
    rate: float, rule: SearchRule, *, phi: float = 1.0
) -> SearchCharacteristics:
    """The exact operating characteristics of ``cell_decision`` (with a fixed ``phi``) on a
    cell whose runs are independent with probability ``rate`` of hanging: the chance of
    each outcome and the expected number of runs, by walking the distribution of the
    hang count run by run (no simulation, no Wald approximation)."""
    if not 0 <= rate <= 1:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    live = {0: 1.0}  # hang count -> probability of being undecided with it
    outcome = {CellDecision.REPRODUCES: 0.0, CellDecision.DOES_NOT: 0.0}
    expected = 0.0
    for n in range(1, rule.max_runs_per_cell + 1):
        expected += sum(live.values())
        step: dict[int, float] = {}
        for h, p in live.items():
            step[h] = step.get(h, 0.0) + p * (1 - rate)
            step[h + 1] = step.get(h + 1, 0.0) + p * rate
        live = {}
        for h, p in step.items():
            if p == 0.0:
                continue
            decision = cell_decision(h, n, rule, phi=phi)
            if decision is CellDecision.UNDECIDED:
                live[h] = p
            else:
                outcome[decision] += p
        if not live:
            break
    return SearchCharacteristics(
        p_reproduces=outcome[CellDecision.REPRODUCES],
        p_does_not=outcome[CellDecision.DOES_NOT],
        p_undecided=sum(live.values()),
        expected_runs=expected,
    )


def uniform_runs_per_cell(rule: SearchRule) -> tuple[int, int]:
    """(n, c): the fixed-n design with the same error rates, for comparison: n runs in every
    cell, ``reproduces`` iff hangs >= c, with P(hangs >= c | lo) <= alpha and
    P(hangs < c | hi) <= beta; the smallest such n (its c the smallest that keeps alpha,
    which gives the most power). Exact binomial tails, not a normal approximation."""
    # scipy.stats costs an api process ~50 MB: loaded when a design is compared, not at start.
    from scipy.stats import binom  # type: ignore[import-untyped]

    chunk = 256
    start = 1
    while True:
        n = np.arange(start, start + chunk)
        c = _smallest_cutoff(n, rule.lo, rule.alpha)
        ok = (c <= n) & (binom.cdf(c - 1, n, rule.hi) <= rule.beta)
        if ok.any():
            first = int(np.argmax(ok))
            return int(n[first]), int(c[first])
        start += chunk
        chunk *= 2


def _smallest_cutoff(n: np.ndarray, lo: float, alpha: float) -> np.ndarray:
    """For each n, the smallest c with P(Binomial(n, lo) >= c) <= alpha (isf, then checked:
    scipy's quantile search may land one off on an exact tie)."""
    from scipy.stats import binom

    c = np.asarray(binom.isf(alpha, n, lo), dtype=np.int64) + 1
    c = np.maximum(c, 0)
    c = np.where(binom.sf(c - 1, n, lo) > alpha, c + 1, c)
    return np.where((c > 0) & (binom.sf(c - 2, n, lo) <= alpha), c - 1, c)
