"""The statistics of studies (reprofarm_db.study_rules), against scipy and against simulated
studies run the way the controller runs them. No database."""

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from reprofarm_db.study_rules import (
    ArmCounts,
    CellDecision,
    SearchRule,
    VerifyOutcome,
    VerifyVerdict,
    cell_decision,
    clean_runs_needed,
    log_likelihood_ratio,
    overdispersion,
    pick_cells,
    search_characteristics,
    uniform_runs_per_cell,
    verify_verdict,
)
from scipy.stats import binom, binomtest, chi2_contingency

FIXED, NOT_FIXED, UNDECIDED = VerifyVerdict.FIXED, VerifyVerdict.NOT_FIXED, VerifyVerdict.UNDECIDED
REPRODUCES, DOES_NOT = CellDecision.REPRODUCES, CellDecision.DOES_NOT

baselines = st.tuples(st.integers(1, 3000), st.integers(1, 60)).map(
    lambda t: ArmCounts(runs=max(t), hangs=t[1])
)
margins = st.sampled_from([1.0, 1.5, 2.0, 4.0, 10.0])


def mc_slack(p: float, n: int) -> float:
    """Three standard errors of a simulated proportion near p from n trials."""
    return 3 * math.sqrt(p * (1 - p) / n)


# ---------------------------------------------------------------------------------- verify


@pytest.mark.parametrize(
    ("baseline", "candidate", "margin"),
    [
        ((1000, 20), (500, 0), 10.0),
        ((1000, 20), (1616, 0), 10.0),
        ((1000, 20), (300, 2), 1.0),
        ((200, 7), (250, 3), 4.0),
        ((50, 1), (80, 1), 2.0),
    ],
)
def test_p_value_is_the_exact_conditional_binomial_test(baseline, candidate, margin):
    b, c = ArmCounts(*baseline), ArmCounts(*candidate)
    pi0 = c.runs / (c.runs + margin * b.runs)
    expected = binomtest(c.hangs, b.hangs + c.hangs, pi0, alternative="less").pvalue
    assert verify_verdict(b, c, margin=margin).p_value == pytest.approx(expected, rel=1e-9)


def test_twenty_baseline_hangs_in_a_thousand_need_1616_clean_runs_at_margin_ten():
    baseline = ArmCounts(runs=1000, hangs=20)
    assert clean_runs_needed(baseline, margin=10) == 1616
    assert verify_verdict(baseline, ArmCounts(1616, 0), margin=10).verdict is FIXED
    assert verify_verdict(baseline, ArmCounts(1615, 0), margin=10).verdict is UNDECIDED


def test_twenty_baseline_hangs_in_a_thousand_need_162_clean_runs_at_margin_one():
    baseline = ArmCounts(runs=1000, hangs=20)
    assert clean_runs_needed(baseline, margin=1) == 162
    assert verify_verdict(baseline, ArmCounts(162, 0), margin=1).verdict is FIXED
    assert verify_verdict(baseline, ArmCounts(161, 0), margin=1).verdict is UNDECIDED


def test_one_labelled_candidate_hang_means_not_fixed_whatever_the_baseline():
    outcome = verify_verdict(ArmCounts(100_000, 5_000), ArmCounts(100_000, 1), margin=1)
    assert outcome.verdict is NOT_FIXED
    assert outcome.more_clean_runs == 0
    assert outcome.p_value is not None
    assert outcome.p_value < 1e-6  # the test alone would say fixed


def test_without_a_baseline_hang_nothing_can_be_said_and_the_baseline_must_run_more():
    outcome = verify_verdict(ArmCounts(5000, 0), ArmCounts(5000, 0), margin=1)
    assert outcome == VerifyOutcome(UNDECIDED, None, None, None)
    assert clean_runs_needed(ArmCounts(5000, 0), margin=1) is None


def test_a_candidate_hang_without_baseline_hangs_is_still_not_fixed():
    outcome = verify_verdict(ArmCounts(10, 0), ArmCounts(10, 1), margin=1)
    assert outcome == VerifyOutcome(NOT_FIXED, None, None, 0)


@pytest.mark.parametrize(
    ("runs", "hangs", "field"), [(-1, 0, "runs"), (3, 4, "hangs"), (3, -1, "hangs")]
)
def test_impossible_counts_are_refused(runs, hangs, field):
    with pytest.raises(ValueError, match=field):
        ArmCounts(runs=runs, hangs=hangs)


@pytest.mark.parametrize(("margin", "alpha", "field"), [(0, 0.05, "margin"), (1, 1.0, "alpha")])
def test_a_meaningless_margin_or_level_is_refused(margin, alpha, field):
    with pytest.raises(ValueError, match=field):
        verify_verdict(ArmCounts(10, 1), ArmCounts(10, 0), margin=margin, alpha=alpha)


@given(baselines, margins, st.integers(0, 20_000))
def test_more_clean_runs_is_exactly_what_turns_the_verdict_to_fixed(baseline, margin, clean):
    outcome = verify_verdict(baseline, ArmCounts(clean, 0), margin=margin)
    more = outcome.more_clean_runs
    assert more is not None
    if outcome.verdict is FIXED:
        assert more == 0
        return
    assert more >= 1
    assert verify_verdict(baseline, ArmCounts(clean + more, 0), margin=margin).verdict is FIXED
    fewer = verify_verdict(baseline, ArmCounts(clean + more - 1, 0), margin=margin)
    assert fewer.verdict is UNDECIDED, (baseline, margin, clean, more)


@given(baselines, margins)
def test_the_closed_form_count_is_the_formula_of_the_docs(baseline, margin):
    exact = margin * baseline.runs * (0.05 ** (-1 / baseline.hangs) - 1)
    needed = clean_runs_needed(baseline, margin=margin)
    assert needed is not None
    assert abs(needed - math.ceil(exact)) <= 1  # off by one only on a rounding tie
    assert needed >= exact - 1e-6


@given(baselines, margins, st.integers(0, 20_000))
def test_more_clean_candidate_runs_never_make_it_less_fixed(baseline, margin, clean):
    now = verify_verdict(baseline, ArmCounts(clean, 0), margin=margin)
    later = verify_verdict(baseline, ArmCounts(clean + 1, 0), margin=margin)
    assert now.p_value is not None
    assert later.p_value is not None
    assert later.p_value <= now.p_value
    assert now.verdict is not FIXED or later.verdict is FIXED


@given(baselines, st.integers(1, 20_000), st.integers(0, 30), margins)
def test_the_ratio_bound_is_the_clopper_pearson_bound_of_the_conditional(
    baseline, runs, hangs, margin
):
    candidate = ArmCounts(max(runs, hangs), hangs)
    k = baseline.hangs + candidate.hangs
    outcome = verify_verdict(baseline, candidate, margin=margin)
    if candidate.hangs == k:
        assert outcome.ratio_upper95 is None
        return
    # the high end of a two-sided 90% exact interval is the one-sided 95% bound
    pi_high = binomtest(candidate.hangs, k).proportion_ci(0.90, method="exact").high
    expected = pi_high * baseline.runs / ((1 - pi_high) * candidate.runs)
    assert outcome.ratio_upper95 == pytest.approx(expected, rel=1e-7)


@given(baselines, st.integers(0, 20_000), margins)
def test_at_five_percent_fixed_means_the_ratio_bound_is_below_one_over_the_margin(
    baseline, clean, margin
):
    outcome = verify_verdict(baseline, ArmCounts(clean, 0), margin=margin)
    if clean == 0 or outcome.p_value is None or abs(outcome.p_value - 0.05) < 1e-9:
        return  # no bound without candidate runs; a tie is decided by rounding
    assert outcome.ratio_upper95 is not None
    assert (outcome.verdict is FIXED) == (outcome.ratio_upper95 < 1 / margin)


def simulated_verify(
    rate_baseline: float, rate_candidate: float, margin: float, budget: int, rng: random.Random
) -> VerifyVerdict:
    """One verify study as the controller runs it: runs in pairs on the same cell (which arm
    reports first is random, as with parallel agents), a look after every run, stop at the
    first decision or after `budget` runs per arm."""
    b = c = ArmCounts(0, 0)
    for _ in range(budget):
        for arm in rng.sample(("baseline", "candidate"), 2):
            if arm == "baseline":
                b = ArmCounts(b.runs + 1, b.hangs + (rng.random() < rate_baseline))
            else:
                c = ArmCounts(c.runs + 1, c.hangs + (rng.random() < rate_candidate))
            verdict = verify_verdict(b, c, margin=margin).verdict
            if verdict is not UNDECIDED:
                return verdict
    return UNDECIDED


@pytest.mark.parametrize(("margin", "rate", "studies"), [(1.0, 0.05, 4000), (4.0, 0.05, 2000)])
def test_looking_after_every_run_calls_an_unchanged_candidate_fixed_at_most_alpha(
    margin, rate, studies
):
    rng = random.Random(20261201)
    verdicts = [simulated_verify(rate, rate, margin, 3000, rng) for _ in range(studies)]
    fixed = verdicts.count(FIXED) / studies
    assert fixed <= 0.05, f"{fixed:.4f} of studies with equal rates were called fixed"
    assert verdicts.count(UNDECIDED) == 0


def test_a_candidate_exactly_at_the_margin_is_called_fixed_at_most_alpha():
    # the size of the test: H0's boundary, rate_c = rate_b / margin (about 4.4% in theory:
    # 14 baseline hangs before the first candidate one, 0.8^14)
    rng = random.Random(7)
    studies = 2000
    verdicts = [simulated_verify(0.2, 0.05, 4.0, 3000, rng) for _ in range(studies)]
    fixed = verdicts.count(FIXED) / studies
    assert fixed <= 0.05 + mc_slack(0.05, studies), f"{fixed:.4f} called fixed at the boundary"


@pytest.mark.parametrize(("margin", "budget"), [(1.0, 400), (4.0, 1000)])
def test_a_truly_fixed_candidate_is_called_fixed_within_a_modest_budget(margin, budget):
    rng = random.Random(11)
    verdicts = [simulated_verify(0.05, 0.0, margin, budget, rng) for _ in range(200)]
    assert verdicts.count(FIXED) >= 195, verdicts.count(UNDECIDED)


# ---------------------------------------------------------------------------------- search

RULE = SearchRule()


@given(st.integers(0, 700), st.integers(0, 700))
def test_the_llr_is_the_difference_of_binomial_log_probabilities(a, b):
    hangs, runs = min(a, b), max(a, b)
    expected = binom.logpmf(hangs, runs, RULE.hi) - binom.logpmf(hangs, runs, RULE.lo)
    assert log_likelihood_ratio(hangs, runs, RULE) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_at_the_defaults_two_quick_hangs_reproduce_and_65_clean_runs_do_not():
    assert RULE.upper == pytest.approx(math.log(20))
    assert RULE.lower == pytest.approx(math.log(0.05))
    assert cell_decision(2, 2, RULE) is REPRODUCES
    assert cell_decision(2, 24, RULE) is REPRODUCES  # 2 ln 10 - 22 x 0.0463 = 3.59
    assert cell_decision(2, 40, RULE) is CellDecision.UNDECIDED
    assert cell_decision(1, 1, RULE) is CellDecision.UNDECIDED
    assert cell_decision(0, 64, RULE) is CellDecision.UNDECIDED
    assert cell_decision(0, 65, RULE) is DOES_NOT
    assert cell_decision(0, 0, RULE) is CellDecision.UNDECIDED


def test_overdispersion_divides_the_evidence():
    assert cell_decision(0, 65, RULE, phi=2.0) is CellDecision.UNDECIDED
    assert cell_decision(0, 130, RULE, phi=2.0) is DOES_NOT
    assert cell_decision(2, 2, RULE, phi=2.0) is CellDecision.UNDECIDED
    with pytest.raises(ValueError, match="phi"):
        cell_decision(0, 10, RULE, phi=0.5)


def test_with_lo_zero_one_hang_proves_it_reproduces():
    rule = SearchRule(lo=0.0, hi=0.01)
    assert log_likelihood_ratio(1, 500, rule) == math.inf
    assert cell_decision(1, 500, rule, phi=50.0) is REPRODUCES
    assert cell_decision(0, 299, rule) is DOES_NOT  # 0.99^299 < 0.05 < 0.99^298
    assert cell_decision(0, 298, rule) is CellDecision.UNDECIDED


def test_with_hi_one_a_clean_run_proves_it_does_not_and_lo_zero_wins_a_tie():
    assert cell_decision(0, 1, SearchRule(lo=0.1, hi=1.0)) is DOES_NOT
    assert cell_decision(3, 4, SearchRule(lo=0.1, hi=1.0)) is DOES_NOT
    assert cell_decision(1, 2, SearchRule(lo=0.0, hi=1.0)) is REPRODUCES


def test_more_hangs_than_runs_is_refused():
    with pytest.raises(ValueError, match="hangs"):
        log_likelihood_ratio(3, 2, RULE)


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"lo": -0.1}, "lo"),
        ({"lo": 0.05, "hi": 0.05}, "hi"),
        ({"hi": 1.5}, "hi"),
        ({"alpha": 0.5}, "alpha"),
        ({"beta": 0.0}, "beta"),
        ({"max_runs_per_cell": 0}, "max_runs_per_cell"),
    ],
)
def test_a_rule_names_the_field_it_refuses(fields, name):
    with pytest.raises(ValueError, match=f"^{name} "):
        SearchRule(**fields)


def test_exact_error_rates_at_lo_and_hi_are_within_alpha_and_beta():
    at_lo = search_characteristics(RULE.lo, RULE)
    at_hi = search_characteristics(RULE.hi, RULE)
    assert at_lo.p_reproduces <= RULE.alpha, at_lo
    assert at_hi.p_does_not <= RULE.beta, at_hi
    assert search_characteristics(0.0, RULE).expected_runs == 65
    assert search_characteristics(1.0, RULE).expected_runs == 2


def simulated_cell(
    rate: float, rule: SearchRule, rng: random.Random, *, machines: int, spread: float, phi: bool
) -> CellDecision:
    """One cell searched as a study does it: each run on one of the cell's machines at random,
    machine rates from a Beta with the cell's rate as mean and variance spread r (1 - r), a
    look after every run with phi estimated from the per-machine counts."""
    k = 1 / spread - 1 if spread else 0.0
    rates = [rng.betavariate(rate * k, (1 - rate) * k) if spread else rate for _ in range(machines)]
    hangs, runs = [0] * machines, [0] * machines
    for _ in range(rule.max_runs_per_cell):
        m = rng.randrange(machines)
        runs[m] += 1
        hangs[m] += rng.random() < rates[m]
        f = overdispersion(list(zip(hangs, runs, strict=True))) if phi else 1.0
        decision = cell_decision(sum(hangs), sum(runs), rule, phi=f)
        if decision is not CellDecision.UNDECIDED:
            return decision
    return CellDecision.UNDECIDED


@pytest.mark.parametrize(
    ("rate", "wrong", "bound"), [(RULE.lo, REPRODUCES, RULE.alpha), (RULE.hi, DOES_NOT, RULE.beta)]
)
def test_simulated_error_rates_at_lo_and_hi_hold_on_identical_machines(rate, wrong, bound):
    rng = random.Random(3)
    n = 3000
    calls = [simulated_cell(rate, RULE, rng, machines=4, spread=0.0, phi=True) for _ in range(n)]
    assert calls.count(wrong) / n <= bound + mc_slack(bound, n)


def test_estimated_phi_keeps_one_odd_machine_from_certifying_a_cell_at_lo():
    # At rate lo with machines that differ (ICC 0.05), the hangs come from one or two
    # machines; without phi the SPRT calls such a cell "reproduces" about 8% of the time.
    n = 2000
    with_phi = [
        simulated_cell(RULE.lo, RULE, random.Random(i), machines=4, spread=0.05, phi=True)
        for i in range(n)
    ]
    without = [
        simulated_cell(RULE.lo, RULE, random.Random(i), machines=4, spread=0.05, phi=False)
        for i in range(n)
    ]
    assert with_phi.count(REPRODUCES) / n <= RULE.alpha
    assert without.count(REPRODUCES) / n > RULE.alpha + mc_slack(RULE.alpha, n)


def test_mildly_different_machines_keep_the_error_at_hi_near_beta():
    # ICC 0.005 (machine rates about 0.05 +- 0.016). phi cannot help a "does-not" call much:
    # it is made on cells with few or no hangs, where there is nothing to measure the
    # spread with; docs/statistics.md gives the error for larger spreads.
    rng = random.Random(5)
    n = 2000
    calls = [
        simulated_cell(RULE.hi, RULE, rng, machines=4, spread=0.005, phi=True) for _ in range(n)
    ]
    assert calls.count(DOES_NOT) / n <= RULE.beta + mc_slack(RULE.beta, n)


@given(
    st.lists(
        st.tuples(st.integers(0, 60), st.integers(0, 60)).map(lambda t: (t[0], t[0] + t[1])),
        min_size=0,
        max_size=12,
    )
)
def test_overdispersion_is_pearsons_chi_square_per_degree_of_freedom_at_least_one(per_agent):
    rows = [(h, n - h) for h, n in per_agent if n > 0]
    phi = overdispersion(per_agent)
    assert phi >= 1
    if len(rows) < 2 or not sum(h for h, _ in rows) or not sum(m for _, m in rows):
        assert phi == 1
        return
    stat = chi2_contingency(rows, correction=False).statistic
    assert phi == pytest.approx(max(1.0, stat / (len(rows) - 1)), rel=1e-9)


def test_a_cell_without_hangs_shows_no_overdispersion():
    assert overdispersion([(0, 40), (0, 3), (0, 0)]) == 1.0
    assert overdispersion([(5, 40)]) == 1.0
    assert overdispersion([(20, 20), (0, 20)]) == pytest.approx(40.0)  # X^2 = N, 1 df


@pytest.mark.parametrize(
    "rule",
    [
        RULE,
        SearchRule(lo=0.01, hi=0.1, alpha=0.01, beta=0.1),
        SearchRule(lo=0.0, hi=0.05),
        SearchRule(lo=0.5, hi=1.0),
        SearchRule(lo=0.001, hi=0.003),
    ],
)
def test_the_uniform_design_is_the_smallest_exact_binomial_test(rule):
    n, c = uniform_runs_per_cell(rule)
    assert binom.sf(c - 1, n, rule.lo) <= rule.alpha
    assert binom.cdf(c - 1, n, rule.hi) <= rule.beta
    for cutoff in range(n + 1):  # n - 1 runs: no cutoff keeps both error rates
        assert binom.sf(cutoff - 1, n - 1, rule.lo) > rule.alpha or (
            binom.cdf(cutoff - 1, n - 1, rule.hi) > rule.beta
        )


def test_the_default_uniform_design_needs_124_runs_per_cell():
    assert uniform_runs_per_cell(RULE) == (124, 3)


# ---------------------------------------------------------------------------------- allocation

cell_lists = st.lists(
    st.tuples(st.integers(0, 30), st.integers(0, 700)).map(lambda t: (min(t), max(t))),
    min_size=0,
    max_size=15,
)


@given(cell_lists, st.integers(0, 12), st.integers(0, 2**32))
def test_pick_cells_is_deterministic_given_the_seed_and_stays_in_range(cells, slots, seed):
    first = pick_cells(cells, slots, RULE, random.Random(seed))
    again = pick_cells(cells, slots, RULE, random.Random(seed))
    assert first == again
    assert all(0 <= i < len(cells) for i in first)
    room = sum(max(0, RULE.max_runs_per_cell - n) for _, n in cells)
    assert len(first) == min(slots, room)
    for i in set(first):
        assert cells[i][1] + first.count(i) <= RULE.max_runs_per_cell


def test_a_cell_one_hang_from_certified_gets_one_slot_while_others_wait():
    cells = [(1, 1), (0, 3), (0, 5)]  # the first reproduces with one more hang
    picks = pick_cells(cells, 4, RULE, random.Random(1))
    assert picks.count(0) == 1
    assert len(picks) == 4


def test_slots_fill_up_when_only_nearly_decided_cells_are_left():
    assert pick_cells([(1, 1)], 3, RULE, random.Random(1)) == [0, 0, 0]


def test_phi_must_come_one_per_cell():
    with pytest.raises(ValueError, match="phi"):
        pick_cells([(0, 1), (0, 2)], 2, RULE, random.Random(1), phi=[1.0])
