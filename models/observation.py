"""What the engine answers for one event of one chain: the record the observe script's reply is
decoded into and the record the pure-Python reference (``models/reference.py``) returns.

One record for both, so the agreement tests compare like with like. The observe script answers a
flat array (``lua/observe.lua`` header): one binary string holding every event's score and
threshold as big-endian doubles, then :data:`WIDTH` plain values per event. :class:`Answer`
reads it in place — the engine's hot loop indexes the flat list and builds no per-event
record; :meth:`Answer.observation` builds the full record when one is wanted (an anomalous
event's explanation, tests). Pure: no I/O.

>>> import struct
>>> raw = [struct.pack(">dd", 19.93, 12.0), 0, b"^", b"n1", 0, 0, 1 + 2 + 4 + 32 + 128, 3, 0, 2]
>>> o = Answer(raw).observation(0)
>>> (o.from_node, o.to_node, o.action, o.held, o.backoff, o.unlearnable, o.score, o.mode)
('^', 'n1', 'flag', True, False, False, 19.93, 1)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from models.params import ACTION_CODES

__all__ = ["WIDTH", "Answer", "Observation", "parse_observations"]

#: Values per event in the observe reply after the doubles: status, from, to, count, row total,
#: flags, runs, repeats, repeat limit.
WIDTH = 9


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


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class Answer:
    """One observe reply, read in place.

    ``flat[1 + WIDTH*k + j]`` is value ``j`` of event ``k``; ``doubles[2k]`` / ``[2k+1]`` its
    score and threshold. Flag bits: see :meth:`observation`.
    """

    __slots__ = ("doubles", "flat", "n")

    def __init__(self, raw: list[Any]) -> None:
        self.flat = raw
        self.n = (len(raw) - 1) // WIDTH
        blob = raw[0] if raw else b""
        self.doubles: tuple[float, ...] = struct.unpack(f">{2 * self.n}d", blob) if self.n else ()

    def __len__(self) -> int:
        return self.n

    def mode_runs(self, k: int) -> tuple[int, int]:
        """(mode, runs) of the chain after event ``k``."""
        base = 1 + WIDTH * k
        return (int(self.flat[base + 5]) >> 5) & 3, int(self.flat[base + 6])

    def observation(self, k: int) -> Observation:
        """The full record of event ``k``."""
        f = self.flat
        base = 1 + WIDTH * k
        flags = int(f[base + 5])
        return Observation(
            duplicate=int(f[base]) == 1,
            from_node=_text(f[base + 1]),
            to_node=_text(f[base + 2]),
            count=int(f[base + 3]),
            row_total=int(f[base + 4]),
            score=self.doubles[2 * k],
            threshold=self.doubles[2 * k + 1],
            anomalous=bool(flags & 1),
            mode=(flags >> 5) & 3,
            action=ACTION_CODES[(flags >> 7) & 3],
            held=bool(flags & 2),
            runs=int(f[base + 6]),
            mode_change=(flags >> 9) & 3,
            to_new=bool(flags & 4),
            backoff=bool(flags & 8),
            unlearnable=bool(flags & 16),
            repeats=int(f[base + 7]),
            repeat_limit=int(f[base + 8]),
        )

    def observations(self) -> list[Observation]:
        return [self.observation(k) for k in range(self.n)]


def parse_observations(raw: list[Any]) -> list[Observation]:
    """The observe script's whole reply → observations in order."""
    return Answer(raw).observations()
