"""What the engine answers for one event of one chain: the record the observe script's reply is
parsed into and the record the pure-Python reference (``models/reference.py``) returns.

One record for both, so the agreement tests compare like with like and the engine never has to
translate between two identical shapes. Pure: no I/O.

>>> o = parse_observation("0\\t^\\tn1\\t0\\t0\\t19.93\\t12\\t1\\t1\\t1\\t1\\t3\\t0\\t1\\t0\\t0\\t0\\t2")
>>> (o.from_node, o.to_node, o.action, o.held, o.backoff, o.unlearnable)
('^', 'n1', 'flag', True, False, False)
"""

from __future__ import annotations

from dataclasses import dataclass

from models.params import ACTION_CODES

__all__ = ["Observation", "parse_observation", "parse_observations"]


@dataclass(frozen=True, slots=True)
class Observation:
    """The answer for one event (counts in 1/COUNT_SCALE units)."""

    duplicate: bool
    from_node: str
    to_node: str
    count: int
    row_total: int
    score: float
    threshold: float
    anomalous: bool
    mode: int
    action: str
    held: bool
    runs: int
    #: 0 none, 1 promoted at this event, 2 force-promoted at this event.
    mode_change: int
    to_new: bool
    #: The score came from the coarse (action-level) back-off model, not the node transition.
    backoff: bool = False
    #: The chain's rate of new transitions is above the limit: only new nodes are anomalous and
    #: it never locks (docs/detection.md, "High-entropy chains").
    unlearnable: bool = False
    #: Back-to-back repeats of this node in the run so far, and the learned limit above which
    #: that is anomalous (models.scoring.repeat_limit).
    repeats: int = 0
    repeat_limit: int = 0


def parse_observation(raw: bytes | str) -> Observation:
    """One line of ``lua/observe.lua``'s reply (tab-separated, see its header)."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    f = text.split("\t")
    return Observation(
        duplicate=f[0] == "1",
        from_node=f[1],
        to_node=f[2],
        count=int(f[3]),
        row_total=int(f[4]),
        score=float(f[5]),
        threshold=float(f[6]),
        anomalous=f[7] == "1",
        mode=int(f[8]),
        action=ACTION_CODES[int(f[9])],
        held=f[10] == "1",
        runs=int(f[11]),
        mode_change=int(f[12]),
        to_new=f[13] == "1",
        backoff=f[14] == "1",
        unlearnable=f[15] == "1",
        repeats=int(f[16]),
        repeat_limit=int(f[17]),
    )


def parse_observations(raw: bytes | str) -> list[Observation]:
    """The observe script's whole reply (one line per event) → observations in order."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    return [parse_observation(line) for line in text.split("\n")] if text else []
