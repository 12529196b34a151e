"""Hit rates per group of runs, with the numbers a team can act on.

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
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reprofarm_protocol.analysis import PENDING_LABEL
from reprofarm_protocol.jobs import COUNTED_RUN_STATES, RunState
from reprofarm_protocol.rates import wilson_interval
from scipy.special import chdtrc  # type: ignore[import-untyped]
from scipy.stats import fisher_exact  # type: ignore[import-untyped]
from sqlalchemy import ColumnElement, Float, Subquery, and_, case, cast, func, select, true
from sqlalchemy.orm import Session

from reprofarm_db.analyses import signature_key
from reprofarm_db.errors import Invalid
from reprofarm_db.models import Agent, HardwareConfig, Run, RunRollup, hardware_label


def _pending_or(column: Any) -> Any:
    """A hung run not analysed yet is ``pending``; runs that did not count have none."""
    return case(
        (column.is_not(None), column),
        (Run.status == RunState.HUNG, PENDING_LABEL),
        else_=None,
    )


LABEL = _pending_or(Run.label)
SIGNATURE = _pending_or(Run.signature)

GROUP_KEYS: dict[str, Any] = {
    "hardware": Run.hardware_config_id,
    "cpus": Run.cpus,
    "affinity": Run.affinity,
    "go_version": Run.go_version,
    "scenario": Run.scenario,
    "pool": Run.pool,
    "agent": Run.agent_id,
    "label": LABEL,
    "signature": SIGNATURE,
}
COUNTED = tuple(sorted(COUNTED_RUN_STATES))
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


def _check_keys(group_by: Sequence[str], field: str) -> None:
    for key in group_by:
        if key not in GROUP_KEYS:
            raise Invalid(field, f"{key!r} is not one of {', '.join(GROUP_KEYS)}")


def _label_keys(session: Session, rows: list[GroupRow]) -> None:
    hw_ids = {r.keys["hardware"] for r in rows if r.keys.get("hardware") is not None}
    # Only the columns a label needs: the JSON descriptions of 2,000 configurations
    # cost more than the statistics themselves.
    configs = {
        c.id: c
        for c in session.execute(
            select(
                HardwareConfig.id,
                HardwareConfig.fingerprint,
                HardwareConfig.cpu_model,
                HardwareConfig.arch,
                HardwareConfig.logical_cpus,
                HardwareConfig.hypervisor,
                HardwareConfig.os,
            ).where(HardwareConfig.id.in_(hw_ids))
        )
    }
    agent_ids = {r.keys["agent"] for r in rows if r.keys.get("agent") is not None}
    names = dict(session.execute(select(Agent.id, Agent.name).where(Agent.id.in_(agent_ids))).all())
    # One label per configuration, not per row: a pair map has 30,000 rows.
    labels = {i: (c.fingerprint, hardware_label(c)) for i, c in configs.items()}
    for r in rows:
        if "hardware" in r.keys:
            r.keys["hardware"], r.keys["hardware_label"] = labels.get(
                r.keys["hardware"], (None, None)
            )
        if "agent" in r.keys:
            r.keys["agent"] = names.get(r.keys["agent"])


def group_runs(
    session: Session,
    *,
    group_by: Sequence[str],
    job_id: int | None = None,
    label: str | None = None,
    signature: str | None = None,
    source: str = "auto",
    only: Mapping[str, str] | None = None,
    hardware_ids: Collection[int] | None = None,
) -> list[GroupRow]:
    """One row per combination of the keys: counts, plus per-agent counts for the
    disagreement test.

    ``only`` keeps the runs whose ``scenario`` / ``go_version`` is the one given
    (a filter in the query itself, so a filtered dashboard map reads a fraction
    of the rollups); ``hardware_ids`` keeps the runs of those configurations (a
    page of the map).

    ``label`` / ``signature`` narrow what counts as a hang (the hit rate of *this*
    bug): other hangs still count as runs, as runs where this bug did not show.
    ``source``: ``rollups`` sums the counters of reprofarm_db.rollups (fast at
    millions of runs), ``scan`` aggregates the runs table (needed to filter by
    job), ``auto`` picks rollups unless a job is named. Both give the same rows."""
    _check_keys(group_by, "group_by")
    only = dict(only or {})
    for key in only:
        if key not in FILTER_KEYS:
            raise Invalid(key, f"only {', '.join(FILTER_KEYS)} filter this way")
    if source == "rollups" or (source == "auto" and job_id is None):
        if job_id is not None:
            raise Invalid("job_id", "the rollups have no job: use the scan")
        return _from_rollups(
            session,
            group_by=group_by,
            label=label,
            signature=signature,
            only=only,
            hardware_ids=hardware_ids,
        )
    return _scan(
        session,
        group_by=group_by,
        job_id=job_id,
        label=label,
        signature=signature,
        only=only,
        hardware_ids=hardware_ids,
    )


FILTER_KEYS = ("scenario", "go_version")


_ROLLUP_COLUMNS: dict[str, Any] = {
    "hardware": RunRollup.hardware_config_id,
    "cpus": RunRollup.cpus,
    "affinity": RunRollup.affinity,
    "go_version": RunRollup.go_version,
    "scenario": RunRollup.scenario,
    "pool": RunRollup.pool,
    "agent": RunRollup.agent_id,
    "label": RunRollup.label,
    "signature": RunRollup.signature_key,
}
_NONE_SENTINEL: dict[str, Any] = {"hardware": 0, "cpus": 0, "pool": "", "agent": 0, "label": ""}


def _integer_sum(column: Any) -> Any:
    """A sum of 64-bit counters as a double: Postgres sums bigints as ``numeric``,
    which doubled the time of a five-key grouping; a double holds every integer
    up to 2^53 exactly, far beyond any counter here."""
    return func.sum(cast(column, Float))


def _from_rollups(
    session: Session,
    *,
    group_by: Sequence[str],
    label: str | None,
    signature: str | None,
    only: Mapping[str, str],
    hardware_ids: Collection[int] | None,
) -> list[GroupRow]:
    r = RunRollup
    this_hang: ColumnElement[bool] = true()
    if label is not None:
        this_hang = and_(this_hang, r.label == label)
    if signature is not None:
        key = signature if signature == PENDING_LABEL else signature_key(signature)
        this_hang = and_(this_hang, r.signature_key == key)
    cols = [_ROLLUP_COLUMNS[k].label(k) for k in group_by]
    per_agent = (
        select(
            *cols,
            _integer_sum(case((this_hang, r.hung), else_=0)).label("_hangs"),
            _integer_sum(r.passed + r.hung + r.failed).label("_runs"),
            _integer_sum(r.failed).label("_failed"),
            _integer_sum(r.passed).label("_passed"),
            _integer_sum(r.errors).label("_errors"),
            _integer_sum(r.lost).label("_lost"),
            _integer_sum(r.iterations).label("_iterations"),
            func.sum(r.run_seconds).label("_seconds"),
        )
        .where(*(_ROLLUP_COLUMNS[k] == v for k, v in only.items()))
        .where(*([] if hardware_ids is None else [r.hardware_config_id.in_(hardware_ids)]))
        .group_by(*cols, r.agent_id)
        .subquery()
    )
    result = _groups(session, per_agent, group_by)
    for row in result:
        for k, none in _NONE_SENTINEL.items():
            if row.keys.get(k, None) == none and k in row.keys:
                row.keys[k] = None
    if "signature" in group_by:
        _signature_texts(session, result)
    _label_keys(session, result)
    return result


def _groups(session: Session, per_agent: Subquery, group_by: Sequence[str]) -> list[GroupRow]:
    """Fold per-(group, agent) counts into one row per group inside the database,
    with the sums ``Spread`` needs: Python then sees hundreds of rows, not the
    tens of thousands a grouping by five keys and agent makes at a million runs."""
    c = per_agent.c
    keys = [c[k] for k in group_by]
    counted = c._runs > 0
    query = select(
        *keys,
        func.sum(c._hangs),
        func.sum(c._runs),
        func.sum(c._failed),
        func.sum(c._passed),
        func.sum(c._errors),
        func.sum(c._lost),
        func.sum(c._iterations),
        func.sum(c._seconds),
        func.sum(case((counted, 1), else_=0)),
        func.sum(case((counted, cast(c._hangs, Float) * c._hangs / c._runs), else_=0.0)),
        func.sum(case((counted, 1.0 / cast(c._runs, Float)), else_=0.0)),
    ).group_by(*keys)
    rows = []
    for rec in session.execute(query):
        hangs, runs, failed, passed, errors, lost, iterations, seconds = rec[len(keys) : -3]
        agents, hangs_sq_per_run, inverse_runs = rec[-3:]
        counts = Counts(
            runs=int(runs or 0),
            hangs=int(hangs or 0),
            failed=int(failed or 0),
            passed=int(passed or 0),
            errors=int(errors or 0),
            lost=int(lost or 0),
            iterations=int(iterations or 0),
            run_seconds=float(seconds or 0.0),
        )
        if not (counts.runs or counts.errors or counts.lost):
            continue
        spread = Spread(int(agents or 0), float(hangs_sq_per_run or 0), float(inverse_runs or 0))
        rows.append(GroupRow(dict(zip(group_by, rec[: len(keys)], strict=True)), counts, spread))
    return rows


def _signature_texts(session: Session, rows: list[GroupRow]) -> None:
    """Rollups key signatures by their short hash; rows show the signature itself."""
    keys = {r.keys["signature"] for r in rows} - {"", PENDING_LABEL}
    texts = dict(
        session.execute(
            select(Run.signature_key, Run.signature).where(Run.signature_key.in_(keys)).distinct()
        ).all()
    )
    for r in rows:
        key = r.keys["signature"]
        r.keys["signature"] = None if key == "" else texts.get(key, key)


def _scan(
    session: Session,
    *,
    group_by: Sequence[str],
    job_id: int | None,
    label: str | None,
    signature: str | None,
    only: Mapping[str, str],
    hardware_ids: Collection[int] | None,
) -> list[GroupRow]:
    cols = [GROUP_KEYS[k].label(k) for k in group_by]
    is_hang: ColumnElement[bool] = Run.status == RunState.HUNG
    if label is not None:
        is_hang = and_(is_hang, LABEL == label)  # noqa: SIM300 - a column, not a constant
    if signature is not None:
        is_hang = and_(is_hang, SIGNATURE == signature)  # noqa: SIM300

    def n(condition: ColumnElement[bool]) -> Any:
        return func.sum(case((condition, 1), else_=0))

    counted = Run.status.in_(COUNTED)
    where: list[ColumnElement[bool]] = [Run.status.in_((*COUNTED, RunState.ERROR, RunState.LOST))]
    if job_id is not None:
        where.append(Run.job_id == job_id)
    where.extend(GROUP_KEYS[k] == v for k, v in only.items())
    if hardware_ids is not None:
        where.append(Run.hardware_config_id.in_(hardware_ids))
    per_agent = (
        select(
            *cols,
            n(is_hang).label("_hangs"),
            n(counted).label("_runs"),
            n(Run.status == RunState.FAILED).label("_failed"),
            n(Run.status == RunState.PASSED).label("_passed"),
            n(Run.status == RunState.ERROR).label("_errors"),
            n(Run.status == RunState.LOST).label("_lost"),
            _integer_sum(case((counted, Run.iterations), else_=0)).label("_iterations"),
            func.sum(case((counted, Run.duration_s), else_=0.0)).label("_seconds"),
        )
        .where(*where)
        .group_by(*cols, Run.agent_id)
        .subquery()
    )
    result = _groups(session, per_agent, group_by)
    _label_keys(session, result)
    return result


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
