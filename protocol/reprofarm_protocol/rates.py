"""Hit-rate arithmetic that every part of the farm must compute the same way."""

from __future__ import annotations

import math

# z for a two-sided 95% interval: the 0.975 quantile of the standard normal.
Z95 = 1.959963984540054


def wilson_interval(hits: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    Chosen over the normal approximation because reproduction rates sit near
    zero, where that one collapses to [0, 0]; with zero hits Wilson still gives
    an upper bound (about 3.8/n for 95%), which is the number a team needs to
    say "not seen in n runs".
    """
    if trials <= 0:
        raise ValueError(f"trials must be positive, got {trials}")
    if not 0 <= hits <= trials:
        raise ValueError(f"hits must be between 0 and trials ({trials}), got {hits}")
    p = hits / trials
    z2 = z * z
    denom = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denom
    low = 0.0 if hits == 0 else max(0.0, centre - half)
    high = 1.0 if hits == trials else min(1.0, centre + half)
    return low, high
