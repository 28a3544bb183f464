"""Mode progression shadow → soft-lock → locked (docs/design.md §3). Pure: no I/O.

Checked at every stability checkpoint (each ``checkpoint_runs`` runs). Modes only tighten here;
an operator resets a baseline explicitly.

>>> from models.params import EngineParams
>>> p = EngineParams(min_runs_soft=30, min_runs_locked=100)
>>> next_mode(SHADOW, runs=30, change=0.01, eligible=False, params=p)
(1, False)
>>> next_mode(SOFT_LOCK, runs=100, change=0.01, eligible=False, params=p)
(2, False)
>>> next_mode(SOFT_LOCK, runs=100, change=0.01, eligible=False, params=p, unlearnable=True)
(1, False)
>>> next_mode(SOFT_LOCK, runs=100, change=0.01, eligible=False,
...           params=p.replace(lock_when_stable=False))
(1, False)
>>> next_mode(SOFT_LOCK, runs=500, change=0.9, eligible=True, params=p)
(2, True)

Any chain may lock once it is stable (its distribution moved less than ``stability`` since the
last checkpoint), has ``min_runs_locked`` runs and is not *unlearnable*. Priority only matters
for a forced promotion: a high/critical-priority (or rich-mode) chain that never settles is
locked anyway ``force_after_runs`` later, with a wider sigma. An unlearnable chain — one whose
rate of never-seen transitions stays above ``novelty_limit`` — never locks: its baseline cannot
tell a normal call from an abnormal one, so enforcing it would only pause normal work. It is
judged only until the chain locks: a locked chain's new transitions are anomalies held back from
learning, and they must not talk the chain out of judging them.
"""

from __future__ import annotations

from collections.abc import Mapping

from models.params import EngineParams

__all__ = [
    "LOCKED",
    "MODE_NAMES",
    "SHADOW",
    "SOFT_LOCK",
    "distribution_change",
    "is_unlearnable",
    "next_mode",
]

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


def is_unlearnable(new: int, seen: int, *, runs: int, params: EngineParams) -> bool:
    """Whether a chain's rate of never-seen transitions, ``new / seen`` (both smoothed over
    checkpoints), is above ``novelty_limit`` once it has ``min_runs_soft`` runs.

    >>> p = EngineParams(novelty_limit=0.05, min_runs_soft=30)
    >>> is_unlearnable(6, 100, runs=40, params=p), is_unlearnable(4, 100, runs=40, params=p)
    (True, False)
    >>> is_unlearnable(60, 100, runs=20, params=p)   # too young to judge
    False
    """
    if params.novelty_limit <= 0 or seen <= 0 or runs < params.min_runs_soft:
        return False
    return new / seen > params.novelty_limit


def next_mode(
    mode: int,
    *,
    runs: int,
    change: float,
    eligible: bool,
    params: EngineParams,
    unlearnable: bool = False,
    novelty: float = 0.0,
    by_action: bool = False,
    floor: int = SHADOW,
) -> tuple[int, bool]:
    """The mode after a checkpoint, and whether it was a forced promotion to locked.

    ``novelty``: the chain's current rate of never-seen transitions; it locks (unforced) only
    when that is at most ``lock_novelty``. ``by_action``: the chain is unlearnable but judged on
    its step order (``unlearnable_rule``), so it leaves shadow by volume: its shape distribution
    never settles, and need not. ``floor``: the mode the chain acted by in shadow (a service new
    to an agent established elsewhere, models/mode_floors.py): a chain that leaves shadow takes
    it as its own — it learned under that mode, its anomalies held back, so its baseline is
    what a chain of that mode would have learned, and a mode below the one it acted by would
    let its next anomalies through (Dec 4 attack run, round 5). An unlearnable chain too: under
    a floor it learned only what was not anomalous or what a person approved, so a high rate of
    new transitions there was made by shapes the escape let through — one approved call and
    its key subsets (round 6) — and soft-locking it would let it learn what it flags; once
    locked, a chain is judged on every transition again.

    >>> p = EngineParams(min_runs_soft=30, min_runs_locked=100)
    >>> next_mode(SHADOW, runs=30, change=0.0, eligible=False, params=p, floor=LOCKED)
    (2, False)
    >>> next_mode(SHADOW, runs=30, change=0.9, eligible=False, params=p, floor=LOCKED)
    (0, False)
    >>> next_mode(SHADOW, runs=30, change=0.9, eligible=False, params=p, floor=LOCKED,
    ...           unlearnable=True, by_action=True)
    (2, False)
    """
    stable = change < params.stability_for(runs)
    if mode == SHADOW and runs >= params.min_runs_soft and (stable or by_action):
        mode = SOFT_LOCK
        if floor > mode:
            return floor, False
    if mode == SOFT_LOCK and not unlearnable and runs >= params.min_runs_locked:
        settled = stable and novelty <= params.lock_novelty
        if settled and (eligible or params.lock_when_stable):
            return LOCKED, False
        if eligible and runs >= params.min_runs_locked + params.force_after_runs:
            return LOCKED, True
    return mode, False
