"""Significance of a throughput change: one-sided Mann-Whitney U on per-pass samples.

Benchmark tools that gate on speed (asv, Google benchmark, benchstat) use Mann-Whitney U on
the raw samples; it assumes nothing about their distribution. With few passes the exact
distribution is enumerated; beyond EXACT_LIMIT combinations a normal approximation with tie
correction is used. Statistics only: nothing here prints or reads files.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

EXACT_LIMIT = 200_000  # largest C(n+m, n) enumerated exactly


def _u_statistic(x: Sequence[float], y: Sequence[float]) -> float:
    """U of x against y: pairs where x > y, ties counting one half."""
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in x for b in y)


def mann_whitney_greater(x: Sequence[float], y: Sequence[float]) -> float:
    """p-value of the one-sided test 'x tends to be greater than y'.

    Small p means x is significantly larger (e.g. x = baseline rates, y = current rates: the
    current run is slower).
    """
    n, m = len(x), len(y)
    if n == 0 or m == 0:
        raise ValueError("both samples need at least one value")
    observed = _u_statistic(x, y)
    pooled = list(x) + list(y)
    if math.comb(n + m, n) <= EXACT_LIMIT:
        at_least = total = 0
        for chosen in itertools.combinations(range(n + m), n):
            picked = set(chosen)
            xs = [pooled[i] for i in chosen]
            ys = [pooled[i] for i in range(n + m) if i not in picked]
            total += 1
            if _u_statistic(xs, ys) >= observed - 1e-12:
                at_least += 1
        return at_least / total
    mean = n * m / 2.0
    counts: dict[float, int] = {}
    for value in pooled:
        counts[value] = counts.get(value, 0) + 1
    tie_term = sum(t ** 3 - t for t in counts.values()) / ((n + m) * (n + m - 1))
    variance = n * m / 12.0 * ((n + m + 1) - tie_term)
    if variance <= 0:
        return 1.0
    z = (observed - mean - 0.5) / math.sqrt(variance)  # continuity correction
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def minimum_p_value(n: int, m: int) -> float:
    """The smallest p-value the exact one-sided test can reach with n and m samples."""
    return 1.0 / math.comb(n + m, n)
