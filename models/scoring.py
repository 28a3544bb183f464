"""Edge scores and the anomaly decision (docs/design.md §3). Pure: no I/O.

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
    "action_judged",
    "backoff_probability",
    "is_anomalous",
    "needs_backoff",
    "probability",
    "repeat_limit",
    "robust_stats",
    "score",
    "threshold",
    "window_stats",
]

#: Scales the median absolute deviation to a standard deviation under a normal distribution.
MAD_SCALE = 1.4826

_LN2 = math.log(2.0)


def probability(count: float, row_total: float) -> float:
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
    ceiling: float = math.inf,
) -> float:
    """Rolling threshold over the newest ``window`` scores (newest first), never over
    ``ceiling`` and never under ``floor`` (the floor wins where they cross).

    While fewer than ``window`` scores exist the fallback applies. ``robust``: median + sigma ×
    scaled MAD instead of mean + sigma × std.

    >>> threshold([14.0] * 5 + [0.0] * 5, window=10, sigma=3.0, fallback=3.0, floor=12.0,
    ...           robust=True, ceiling=18.0)
    18.0

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
    return max(floor, min(value, ceiling))


def needs_backoff(count: int, row_total: int, *, min_support: int, scale: int) -> bool:
    """Whether the node transition is too thin to trust alone: an edge never seen, or a from-node
    left fewer than ``min_support`` times.

    >>> needs_backoff(0, 50_000, min_support=20, scale=1000)
    True
    >>> needs_backoff(3000, 50_000, min_support=20, scale=1000)
    False
    >>> needs_backoff(3000, 5_000, min_support=20, scale=1000)
    True
    """
    return count == 0 or row_total < min_support * scale


def backoff_probability(
    p_fine: float,
    *,
    weight: float,
    act_count: int,
    act_row: int,
    node_count: int,
    node_row: int,
    node_p: float | None = None,
) -> float:
    """``max(p_fine, weight · p(action | previous action) · p(node | action))`` — Katz-style
    back-off to a coarser model that has seen more of the same kind.

    A rare payload shape of a common step, reached by a common step-to-step move, is likely; a
    step order never seen (a skipped or swapped step) or a shape never seen for its action
    stays unlikely. ``node_p`` replaces ``p(node | action)`` for a shape never seen for its
    action (its escape, ``models/escape.py``). Written in the order Lua computes it, so the
    doubles agree exactly.

    >>> backoff_probability(0.0, weight=1.0, act_count=90, act_row=100, node_count=1, node_row=10)
    0.09000000000000001
    >>> backoff_probability(0.0, weight=1.0, act_count=0, act_row=100, node_count=1, node_row=10)
    0.0
    """
    if weight <= 0 or act_row <= 0 or node_row <= 0:
        return p_fine
    if node_p is None:
        node_p = node_count / node_row
    coarse = weight * (act_count / act_row) * node_p
    return max(p_fine, coarse)


def repeat_limit(longest: int, *, factor: float, margin: int) -> int:
    """Back-to-back repeats of a node above which a run is anomalous: a margin over the longest
    repeat learned for that node (a loop of a length never seen, which the self-edge's own
    probability cannot show).

    >>> repeat_limit(4, factor=1.5, margin=2), repeat_limit(0, factor=1.5, margin=2)
    (8, 2)
    """
    return math.floor(factor * longest) + margin


def action_judged(
    anomalous: bool, *, act_count: int, act_row: int, epsilon: float, floor: float, rule: str
) -> bool:
    """The decision on a chain judged by its step order (unlearnable shapes, learnable action
    transitions): ``off_order`` is a move previous action → action scoring over ``floor`` bits
    (never seen, or as good as); rule "actions" decides by it alone, "both" adds it to the
    shape rule's ``anomalous``.

    >>> action_judged(False, act_count=0, act_row=50_000, epsilon=1e-6, floor=12.0, rule="both")
    True
    >>> action_judged(True, act_count=9_000, act_row=50_000, epsilon=1e-6, floor=12.0,
    ...               rule="actions")
    False
    """
    p = act_count / act_row if act_row > 0 else 0.0
    off_order = score(p, epsilon) > floor
    return off_order if rule == "actions" else (anomalous or off_order)


def is_anomalous(
    bits: float,
    limit: float,
    *,
    row_total: int,
    to_is_new: bool,
    min_support: int,
    scale: int,
    unlearnable: bool = False,
) -> bool:
    """``bits > limit``, except where the transitions cannot be judged.

    ``min_support`` > 0 (used when back-off is off): a from-node left fewer than ``min_support``
    times says little about which transitions are normal; there only a destination never seen in
    the chain counts as anomalous. ``unlearnable``: the same for every from-node of a chain whose
    rate of new transitions is too high to learn (``models.modes.is_unlearnable``).
    """
    if bits <= limit:
        return False
    if to_is_new:
        return True
    if unlearnable:
        return False
    return not (min_support > 0 and row_total < min_support * scale)
