"""Hit rates and the tests on them, from counts alone (no database): what every number on
the dashboard and in `stats` means. ``stats`` makes the counts; this module is the math.

Definitions (docs/statistics.md):
- counted runs = passed + hung + failed; ``error``, ``lost`` and ``cancelled``
  runs never enter a denominator;
- hit rate = hangs / counted runs, with the Wilson 95% interval;
- hangs per million iterations, and per run-hour (summed run durations);
- runs for 95%: how many runs give a 95% chance to see at least one hang at
  the observed rate, ceil(ln 0.05 / ln(1 - p));
- comparisons: Fisher's exact test (two-sided) between two groups that differ
  in one key, with Benjamini-Hochberg q-values over all comparisons made;
- agents disagree: within a group, a chi-square test of homogeneity of the
  per-agent hit rates (p < 0.01): more spread than binomial chance allows.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reprofarm_protocol.rates import wilson_interval
from scipy.special import chdtrc  # type: ignore[import-untyped]

from reprofarm_db.errors import Invalid

DISAGREE_P = 0.01


@dataclass
class Counts:
    runs: int = 0
    hangs: int = 0
    failed: int = 0
    passed: int = 0
    errors: int = 0
    lost: int = 0
    iterations: int = 0
    run_seconds: float = 0.0

    def add(self, other: Counts) -> None:
        """Add a disjoint group's counts (field by field, spelled out: a map row's
        total folds thousands of cells, and a loop over ``fields()`` was a fifth of
        the overview's time)."""
        self.runs += other.runs
        self.hangs += other.hangs
        self.failed += other.failed
        self.passed += other.passed
        self.errors += other.errors
        self.lost += other.lost
        self.iterations += other.iterations
        self.run_seconds += other.run_seconds


@dataclass
class Spread:
    """A group's per-agent (hangs, runs), reduced to the sums the test of "these
    agents share one hit rate" needs, so that the database can fold thousands of
    per-agent rows into one row per group.

    For agents with n_i > 0 runs and h_i hangs (H and N the totals, M = N - H),
    Pearson's statistic on the agents x (hang, no hang) table is
    X^2 = N^2 / (H M) * (sum h_i^2 / n_i - H^2 / N). With two agents every cell is
    off its expectation by the same d, and d^2 = (sum h_i^2/n_i - H^2/N) / sum 1/n_i,
    which is what Yates' correction needs."""

    agents: int = 0
    hangs_sq_per_run: float = 0.0  # sum of h_i^2 / n_i
    inverse_runs: float = 0.0  # sum of 1 / n_i

    def add(self, hangs: int, runs: int) -> None:
        if runs > 0:
            self.agents += 1
            self.hangs_sq_per_run += hangs * hangs / runs
            self.inverse_runs += 1 / runs

    @classmethod
    def of(cls, per_agent: Sequence[tuple[int, int]]) -> Spread:
        spread = cls()
        for hangs, runs in per_agent:
            spread.add(hangs, runs)
        return spread

    def p_value(self, hangs: int, runs: int) -> float | None:
        """p of "these agents share one hit rate"; None when untestable. The same
        numbers as scipy's ``chi2_contingency`` (Yates for two agents)."""
        others = runs - hangs
        if self.agents < 2 or hangs == 0 or others == 0:
            return None
        spread = max(0.0, self.hangs_sq_per_run - hangs * hangs / runs)
        scale = runs * runs / (hangs * others)
        if self.agents == 2:
            d = math.sqrt(spread / self.inverse_runs)
            stat = scale * (d - min(0.5, d)) ** 2 * self.inverse_runs
        else:
            stat = scale * spread
        return float(chdtrc(self.agents - 1, stat))


@dataclass
class GroupRow:
    keys: dict[str, Any]
    counts: Counts
    spread: Spread = field(default_factory=Spread)

    def as_dict(self) -> dict[str, Any]:
        c = self.counts
        out: dict[str, Any] = dict(self.keys)
        out.update(
            runs=c.runs,
            hangs=c.hangs,
            failed=c.failed,
            passed=c.passed,
            errors=c.errors,
            lost=c.lost,
            iterations=c.iterations,
        )
        rate = c.hangs / c.runs if c.runs else None
        low, high = wilson_interval(c.hangs, c.runs) if c.runs else (None, None)
        out.update(hit_rate=rate, ci95_low=low, ci95_high=high)
        out["hangs_per_million_iterations"] = c.hangs / c.iterations * 1e6 if c.iterations else None
        out["hangs_per_run_hour"] = c.hangs / (c.run_seconds / 3600) if c.run_seconds else None
        out["runs_for_95pct"] = runs_for_95pct(rate)
        p = self.spread.p_value(c.hangs, c.runs)
        out["agents"] = self.spread.agents
        out["agents_disagree_p"] = p
        out["agents_disagree"] = p is not None and p < DISAGREE_P
        return out


def runs_for_95pct(rate: float | None) -> int | None:
    if not rate:
        return None
    if rate >= 1:
        return 1
    return math.ceil(math.log(0.05) / math.log(1 - rate))


def agents_disagree_p(per_agent: Sequence[tuple[int, int]]) -> float | None:
    """p-value of "these agents share one hit rate" from (hangs, runs) per agent."""
    hangs = sum(h for h, n in per_agent if n > 0)
    runs = sum(n for _, n in per_agent if n > 0)
    return Spread.of(per_agent).p_value(hangs, runs)


def fisher_p(a: Counts, b: Counts) -> float:
    """Two-sided Fisher's exact test of equal hit rates."""
    # scipy.stats costs an api process ~50 MB: loaded by the first comparison, not at start.
    from scipy.stats import fisher_exact  # type: ignore[import-untyped]

    _odds, p = fisher_exact([[a.hangs, a.runs - a.hangs], [b.hangs, b.runs - b.hangs]])
    return float(p)


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """q-values controlling the false discovery rate over many comparisons."""
    n = len(pvalues)
    order = sorted(range(n), key=lambda i: pvalues[i])
    q = [0.0] * n
    running = 1.0
    for rank in range(n, 0, -1):
        i = order[rank - 1]
        running = min(running, pvalues[i] * n / rank)
        q[i] = running
    return q


def compare(
    rows: Sequence[GroupRow], *, key: str, max_pairs: int | None = None
) -> list[dict[str, Any]]:
    """Fisher's test between every two groups that differ only in ``key``,
    with Benjamini-Hochberg q-values over all of them. More than ``max_pairs`` pairs is
    refused before any test runs (2,000 configurations compared by hardware are two
    million tests: one request must not hold a database slot for that)."""
    if not rows or key not in rows[0].keys:
        raise Invalid("compare", f"{key!r} must be one of the group_by keys")
    buckets: dict[tuple[Any, ...], list[GroupRow]] = defaultdict(list)
    for r in rows:
        if not r.counts.runs:
            continue
        rest = tuple((k, v) for k, v in sorted(r.keys.items()) if k not in (key, "hardware_label"))
        buckets[rest].append(r)
    wanted = sum(len(m) * (len(m) - 1) // 2 for m in buckets.values())
    if max_pairs is not None and wanted > max_pairs:
        raise Invalid(
            "compare",
            f"comparing across {key} makes {wanted} pairs of groups, more than the "
            f"{max_pairs} one request may test (REPROFARM_MAX_COMPARE_PAIRS); narrow it "
            f"(job_id, label, signature) or compare across a key with fewer values",
        )
    pairs = []
    for members in buckets.values():
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                if a.counts.runs and b.counts.runs:
                    pairs.append((a, b, fisher_p(a.counts, b.counts)))
    qs = benjamini_hochberg([p for _, _, p in pairs])
    return [
        {
            "a": a.keys,
            "b": b.keys,
            "a_hits": [a.counts.hangs, a.counts.runs],
            "b_hits": [b.counts.hangs, b.counts.runs],
            "p_value": p,
            "q_value": q,
        }
        for (a, b, p), q in zip(pairs, qs, strict=True)
    ]
