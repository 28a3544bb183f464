"""Tiered decay of transition counts (DESIGN.md §3). Pure: no I/O.

Counts are integers in units of ``1/COUNT_SCALE``. Every ``checkpoint_runs`` runs each edge loses
a fraction by tier: counts ≤ 1 are untouched, ≤ 5 and ≤ 20 decay very lightly, > 20 decay 1 %.
Row totals are recomputed as the sum of their edges, so they always stay consistent.

>>> decay_count(1000, (1000, 2500, 10000), 1000)     # count 1: untouched
1000
>>> decay_count(100_000, (1000, 2500, 10000), 1000)  # count 100: -1 %
99000
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["decay_count", "decay_edges", "row_totals"]


def decay_count(count: int, ppm: tuple[int, int, int], scale: int) -> int:
    low, mid, high = ppm
    if count <= scale:
        return count
    if count <= 5 * scale:
        rate = low
    elif count <= 20 * scale:
        rate = mid
    else:
        rate = high
    return count - (count * rate) // 1_000_000


def decay_edges(edges: Mapping[str, int], ppm: tuple[int, int, int], scale: int) -> dict[str, int]:
    return {edge: decay_count(c, ppm, scale) for edge, c in edges.items()}


def row_totals(edges: Mapping[str, int]) -> dict[str, int]:
    """Sum of outgoing counts per from-node; edge fields are ``from<TAB>to``."""
    rows: dict[str, int] = {}
    for edge, c in edges.items():
        src = edge.split("\t", 1)[0]
        rows[src] = rows.get(src, 0) + c
    return rows
