"""Edge scores and the anomaly decision (DESIGN.md §3). Pure: no I/O.

The Lua script ``lua/observe.lua`` computes exactly the same numbers (same formulas, same order of
floating-point operations); ``tests/integration/test_engine_agreement.py`` checks they agree.

>>> round(score(0.5, 1e-6), 4)
1.0
>>> round(score(0.0, 1e-6), 2)
19.93
>>> threshold([1.0] * 10, window=10, sigma=3.0, fallback=3.0, floor=0.0)
1.0
>>> threshold([1.0] * 9, window=10, sigma=3.0, fallback=3.0, floor=0.0)
3.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "MAD_SCALE",
    "is_anomalous",
    "probability",
    "robust_stats",
    "score",
    "threshold",
    "window_stats",
]

#: Scales the median absolute deviation to a standard deviation under a normal distribution.
MAD_SCALE = 1.4826

_LN2 = math.log(2.0)


def probability(count: int, row_total: int) -> float:
    """Transition probability ``count / row_total`` (0 for a from-node never left before)."""
    return count / row_total if row_total > 0 else 0.0


def score(p: float, epsilon: float) -> float:
    """Surprise in bits, ``-log2(p + ε)`` (written as ``-ln(x)/ln 2``, as Lua computes it)."""
    return -math.log(p + epsilon) / _LN2


def window_stats(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation, summed in the given order."""
    n = len(values)
    total = 0.0
    for v in values:
        total = total + v
    mean = total / n
    acc = 0.0
    for v in values:
        d = v - mean
        acc = acc + d * d
    return mean, math.sqrt(acc / n)


def _median(sorted_values: Sequence[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    if n % 2 == 1:
        return sorted_values[mid]
    return (sorted_values[mid - 1] + sorted_values[mid]) / 2.0


def robust_stats(values: Sequence[float]) -> tuple[float, float]:
    """Median and ``MAD_SCALE`` × median absolute deviation (a spread one outlier cannot move).

    >>> robust_stats([0.5, 0.5, 0.5, 0.5, 11.9])
    (0.5, 0.0)
    """
    ordered = sorted(values)
    med = _median(ordered)
    dev = sorted(abs(v - med) for v in values)
    return med, MAD_SCALE * _median(dev)


def threshold(
    recent: Sequence[float],
    *,
    window: int,
    sigma: float,
    fallback: float,
    floor: float,
    robust: bool = False,
) -> float:
    """Rolling threshold over the newest ``window`` scores (newest first), never under ``floor``.

    While fewer than ``window`` scores exist the fallback applies. ``robust``: median + sigma ×
    scaled MAD instead of mean + sigma × std.

    >>> threshold([0.5] * 9 + [11.9], window=10, sigma=3.0, fallback=3.0, floor=0.0) > 11
    True
    >>> threshold([0.5] * 9 + [11.9], window=10, sigma=3.0, fallback=3.0, floor=0.0, robust=True)
    0.5
    """
    if len(recent) < window:
        value = fallback
    else:
        center, spread = (robust_stats if robust else window_stats)(recent[:window])
        value = center + sigma * spread
    return max(floor, value)


def is_anomalous(
    bits: float, limit: float, *, row_total: int, to_is_new: bool, min_support: int, scale: int
) -> bool:
    """``bits > limit``, except out of from-nodes with too little support to judge.

    A from-node left fewer than ``min_support`` times says little about which transitions are
    normal; there only a destination never seen in the chain counts as anomalous.
    """
    if bits <= limit:
        return False
    if min_support > 0 and row_total < min_support * scale and not to_is_new:
        return False
    return True
