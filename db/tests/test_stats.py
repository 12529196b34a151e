import pytest
from hypothesis import given
from hypothesis import strategies as st
from reprofarm_db import hit_rates, stats
from reprofarm_db.engine import transaction
from reprofarm_db.errors import Invalid
from reprofarm_db.models import Job, Run
from sqlalchemy import select


def add_runs(s, agent_id, hw, go, outcomes, *, iterations=1000, seconds=60.0):
    job = s.get(Job, 1) or Job(id=1, spec={}, status="done")
    s.add(job)
    s.flush()
    for status in outcomes:
        s.add(
            Run(
                job_id=1,
                status=status,
                scenario="pipe-close-race",
                go_version=go,
                cpus=2,
                affinity="compact",
                agent_id=agent_id,
                hardware_config_id=hw,
                iterations=iterations,
                duration_s=seconds,
                selector={},
            )
        )


@pytest.fixture
def two_configs(sessions):
    from tests.factories import register_agent

    with transaction(sessions) as s:
        a, _ = register_agent(s, "arm")
        b, _ = register_agent(s, "x64", arch="amd64")
        # arm: 3 hung of 10 counted, plus 2 errors and 1 lost that must not count
        add_runs(
            s,
            a.id,
            a.hardware_config_id,
            "1.27.3",
            ["hung"] * 3 + ["passed"] * 6 + ["failed"] + ["error"] * 2 + ["lost"],
        )
        add_runs(s, b.id, b.hardware_config_id, "1.27.3", ["passed"] * 10)
    return sessions


def test_rates_follow_the_definitions(two_configs):
    with transaction(two_configs) as s:
        rows = {
            r.keys["hardware_label"].split(" (")[0]: r.as_dict()
            for r in stats.group_runs(s, group_by=["hardware"])
        }
    arm = rows["cpu of arm"]
    assert (arm["runs"], arm["hangs"], arm["failed"], arm["errors"], arm["lost"]) == (
        10,
        3,
        1,
        2,
        1,
    )
    assert arm["hit_rate"] == 0.3
    assert arm["ci95_low"] == pytest.approx(0.10779, abs=1e-5)
    assert arm["ci95_high"] == pytest.approx(0.60322, abs=1e-5)
    assert arm["hangs_per_million_iterations"] == pytest.approx(300.0)  # 3 / 10,000
    assert arm["hangs_per_run_hour"] == pytest.approx(18.0)  # 3 in 10 minutes
    assert arm["runs_for_95pct"] == 9  # ceil(ln 0.05 / ln 0.7) = ceil(8.4)
    x64 = rows["cpu of x64"]
    assert (x64["hangs"], x64["hit_rate"], x64["ci95_low"]) == (0, 0.0, 0.0)
    assert x64["ci95_high"] == pytest.approx(0.27753, abs=1e-5)  # still an upper bound
    assert x64["runs_for_95pct"] is None


def test_fisher_comparison_with_bh_q_values(two_configs):
    with transaction(two_configs) as s:
        rows = stats.group_runs(s, group_by=["hardware", "go_version"])
        comparisons = hit_rates.compare(rows, key="hardware")
    (c,) = comparisons
    # Fisher exact, two-sided, [[3, 7], [0, 10]]: p = 0.2105 (hand-computed from
    # the hypergeometric distribution).
    assert c["p_value"] == pytest.approx(0.21053, abs=1e-4)
    assert c["q_value"] == pytest.approx(c["p_value"])


def test_unknown_group_keys_are_refused():
    with pytest.raises(Invalid, match="'colour' is not one of"):
        stats._check_keys(["colour"], "group_by")


def test_benjamini_hochberg_matches_a_worked_example():
    # p = .01 .04 .03 .005 -> sorted .005 .01 .03 .04, q = p*n/rank, monotone from the top
    assert hit_rates.benjamini_hochberg([0.01, 0.04, 0.03, 0.005]) == pytest.approx(
        [0.02, 0.04, 0.04, 0.02]
    )


def test_agents_that_disagree_beyond_chance_are_flagged():
    # One public report: 11 to 34 hangs in five 5000-iteration runs on one machine.
    assert hit_rates.agents_disagree_p([(11, 100), (34, 100)]) < 0.01
    assert hit_rates.agents_disagree_p([(20, 100), (22, 100)]) > 0.5
    assert hit_rates.agents_disagree_p([(0, 10), (0, 10)]) is None


@given(st.lists(st.floats(0, 1), min_size=1, max_size=50))
def test_q_values_are_probabilities_not_below_their_p(pvalues):
    q = hit_rates.benjamini_hochberg(pvalues)
    assert all(p <= qq + 1e-12 and qq <= 1 for p, qq in zip(pvalues, q, strict=True))


def test_label_groups_show_pending_hangs_and_the_label_filter_counts_only_this_bug(two_configs):
    with transaction(two_configs) as s:
        hung = s.scalars(select(Run).where(Run.status == "hung").order_by(Run.id)).all()
        hung[0].label, hung[0].signature = "cancelioex-sync-io", "cancelioex-sync-io:x"
        hung[1].label, hung[1].signature = "control-deadlock", "control-deadlock:y"
        for run in s.scalars(select(Run).where(Run.status.in_(("passed", "failed")))):
            run.label = "no-hang"
    with transaction(two_configs) as s:
        rows = stats.group_runs(s, group_by=["label"])
        by_label = {r.keys["label"]: (r.counts.runs, r.counts.hangs) for r in rows}
        assert by_label["pending"] == (1, 1)  # hung, not analysed yet
        assert by_label["cancelioex-sync-io"] == (1, 1)
        assert by_label["no-hang"] == (17, 0)
        (arm,) = [
            r
            for r in stats.group_runs(s, group_by=["hardware"], label="cancelioex-sync-io")
            if r.counts.hangs
        ]
        # this bug's rate: 1 hang in the same 10 counted runs; other hangs count as runs
        assert (arm.counts.runs, arm.counts.hangs) == (10, 1)


@given(
    st.lists(
        st.tuples(st.integers(0, 60), st.integers(0, 60)).map(lambda t: (t[0], t[0] + t[1])),
        min_size=2,
        max_size=12,
    )
)
def test_the_direct_chi_square_gives_scipys_p_value(per_agent):
    from scipy.stats import chi2_contingency

    rows = [(h, n - h) for h, n in per_agent if n > 0]
    ours = hit_rates.agents_disagree_p(per_agent)
    if len(rows) < 2 or not sum(h for h, _ in rows) or not sum(m for _, m in rows):
        assert ours is None
        return
    expected = chi2_contingency(rows)[1]
    assert ours == pytest.approx(expected, rel=1e-9, abs=1e-12)
