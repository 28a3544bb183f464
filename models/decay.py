"""Decay of transition counts at every checkpoint (docs/design.md §3). Pure: no I/O.

Counts are integers in units of ``1/COUNT_SCALE``. Every ``checkpoint_runs`` runs each count loses
a fraction of itself:

- ``uniform`` (the default): every count loses the same fraction, so the ratio of any two counts
  (hence every transition probability) is kept; only the total weight of old history shrinks.
- ``tiered`` (the seeds' rule, selectable): counts <= 1 are untouched, <= 5 and <= 20 decay very
  lightly, > 20 decay 1 %. It inflates rare edges relative to frequent ones (a seen-once edge
  keeps its count while its row total shrinks), which measured as lost recall on HDFS
  (docs/detection.md).

Row totals are recomputed as the sum of their edges, so they always stay consistent.

>>> decay_count(1000, (1000, 2500, 10000), 1000)     # tiered, count 1: untouched
1000
>>> decay_count(100_000, (1000, 2500, 10000), 1000)  # tiered, count 100: -1 %
99000
>>> decay_count(1000, (10000, 10000, 10000), 1000, uniform=True)  # uniform, count 1: -1 %
990
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["decay_count", "row_totals"]


def decay_count(count: int, ppm: tuple[int, int, int], scale: int, *, uniform: bool = False) -> int:
    """``count`` after one checkpoint's decay (integer arithmetic, as ``lua/includes`` does it)."""
    low, mid, high = ppm
    if uniform:
        rate = high
    elif count <= scale:
        return count
    elif count <= 5 * scale:
        rate = low
    elif count <= 20 * scale:
        rate = mid
    else:
        rate = high
    return count - (count * rate) // 1_000_000


def row_totals(edges: Mapping[str, int]) -> dict[str, int]:
    """Sum of outgoing counts per from-node; edge fields are ``from<TAB>to``.

    >>> row_totals({"a\\tb": 2, "a\\tc": 3, "b\\tc": 1})
    {'a': 5, 'b': 1}
    """
    rows: dict[str, int] = {}
    for edge, c in edges.items():
        src = edge.split("\t", 1)[0]
        rows[src] = rows.get(src, 0) + c
    return rows
