"""explain's math checked against independent computations: Firth's estimate against a
brute-force maximisation of the penalised likelihood (scipy.optimize) and, where the
data are not separated, against statsmodels' ordinary GLM; then the report on generated
data with known effects, separation, aliasing, overdispersion and effect modification."""

import math

import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from reprofarm_db import firth
from reprofarm_db.explain_model import Cell, explain
from scipy.optimize import minimize

DESIGN = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 1], [1, 1, 1], [1, 0, 0], [1, 1, 1]], dtype=float)


def _brute_force(x, hangs, runs, fixed_zero=()):
    free = [j for j in range(x.shape[1]) if j not in fixed_zero]

    def minus(b):
        coef = np.zeros(x.shape[1])
        coef[free] = b
        return -firth.penalized_loglik(x, hangs, runs, coef)

    # BFGS, then a derivative-free polish from there: independent of our Newton steps
    start = minimize(minus, np.zeros(len(free)), method="BFGS")
    found = minimize(
        minus,
        start.x,
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 40000},
    )
    coef = np.zeros(x.shape[1])
    coef[free] = found.x
    return coef


@settings(max_examples=200, deadline=None)
@given(
    runs=st.lists(st.integers(1, 40), min_size=6, max_size=6),
    shares=st.lists(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]), min_size=6, max_size=6),
)
def test_firth_maximises_the_penalised_likelihood_even_when_cells_are_all_or_nothing(runs, shares):
    n = np.array(runs, dtype=float)
    h = np.round(n * np.array(shares))
    # With no hang at all (or only hangs) the penalised likelihood is not concave: Newton
    # can stop on a saddle. explain says "nothing to explain" then and never fits.
    assume(0 < h.sum() < n.sum())
    fitted = firth.fit(DESIGN, h, n)
    expected = _brute_force(DESIGN, h, n)
    # Small symmetric tables can have two maxima (coefficients swapped): compare heights.
    best = firth.penalized_loglik(DESIGN, h, n, expected)
    assert fitted.penalized_loglik == pytest.approx(best, abs=1e-7), (runs, shares, expected)
    assert fitted.penalized_loglik >= best - 1e-9


def test_the_restricted_fit_maximises_with_the_full_penalty():
    n = np.array([20, 30, 25, 40, 10, 15], dtype=float)
    h = np.array([0, 3, 25, 40, 0, 15], dtype=float)
    fitted = firth.fit(DESIGN, h, n, fixed_zero=[2])
    assert fitted.coef[2] == 0
    assert np.allclose(fitted.coef, _brute_force(DESIGN, h, n, fixed_zero=[2]), atol=2e-4)


def test_firth_matches_the_ordinary_fit_when_cells_are_large_and_not_separated():
    n = np.full(6, 200_000.0)
    h = np.array([2000, 2600, 8000, 8400, 1800, 7600], dtype=float)
    ordinary = sm.GLM(np.column_stack([h, n - h]), DESIGN, family=sm.families.Binomial()).fit()
    fitted = firth.fit(DESIGN, h, n)
    assert np.allclose(fitted.coef, ordinary.params, atol=1e-3), (fitted.coef, ordinary.params)
    assert np.allclose(np.sqrt(np.diag(fitted.cov)), ordinary.bse, rtol=1e-3)


def _cells(rate, levels, runs=400, seed=0, **fixed):
    """One cell per combination of ``levels``, hangs drawn at ``rate(levels)``."""
    rng = np.random.default_rng(seed)
    names = list(levels)
    out = []
    for combo in np.array(np.meshgrid(*levels.values())).T.reshape(-1, len(names)):
        lv = dict(zip(names, (str(v) for v in combo), strict=True)) | fixed
        out.append(Cell(lv, int(rng.binomial(runs, rate(lv))), runs))
    return out


def _factor(report, name):
    return next(f for f in report.factors if f.factor == name)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), odds=st.sampled_from([3.0, 5.0, 10.0]))
def test_a_factor_with_a_known_effect_is_found_and_its_odds_ratio_covered(seed, odds):
    def rate(lv):
        base = 0.02
        o = base / (1 - base) * (odds if lv["cpus"] == "1" else 1.0)
        return o / (1 + o)

    cells = _cells(rate, {"cpus": ["1", "2"], "affinity": ["compact", "spread"]}, seed=seed)
    report = explain(cells, ["cpus", "affinity"])
    cpus = _factor(report, "cpus")
    assert cpus.q < 0.05
    one = next(lv for lv in cpus.levels if lv.level == "1")
    # the reference is the level with most runs, ties broken by order: "1"; so "2" vs "1"
    two = next(lv for lv in cpus.levels if lv.level == "2")
    assert one.reference
    # the interval reaches within a factor 3 of the true odds ratio (1 / odds)
    assert two.ci95_low < 3 / odds
    assert two.ci95_high > 1 / odds / 3


def test_a_null_factor_has_no_evidence():
    cells = _cells(lambda lv: 0.05, {"cpus": ["1", "2"], "affinity": ["a", "b"]}, runs=2000)
    report = explain(cells, ["cpus", "affinity"])
    assert _factor(report, "cpus").q >= 0.05
    assert _factor(report, "affinity").q >= 0.05


def test_the_control_contract_separated_chance_matters_and_cpus_does_not():
    cells = [
        Cell({"control_chance": ch, "cpus": cpus}, hangs, 6)
        for ch, hangs in (("0", 0), ("0.001", 6))
        for cpus in ("1", "2")
    ]
    report = explain(cells, ["control_chance", "cpus"])
    chance = _factor(report, "control_chance")
    assert chance.q < 0.05
    assert _factor(report, "cpus").q >= 0.05
    high = next(lv for lv in chance.levels if lv.level == "0.001")
    assert math.isfinite(high.odds_ratio)
    assert high.odds_ratio > 1
    assert high.ci95_low > 1


def test_one_to_one_factors_are_merged_and_reported_with_the_cells_that_separate_them():
    def rate(lv):
        return 0.2 if lv["arch"] == "arm64" else 0.02

    cells = [
        Cell({"arch": a, "hypervisor": hv, "cpus": c}, int(rate({"arch": a}) * 500), 500)
        for a, hv in (("arm64", "hyper-v"), ("amd64", "none"))
        for c in ("1", "2")
    ]
    report = explain(cells, ["arch", "hypervisor", "cpus"])
    assert report.aliased == [["arch", "hypervisor"]]
    assert {f.factor for f in report.factors} == {"arch", "cpus"}
    assert _factor(report, "arch").aliased_with == ["hypervisor"]
    assert {tuple(sorted(c.items())) for c in report.aliasing[0].separate_with} == {
        (("arch", "arm64"), ("hypervisor", "none")),
        (("arch", "amd64"), ("hypervisor", "hyper-v")),
    }
    assert "cannot be told apart" in report.aliasing[0].says


def test_a_level_determined_by_other_factors_gets_no_effect_of_its_own():
    # cpu "m3" is the only arm64 model: its indicator is the arm64 indicator
    cells = [
        Cell({"arch": a, "cpu_model": m, "cpus": c}, 10, 500)
        for a, m in (
            ("amd64", "m1"),
            ("amd64", "m2"),
            ("arm64", "m3"),
            ("arm64", "m4"),
            ("amd64", "m5"),
        )
        for c in ("1", "2")
        if (a, m) != ("arm64", "m4")
    ] + [Cell({"arch": "amd64", "cpu_model": "m1", "cpus": "4"}, 10, 500)]
    report = explain(cells, ["arch", "cpu_model", "cpus"])
    levels = {lv.level: lv for f in report.factors for lv in f.levels}
    assert levels["m3"].odds_ratio is None
    assert levels["m3"].aliased_with == ["arch"]
    assert ["cpu_model", "arch"] in report.aliased
    assert {"cpu_model": "m3", "arch": "amd64"} in report.aliasing[-1].separate_with


def test_machines_that_disagree_widen_the_intervals_and_the_report_says_so():
    base = _cells(lambda lv: 0.1 if lv["cpus"] == "1" else 0.05, {"cpus": ["1", "2"]}, runs=1000)
    calm = explain(base, ["cpus"])
    noisy = explain(
        [Cell(c.levels, c.hangs, c.runs, machines_chi2=40.0, machines_df=4) for c in base],
        ["cpus"],
    )
    assert not calm.widened
    assert noisy.widened
    assert noisy.dispersion == pytest.approx(10.0)
    assert any("wider" in s for s in noisy.says)
    lv_calm = next(lv for lv in _factor(calm, "cpus").levels if not lv.reference)
    lv_noisy = next(lv for lv in _factor(noisy, "cpus").levels if not lv.reference)
    width = math.log(lv_noisy.ci95_high / lv_noisy.ci95_low)
    assert width == pytest.approx(math.log(lv_calm.ci95_high / lv_calm.ci95_low) * math.sqrt(10))
    assert _factor(noisy, "cpus").p > _factor(calm, "cpus").p


def test_breslow_day_finds_an_effect_that_exists_on_one_architecture_only():
    def rate(lv):
        return 0.3 if (lv["arch"] == "arm64" and lv["affinity"] == "spread") else 0.05

    cells = _cells(rate, {"arch": ["amd64", "arm64"], "affinity": ["compact", "spread"]}, runs=1000)
    report = explain(cells, ["arch", "affinity"])
    check = next(s for s in report.stratified if s.factor == "affinity" and s.within == "arch")
    assert check.breslow_day_p < 0.05
    assert "differs between" in check.says


def test_no_cells_and_constant_factors_give_an_empty_model():
    report = explain([Cell({"cpus": "1"}, 0, 10)], ["cpus"])
    assert report.factors == []
    assert report.constant == {"cpus": "1"}


def test_no_hang_at_all_is_said_and_not_fitted():
    report = explain([Cell({"cpus": c}, 0, 10) for c in ("1", "2")], ["cpus"])
    assert report.factors == []
    assert report.says == ["no counted run hung: nothing to explain"]
