"""Mode progression shadow → soft-lock → locked (DESIGN.md §3). Pure: no I/O.

Checked at every stability checkpoint (each ``checkpoint_runs`` runs). Modes only tighten here;
an operator resets a baseline explicitly.

>>> from models.params import EngineParams
>>> p = EngineParams(min_runs_soft=30, min_runs_locked=100)
>>> next_mode(SHADOW, runs=30, change=0.01, eligible=False, params=p)
(1, False)
>>> next_mode(SOFT_LOCK, runs=100, change=0.01, eligible=False, params=p)
(1, False)
>>> next_mode(SOFT_LOCK, runs=100, change=0.01, eligible=True, params=p)
(2, False)
>>> next_mode(SOFT_LOCK, runs=500, change=0.9, eligible=True, params=p)
(2, True)
"""

from __future__ import annotations

from collections.abc import Mapping

from models.params import EngineParams

__all__ = ["LOCKED", "MODE_NAMES", "SHADOW", "SOFT_LOCK", "distribution_change", "next_mode"]

SHADOW, SOFT_LOCK, LOCKED = 0, 1, 2
MODE_NAMES: tuple[str, ...] = ("shadow", "soft_lock", "locked")


def distribution_change(current: Mapping[str, int], previous: Mapping[str, int]) -> float:
    """Total variation distance between two edge-count distributions (0 = same, 1 = disjoint).

    An empty previous snapshot counts as a complete change (1.0).
    """
    total_c = 0
    for v in current.values():
        total_c += v
    total_p = 0
    for v in previous.values():
        total_p += v
    if total_c <= 0 or total_p <= 0:
        return 1.0
    acc = 0.0
    for edge, c in current.items():
        acc = acc + abs(c / total_c - previous.get(edge, 0) / total_p)
    for edge, c in previous.items():
        if edge not in current:
            acc = acc + c / total_p
    return acc / 2.0


def next_mode(
    mode: int, *, runs: int, change: float, eligible: bool, params: EngineParams
) -> tuple[int, bool]:
    """The mode after a checkpoint, and whether it was a forced promotion to locked."""
    stable = change < params.stability_for(runs)
    if mode == SHADOW and runs >= params.min_runs_soft and stable:
        mode = SOFT_LOCK
    if mode == SOFT_LOCK and eligible and runs >= params.min_runs_locked:
        if stable:
            return LOCKED, False
        if runs >= params.min_runs_locked + params.force_after_runs:
            return LOCKED, True
    return mode, False
