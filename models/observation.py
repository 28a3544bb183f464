"""What the engine answers for one event of one chain: the record the observe script's reply is
decoded into and the record the pure-Python reference (``models/reference.py``) returns.

One record for both, so the agreement tests compare like with like. The observe script answers a
flat array (``lua/observe.lua`` header): one binary string holding a :data:`RECORD` per event
(score, threshold, count, row total, flags, runs, repeats, repeat limit), then :data:`WIDTH`
values per event (from, to). :class:`Answer` unpacks the records in one call and reads the rest
in place — the engine's hot loop builds no per-event record; :meth:`Answer.observation` builds
the full record when one is wanted (an anomalous event's explanation, tests). Pure: no I/O.

>>> raw = [RECORD.pack(19.93, 12.0, 0, 0, 1 + 2 + 4 + 32 + 128, 3, 0, 2), b"^", b"n1"]
>>> o = Answer(raw).observation(0)
>>> (o.from_node, o.to_node, o.action, o.held, o.backoff, o.unlearnable, o.score, o.mode)
('^', 'n1', 'flag', True, False, False, 19.93, 1)
>>> Answer([RECORD.pack(1.0, 12.0, 3000, 9000, 2048, 4, 1, 0), b"a", b"b"]).observation(0).duplicate
True
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from models.params import ACTION_CODES

__all__ = ["DUPLICATE", "RECORD", "WIDTH", "Answer", "Observation", "parse_observations"]

#: One event's record in the reply's first value: score, threshold, count, row total (doubles),
#: flags, runs, repeats, repeat limit (signed 32-bit), big-endian.
RECORD = struct.Struct(">ddddiiii")
#: Values per event in the observe reply after the records: from, to.
WIDTH = 2
#: The flag bit of a redelivered event (its stored first answer).
DUPLICATE = 2048


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

    ``recs[k]`` is event ``k``'s record ``(score, threshold, count, row_total, flags, runs,
    repeats, repeat_limit)``; ``flat[1 + WIDTH*k]`` / ``[2 + WIDTH*k]`` its from and to nodes.
    Flag bits: see :meth:`observation`. A reply whose parts disagree is refused."""

    __slots__ = ("flat", "n", "recs")

    def __init__(self, raw: list[Any]) -> None:
        self.flat = raw
        blob = raw[0] if raw else b""
        self.n, rest = divmod(len(blob), RECORD.size)
        if rest or len(raw) != 1 + WIDTH * self.n:
            raise ValueError(f"observe reply of {len(raw)} values does not hold "
                             f"{len(blob)} / {RECORD.size} records")
        self.recs: list[tuple[float, float, float, float, int, int, int, int]] = list(
            RECORD.iter_unpack(blob))

    def __len__(self) -> int:
        return self.n

    @classmethod
    def join(cls, parts: list[Answer]) -> Answer:
        """One answer for consecutive parts of one chain's events (calls that stopped early)."""
        if len(parts) == 1:
            return parts[0]
        flat: list[Any] = [b"".join(bytes(p.flat[0]) for p in parts)]
        for p in parts:
            flat.extend(p.flat[1:])
        return cls(flat)

    def mode_runs(self, k: int) -> tuple[int, int]:
        """(mode, runs) of the chain after event ``k``."""
        rec = self.recs[k]
        return (rec[4] >> 5) & 3, rec[5]

    def all_mode_runs(self) -> list[tuple[int, int]]:
        """(mode, runs) of the chain after each event, in order."""
        return [((rec[4] >> 5) & 3, rec[5]) for rec in self.recs]

    def observation(self, k: int) -> Observation:
        """The full record of event ``k``."""
        score, threshold, count, row, flags, runs, repeats, limit = self.recs[k]
        base = 1 + WIDTH * k
        return Observation(
            duplicate=bool(flags & DUPLICATE),
            from_node=_text(self.flat[base]),
            to_node=_text(self.flat[base + 1]),
            count=int(count),
            row_total=int(row),
            score=score,
            threshold=threshold,
            anomalous=bool(flags & 1),
            mode=(flags >> 5) & 3,
            action=ACTION_CODES[(flags >> 7) & 3],
            held=bool(flags & 2),
            runs=runs,
            mode_change=(flags >> 9) & 3,
            to_new=bool(flags & 4),
            backoff=bool(flags & 8),
            unlearnable=bool(flags & 16),
            repeats=repeats,
            repeat_limit=limit,
        )

    def observations(self) -> list[Observation]:
        return [self.observation(k) for k in range(self.n)]


def parse_observations(raw: list[Any]) -> list[Observation]:
    """The observe script's whole reply → observations in order."""
    return Answer(raw).observations()
