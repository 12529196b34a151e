"""How many runs does a search study save over giving every cell the same number of runs?

    uv run python bench/allocation.py --cells bench/cells-example.csv --seed 1 [--repeat 50]

Reads a CSV of cells with their true per-run hang rates (columns `cell,rate`) and simulates,
on the same machines:
- adaptive: the search as a study runs it (reprofarm_db.study_rules): every round
  `pick_cells` fills `--slots` runs among the undecided cells; each run lands on one of
  the cell's `--machines` machines at random; after the round each cell's SPRT looks at
  its counts with phi estimated from its per-machine counts; decided cells (and cells at
  max_runs_per_cell) leave the pool;
- uniform: every cell gets `uniform_runs_per_cell` runs (n, cutoff c: the fixed-n test with
  the same error rates), round-robin over the cells; a cell is called at its n-th run.
Machines of a cell hang at rates drawn from a Beta with the cell's rate as mean and variance
D rate (1 - rate) (`--dispersion D`, the correlation of two runs on one machine; 0: identical
machines). A cell is misclassified when called `reproduces` at rate <= lo or `does-not` at
rate >= hi; cells strictly between may go either way.

`--allocation apt` or `random` swaps `pick_cells` for the APT index (Locatelli et al. 2016;
tau = (lo + hi) / 2, eps = (hi - lo) / 20) or a uniform pick among undecided cells, to show
what the choice of Thompson sampling buys (docs/statistics.md).

Target (issue 15): adaptive runs <= 1/3 of uniform, no more misclassified cells, the first
certified reproducing cell at least twice as soon. Prints a table per cell, then one JSON
line: runs_adaptive, runs_uniform, ratio, misclassified_*, undecided_* (outside the
indifference zone), first_certified_* (runs spent until the first cell is certified
`reproduces`), averaged over `--repeat` seeds.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reprofarm_db.study_rules import (
    CellDecision,
    SearchRule,
    cell_decision,
    overdispersion,
    pick_cells,
    uniform_runs_per_cell,
)

REPRODUCES, DOES_NOT, UNDECIDED = (
    CellDecision.REPRODUCES,
    CellDecision.DOES_NOT,
    CellDecision.UNDECIDED,
)


Picker = Callable[
    [Sequence[tuple[int, int]], int, SearchRule, random.Random, Sequence[float]], list[int]
]


def thompson(
    cells: Sequence[tuple[int, int]],
    slots: int,
    rule: SearchRule,
    rng: random.Random,
    phi: Sequence[float],
) -> list[int]:
    return pick_cells(cells, slots, rule, rng, phi=phi)


def apt(
    cells: Sequence[tuple[int, int]],
    slots: int,
    rule: SearchRule,
    rng: random.Random,
    phi: Sequence[float],
) -> list[int]:
    """The cell minimising sqrt(n) (|mean - tau| + eps), slot by slot."""
    tau, eps = (rule.lo + rule.hi) / 2, (rule.hi - rule.lo) / 20
    used = [0] * len(cells)
    picked = []
    for _ in range(slots):
        room = [i for i, (_, n) in enumerate(cells) if n + used[i] < rule.max_runs_per_cell]
        if not room:
            break
        best = min(
            room,
            key=lambda i: (
                math.sqrt(cells[i][1] + used[i])
                * (abs(cells[i][0] / max(1, cells[i][1]) - tau) + eps),
                rng.random(),
            ),
        )
        picked.append(best)
        used[best] += 1
    return picked


def at_random(
    cells: Sequence[tuple[int, int]],
    slots: int,
    rule: SearchRule,
    rng: random.Random,
    phi: Sequence[float],
) -> list[int]:
    room = [i for i, (_, n) in enumerate(cells) if n < rule.max_runs_per_cell]
    return [rng.choice(room) for _ in range(slots)] if room else []


PICKERS: dict[str, Picker] = {"thompson": thompson, "apt": apt, "random": at_random}


@dataclass
class Cell:
    name: str
    rate: float
    machines: list[float]  # per-machine hang rates
    hangs: list[int] = field(default_factory=list)
    runs: list[int] = field(default_factory=list)

    def run(self, rng: random.Random) -> None:
        m = rng.randrange(len(self.machines))
        self.runs[m] += 1
        self.hangs[m] += rng.random() < self.machines[m]

    @property
    def totals(self) -> tuple[int, int]:
        return sum(self.hangs), sum(self.runs)

    def phi(self) -> float:
        return overdispersion(list(zip(self.hangs, self.runs, strict=True)))


@dataclass
class Outcome:
    decisions: list[CellDecision]
    runs_per_cell: list[int]
    runs: int
    first_certified: int | None


def read_cells(path: Path) -> list[tuple[str, float]]:
    with path.open(newline="") as f:
        return [(row["cell"], float(row["rate"])) for row in csv.DictReader(f)]


def machine_rates(rate: float, machines: int, dispersion: float, rng: random.Random) -> list[float]:
    if dispersion == 0 or rate in (0.0, 1.0):
        return [rate] * machines
    k = 1 / dispersion - 1  # Beta(rate k, (1 - rate) k): mean rate, variance D rate (1 - rate)
    return [rng.betavariate(rate * k, (1 - rate) * k) for _ in range(machines)]


def fresh(cells: Sequence[Cell]) -> list[Cell]:
    n = len(cells[0].machines)
    return [Cell(c.name, c.rate, c.machines, [0] * n, [0] * n) for c in cells]


def adaptive(
    cells: list[Cell],
    rule: SearchRule,
    slots: int,
    budget: int,
    rng: random.Random,
    pick: Picker = thompson,
) -> Outcome:
    decisions = [UNDECIDED] * len(cells)
    open_ = list(range(len(cells)))
    spent = 0
    first = None
    while open_ and spent < budget:
        counts = [cells[i].totals for i in open_]
        phis = [cells[i].phi() for i in open_]
        picked = pick(counts, min(slots, budget - spent), rule, rng, phis)
        if not picked:
            break
        for j in picked:
            cells[open_[j]].run(rng)
        spent += len(picked)
        for i in sorted({open_[j] for j in picked}):
            hangs, runs = cells[i].totals
            decisions[i] = cell_decision(hangs, runs, rule, phi=cells[i].phi())
            if decisions[i] is REPRODUCES and first is None:
                first = spent
        open_ = [
            i
            for i in open_
            if decisions[i] is UNDECIDED and cells[i].totals[1] < rule.max_runs_per_cell
        ]
    return Outcome(decisions, [c.totals[1] for c in cells], spent, first)


def uniform(cells: list[Cell], n: int, c: int, budget: int, rng: random.Random) -> Outcome:
    decisions = [UNDECIDED] * len(cells)
    spent = 0
    first = None
    for _ in range(n):
        for i, cell in enumerate(cells):
            if spent >= budget:
                continue
            cell.run(rng)
            spent += 1
            hangs, runs = cell.totals
            # The fixed-n rule may certify a cell at its c-th hang (the rest of its n runs
            # cannot undo it); the runs are still spent, as a fixed matrix spends them.
            if hangs >= c and first is None:
                first = spent
            if runs == n:
                decisions[i] = REPRODUCES if hangs >= c else DOES_NOT
    return Outcome(decisions, [c.totals[1] for c in cells], spent, first)


def wrong(rate: float, decision: CellDecision, rule: SearchRule) -> bool:
    return (decision is REPRODUCES and rate <= rule.lo) or (
        decision is DOES_NOT and rate >= rule.hi
    )


def stuck(rate: float, decision: CellDecision, rule: SearchRule) -> bool:
    return decision is UNDECIDED and not rule.lo < rate < rule.hi


def mean_or_none(values: Sequence[int | None]) -> float | None:
    seen = [v for v in values if v is not None]
    return round(statistics.fmean(seen), 1) if seen else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=Path, required=True, help="CSV with columns cell,rate")
    parser.add_argument("--seed", type=int, default=1, help="first seed; repeats use the next")
    parser.add_argument("--repeat", type=int, default=1, help="simulated searches to average")
    parser.add_argument("--lo", type=float, default=SearchRule.lo, help="does-not at or below")
    parser.add_argument("--hi", type=float, default=SearchRule.hi, help="reproduces at or above")
    parser.add_argument("--alpha", type=float, default=SearchRule.alpha)
    parser.add_argument("--beta", type=float, default=SearchRule.beta)
    parser.add_argument("--max-runs", type=int, default=SearchRule.max_runs_per_cell)
    parser.add_argument("--slots", type=int, default=4, help="runs in flight (agents)")
    parser.add_argument("--machines", type=int, default=4, help="machines per cell")
    parser.add_argument("--dispersion", type=float, default=0.0, help="between-machine ICC")
    parser.add_argument("--budget", type=int, default=0, help="total runs per strategy (0: none)")
    parser.add_argument("--allocation", choices=sorted(PICKERS), default="thompson")
    args = parser.parse_args()
    rule = SearchRule(args.lo, args.hi, args.alpha, args.beta, args.max_runs)
    rows = read_cells(args.cells)
    n, c = uniform_runs_per_cell(rule)
    budget = args.budget or 10**12
    print(f"{len(rows)} cells; uniform design: {n} runs per cell, reproduces iff hangs >= {c}")

    results: dict[str, list[Outcome]] = {"adaptive": [], "uniform": []}
    for r in range(args.repeat):
        rng = random.Random(args.seed + r)
        cells = [
            Cell(name, rate, machine_rates(rate, args.machines, args.dispersion, rng))
            for name, rate in rows
        ]
        pick = PICKERS[args.allocation]
        results["adaptive"].append(adaptive(fresh(cells), rule, args.slots, budget, rng, pick))
        results["uniform"].append(uniform(fresh(cells), n, c, budget, rng))

    print("| cell | rate | adaptive runs | adaptive R/D/U | uniform runs | uniform R/D/U |")
    print("| --- | --- | --- | --- | --- | --- |")
    for i, (name, rate) in enumerate(rows):
        line = f"| {name} | {rate:g} |"
        for outcomes in results.values():
            runs = statistics.fmean(o.runs_per_cell[i] for o in outcomes)
            tally = [
                sum(o.decisions[i] is d for o in outcomes)
                for d in (REPRODUCES, DOES_NOT, UNDECIDED)
            ]
            line += f" {runs:.1f} | {'/'.join(map(str, tally))} |"
        print(line)

    figures: dict[str, object] = {
        "cells": len(rows),
        "repeat": args.repeat,
        "uniform_n": n,
        "uniform_c": c,
    }
    for name, outcomes in results.items():
        figures[f"runs_{name}"] = round(statistics.fmean(o.runs for o in outcomes), 1)
        figures[f"misclassified_{name}"] = statistics.fmean(
            sum(wrong(rate, o.decisions[i], rule) for i, (_, rate) in enumerate(rows))
            for o in outcomes
        )
        figures[f"undecided_{name}"] = statistics.fmean(
            sum(stuck(rate, o.decisions[i], rule) for i, (_, rate) in enumerate(rows))
            for o in outcomes
        )
        figures[f"first_certified_{name}"] = mean_or_none([o.first_certified for o in outcomes])
    runs = [statistics.fmean(o.runs for o in outcomes) for outcomes in results.values()]
    figures["ratio"] = round(runs[0] / runs[1], 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
