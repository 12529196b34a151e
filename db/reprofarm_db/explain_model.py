"""Which factor explains the hit rate: the model behind ``explain``, from counts per cell
alone (no database: reprofarm_db.explain makes the cells). Definitions in
docs/statistics.md, "Explain".

- The model: hangs of runs per cell ~ Binomial, logit(rate) = intercept + one effect per
  level of each factor (treatment coding against the level with the most runs), fitted
  with Firth's penalty (reprofarm_db.firth) because all-or-nothing cells are common.
- Aliasing: factors the cells cannot separate are found before fitting and never get an
  effect each. Two factors whose levels map one to one (every arm64 cell is a hyper-v
  cell) are merged into one factor named by both; a level whose indicator is a linear
  combination of other columns (the design matrix loses rank: one CPU model is the only
  arm64 one) gets no effect. Both are reported with the cells that would separate them.
- Per factor: the penalised likelihood-ratio test (Heinze & Schemper 2002: the factor's
  coefficients fixed at 0 inside the full model's penalty, as logistf does), with
  Benjamini-Hochberg q-values over the factors. Per level: the odds ratio against the
  reference with a Wald 95% interval on the penalised fit (not profile-likelihood:
  Wald is symmetric on the log scale and somewhat too narrow in small separated cells).
- Overdispersion between machines of one configuration: Pearson's chi-square of the
  machines' rates within each cell, summed; when its scale (chi2/df) exceeds 1 with
  p < 0.05, intervals widen by sqrt(scale) and the LR tests become F tests
  (quasi-binomial), and the report says so.
- Stratified checks: for each pair of factors, the strongest contrast of one within the
  levels of the other: Cochran-Mantel-Haenszel (is there an effect once the other is held
  fixed?) and Breslow-Day (is the odds ratio the same in every stratum?) with statsmodels'
  StratifiedTable.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product

import numpy as np
from scipy.special import chdtrc, fdtrc  # type: ignore[import-untyped]
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from reprofarm_db import firth
from reprofarm_db.hit_rates import benjamini_hochberg

Z95 = 1.959963984540054
OVERDISPERSED_P = 0.05
MAX_SEPARATING = 12  # cells listed as "add these to separate"


@dataclass(frozen=True)
class Cell:
    """Runs of one configuration: its level of each factor, its counts, and the
    Pearson chi-square of its machines' rates around the cell's rate (with its df)."""

    levels: Mapping[str, str]
    hangs: int
    runs: int
    machines_chi2: float = 0.0
    machines_df: int = 0


@dataclass
class Level:
    level: str
    runs: int
    hangs: int
    reference: bool = False
    odds_ratio: float | None = None
    ci95_low: float | None = None
    ci95_high: float | None = None
    aliased_with: list[str] = field(default_factory=list)


@dataclass
class Factor:
    factor: str
    levels: list[Level]
    aliased_with: list[str] = field(default_factory=list)  # merged: one effect for all
    df: int = 0
    statistic: float | None = None
    p: float | None = None
    q: float | None = None


@dataclass
class Aliasing:
    factors: list[str]
    says: str
    separate_with: list[dict[str, str]]  # cells (levels) that, once run, separate them


@dataclass
class Stratified:
    factor: str
    level: str
    reference: str
    within: str
    strata: int
    cmh_p: float | None
    breslow_day_p: float | None
    says: str


@dataclass
class Report:
    runs: int
    hangs: int
    cells: int
    factors: list[Factor]
    constant: dict[str, str]
    aliasing: list[Aliasing]
    stratified: list[Stratified]
    dispersion: float | None
    dispersion_df: int
    dispersion_p: float | None
    widened: bool
    interval: str = "Wald on the Firth-penalised fit"
    says: list[str] = field(default_factory=list)

    @property
    def aliased(self) -> list[list[str]]:
        return [a.factors for a in self.aliasing]


def _exp(x: float) -> float:
    """e^x capped below float overflow (a JSON number, never inf)."""
    return math.exp(min(float(x), 700.0))


def _finite(x: float) -> float | None:
    """A p-value, or None where the test is undefined (NaN: JSON has no NaN)."""
    return float(x) if math.isfinite(x) else None


def _sort_key(level: str) -> tuple[int, float, str]:
    try:
        return (0, float(level), level)
    except ValueError:
        return (1, 0.0, level)


def _merge_aliased(
    rows: dict[tuple[str, ...], list[int]], names: list[str]
) -> tuple[list[list[int]], list[Aliasing]]:
    """Groups of factor indexes whose levels map one to one over the observed cells."""
    parent = list(range(len(names)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            ij = {(key[i], key[j]) for key in rows}
            if len({a for a, _ in ij}) == len(ij) == len({b for _, b in ij}):
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(names)):
        groups[root(i)].append(i)
    aliasing = []
    for members in groups.values():
        if len(members) < 2:
            continue
        seen = {tuple(key[m] for m in members) for key in rows}
        pairs = "; ".join(
            " with ".join(f"{names[m]}={c[k]}" for k, m in enumerate(members)) for c in sorted(seen)
        )
        levels = [sorted({key[m] for key in rows}, key=_sort_key) for m in members]
        missing = [c for c in product(*levels) if c not in seen][:MAX_SEPARATING]
        aliasing.append(
            Aliasing(
                factors=[names[m] for m in members],
                says=f"{' and '.join(names[m] for m in members)} cannot be told apart: every "
                f"cell has {pairs}. One effect is given for them together; run cells that "
                f"break the pairing to separate them.",
                separate_with=[{names[m]: c[k] for k, m in enumerate(members)} for c in missing],
            )
        )
    return list(groups.values()), aliasing


@dataclass
class _Design:
    x: np.ndarray
    hangs: np.ndarray
    runs: np.ndarray
    columns: list[tuple[int, str]]  # (model factor index, level) of each column after 0
    keys: list[tuple[str, ...]]


def _design(rows: dict[tuple[str, ...], list[int]], refs: list[str]) -> _Design:
    keys = list(rows)
    levels = [sorted({k[i] for k in keys} - {refs[i]}, key=_sort_key) for i in range(len(refs))]
    columns = [(i, lv) for i in range(len(refs)) for lv in levels[i]]
    x = np.ones((len(keys), 1 + len(columns)))
    for c, (i, lv) in enumerate(columns, start=1):
        x[:, c] = [k[i] == lv for k in keys]
    counts = np.array([rows[k] for k in keys], dtype=float)
    return _Design(x, counts[:, 0], counts[:, 1], columns, keys)


def _independent(x: np.ndarray) -> tuple[list[int], dict[int, list[int]]]:
    """Columns kept (each adds rank) and, for each dropped one, the kept columns it is a
    combination of. Gram-Schmidt against the kept columns, twice for stability: one
    projection per column instead of a rank (an SVD) per column, which a CPU model with
    hundreds of levels needs."""
    kept = [0]
    basis = [x[:, 0] / np.linalg.norm(x[:, 0])]
    dropped: dict[int, list[int]] = {}
    for c in range(1, x.shape[1]):
        column = x[:, c]
        residual = column.copy()
        for _twice in range(2):
            q = np.column_stack(basis)
            residual = residual - q @ (q.T @ residual)
        if np.linalg.norm(residual) > 1e-9 * max(1.0, float(np.linalg.norm(column))):
            kept.append(c)
            basis.append(residual / np.linalg.norm(residual))
        else:
            coef, *_ = np.linalg.lstsq(x[:, kept], column, rcond=None)
            dropped[c] = [k for k, b in zip(kept, coef, strict=True) if abs(b) > 1e-8 and k]
    return kept, dropped


def _dispersion(cells: Sequence[Cell]) -> tuple[float | None, int, float | None]:
    total = sum(c.machines_chi2 for c in cells)
    df = sum(c.machines_df for c in cells)
    if df == 0:
        return None, 0, None
    return total / df, df, float(chdtrc(df, total))


def explain(cells: Sequence[Cell], factors: Sequence[str]) -> Report:
    """The report on these cells for these factors (the names ``levels`` uses).

    BLAS runs on one thread: the matrices are small (thousands of rows, tens of
    columns), and on a shared 2-core machine OpenBLAS's threads spin against each other
    and against the database: one product took 55 ms with them, 0.4 ms without."""
    with threadpool_limits(1, user_api="blas"):
        return _explain(cells, factors)


def _explain(cells: Sequence[Cell], factors: Sequence[str]) -> Report:
    cells = [c for c in cells if c.runs > 0]
    seen = {name: {c.levels[name] for c in cells} for name in factors}
    active = [name for name in factors if len(seen[name]) > 1]
    constant = {name: next(iter(seen[name])) for name in factors if len(seen[name]) == 1}
    runs = sum(c.runs for c in cells)
    hangs = sum(c.hangs for c in cells)
    phi, phi_df, phi_p = _dispersion(cells)
    widened = phi is not None and phi > 1 and phi_p is not None and phi_p < OVERDISPERSED_P
    report = Report(runs, hangs, len(cells), [], constant, [], [], phi, phi_df, phi_p, widened)
    if phi is not None and widened:
        report.says.append(
            f"machines of one configuration disagree more than chance allows (scale "
            f"{phi:.2f}, p={phi_p:.2g}): intervals are {math.sqrt(phi):.2f}x wider and the "
            f"factor tests are F tests"
        )
    if not active:
        return report
    if hangs in (0, runs):
        # Nothing varies, so nothing can explain it (and the penalised likelihood is
        # not concave then: a fit could stop on a saddle).
        report.says.append(
            f"{'no' if hangs == 0 else 'every'} counted run hung: nothing to explain"
        )
        return report
    rows: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0])
    for c in cells:
        row = rows[tuple(c.levels[name] for name in active)]
        row[0] += c.hangs
        row[1] += c.runs
    groups, report.aliasing = _merge_aliased(rows, active)
    merged: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0])
    for key, (h, n) in rows.items():
        row = merged[tuple(" / ".join(key[m] for m in g) for g in groups)]
        row[0] += h
        row[1] += n
    names = [active[g[0]] for g in groups]
    totals: list[dict[str, list[int]]] = [defaultdict(lambda: [0, 0]) for _ in groups]
    for key, (h, n) in merged.items():
        for i, lv in enumerate(key):
            totals[i][lv][0] += h
            totals[i][lv][1] += n
    refs = [min(t, key=lambda lv, t=t: (-t[lv][1], _sort_key(lv))) for t in totals]  # type: ignore[misc]
    d = _design(merged, refs)
    kept, dropped = _independent(d.x)
    _partial_aliasing(report, d, names, kept, dropped)
    x = d.x[:, kept]
    full = firth.fit(x, d.hangs, d.runs)
    scale = phi if widened and phi is not None else 1.0
    se = np.sqrt(np.diag(full.cov) * scale)
    position = {c: k for k, c in enumerate(kept)}
    for i, name in enumerate(names):
        mine = [
            position[c]
            for c, (fi, _lv) in enumerate(d.columns, start=1)
            if fi == i and c in position
        ]
        factor = Factor(name, [], [active[m] for m in groups[i][1:]], df=len(mine))
        if mine:
            restricted = firth.fit(x, d.hangs, d.runs, fixed_zero=mine)
            lr = max(0.0, 2 * (full.penalized_loglik - restricted.penalized_loglik))
            factor.statistic = lr
            if widened:
                factor.p = float(fdtrc(len(mine), phi_df, lr / (len(mine) * scale)))
            else:
                factor.p = float(chdtrc(len(mine), lr))
        for lv in sorted(totals[i], key=_sort_key):
            h, n = totals[i][lv]
            level = Level(lv, n, h, reference=lv == refs[i])
            if level.reference:
                level.odds_ratio = level.ci95_low = level.ci95_high = 1.0
            else:
                col = 1 + d.columns.index((i, lv))
                if col in position:
                    b, s = full.coef[position[col]], se[position[col]]
                    level.odds_ratio = _exp(b)
                    level.ci95_low = _exp(b - Z95 * s)
                    level.ci95_high = _exp(b + Z95 * s)
                else:
                    level.aliased_with = sorted({names[d.columns[k - 1][0]] for k in dropped[col]})
            factor.levels.append(level)
        report.factors.append(factor)
    tested = [fa for fa in report.factors if fa.p is not None]
    if tested:
        qs = benjamini_hochberg([fa.p for fa in tested if fa.p is not None])
        for fa, q in zip(tested, qs, strict=True):
            fa.q = float(q)
    report.factors.sort(key=lambda fa: (fa.p is None, fa.p if fa.p is not None else 1.0, fa.factor))
    report.stratified = _stratified(report.factors, merged, names)
    return report


def _partial_aliasing(
    report: Report, d: _Design, names: list[str], kept: list[int], dropped: dict[int, list[int]]
) -> None:
    """Say which levels have no effect of their own, and which cells would give one."""
    for c, basis in dropped.items():
        i, lv = d.columns[c - 1]
        others = sorted({d.columns[k - 1][0] for k in basis} - {i})
        where = [k for k in d.keys if k[i] == lv]
        separate = []
        for j in others:
            with_it = {k[j] for k in where}
            for other in sorted({k[j] for k in d.keys} - with_it, key=_sort_key):
                separate.append({names[i]: lv, names[j]: other})
        who = [names[j] for j in others]
        seen = ", ".join(f"{names[j]}={'/'.join(sorted({k[j] for k in where}))}" for j in others)
        report.aliasing.append(
            Aliasing(
                factors=[names[i], *who],
                says=f"{names[i]}={lv} cannot be told apart from {', '.join(who) or 'the rest'}"
                f" (its cells all have {seen}): its effect is the sum of theirs, so it gets "
                "no effect of its own; run it with other levels of "
                f"{', '.join(who)} to separate them",
                separate_with=separate[:MAX_SEPARATING],
            )
        )


def _stratified(
    factors: list[Factor], rows: dict[tuple[str, ...], list[int]], names: list[str]
) -> list[Stratified]:
    """For each factor's strongest contrast, CMH and Breslow-Day within each other factor."""
    # statsmodels (and the pandas it loads) costs an api process ~100 MB of memory: it is
    # loaded by the first explanation, not by every process at start (docs/operations.md).
    from statsmodels.stats.contingency_tables import (  # type: ignore[import-untyped]
        StratifiedTable,
    )

    found = []
    for fa in factors:
        i = names.index(fa.factor)
        ref = next(lv.level for lv in fa.levels if lv.reference)
        estimated = [lv for lv in fa.levels if not lv.reference and lv.odds_ratio is not None]
        if not estimated:
            continue
        top = max(estimated, key=lambda lv: abs(math.log(lv.odds_ratio or 1.0)))
        for j, within in enumerate(names):
            if j == i:
                continue
            strata: dict[str, np.ndarray] = defaultdict(lambda: np.zeros((2, 2)))
            for key, (h, n) in rows.items():
                if key[i] in (top.level, ref):
                    r = 0 if key[i] == top.level else 1
                    strata[key[j]][r] += (h, n - h)
            tables = [
                t
                for t in strata.values()
                if t[0].sum() > 0 and t[1].sum() > 0 and t[:, 0].sum() > 0 and t[:, 1].sum() > 0
            ]
            if not tables:
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                cmh = _finite(StratifiedTable(tables).test_null_odds(correction=True).pvalue)
                bd = None
                if len(tables) > 1:
                    equal = StratifiedTable(tables, shift_zeros=True).test_equal_odds()
                    bd = _finite(equal.pvalue)
            if cmh is None:
                continue
            says = f"{fa.factor}={top.level} vs {ref} within levels of {within}: CMH p={cmh:.2g}"
            # Breslow-Day is undefined when a stratum's odds ratio is 0 or infinite.
            if bd is not None:
                varies = "differs between" if bd < OVERDISPERSED_P else "is consistent across"
                says += f"; the odds ratio {varies} its levels (Breslow-Day p={bd:.2g})"
            found.append(Stratified(fa.factor, top.level, ref, within, len(tables), cmh, bd, says))
    return found
