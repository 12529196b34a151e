"""Summaries of many runs: the hit rate with its Wilson 95% interval."""

from __future__ import annotations

from collections.abc import Sequence

from reprofarm_protocol.rates import wilson_interval
from reprofarm_protocol.runs import RunResult, RunStatus, RunSummary


def summarize(results: Sequence[RunResult]) -> RunSummary:
    """``error`` runs are infrastructure failures: they never enter the
    denominator, so a broken agent cannot make the hang look rarer."""
    count = {s: sum(1 for r in results if r.status is s) for s in RunStatus}
    valid = len(results) - count[RunStatus.ERROR]
    hangs = count[RunStatus.HUNG]
    low = high = rate = None
    if valid:
        rate = hangs / valid
        low, high = wilson_interval(hangs, valid)
    return RunSummary(
        runs=len(results),
        hangs=hangs,
        passed=count[RunStatus.PASSED],
        failed=count[RunStatus.FAILED],
        errors=count[RunStatus.ERROR],
        hit_rate=rate,
        ci95_low=low,
        ci95_high=high,
        iterations=sum(r.iterations for r in results),
    )
