import pytest
from hypothesis import given
from hypothesis import strategies as st
from reprofarm_protocol.rates import wilson_interval


@pytest.mark.parametrize(
    ("hits", "trials", "low", "high"),
    [
        # Hand-computed: centre = (p + z²/2n)/(1 + z²/n), half-width as in Wilson (1927).
        (0, 10, 0.0, 0.27753),
        (5, 10, 0.23659, 0.76341),
        (3, 3, 0.43850, 1.0),
        (1, 100, 0.00177, 0.05449),
    ],
)
def test_wilson_matches_hand_computed_values(hits, trials, low, high):
    got_low, got_high = wilson_interval(hits, trials)
    assert got_low == pytest.approx(low, abs=5e-5)
    assert got_high == pytest.approx(high, abs=5e-5)


def test_zero_hits_still_give_an_upper_bound():
    _, high = wilson_interval(0, 1000)
    assert 0 < high < 0.004


@pytest.mark.parametrize(("hits", "trials"), [(1, 0), (-1, 5), (6, 5)])
def test_impossible_counts_are_refused(hits, trials):
    with pytest.raises(ValueError, match="must be"):
        wilson_interval(hits, trials)


@given(st.integers(1, 10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_interval_contains_the_observed_rate(case):
    hits, trials = case
    low, high = wilson_interval(hits, trials)
    assert 0.0 <= low <= hits / trials <= high <= 1.0
