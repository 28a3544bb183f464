"""Verdicts (docs/design.md §2): what Ratchet answers for each event. Pure: no I/O.

Actions are ordered by strictness; a verdict takes the strictest action of its reasons.

>>> strictest(["allow", "pause", "flag"])
'pause'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ACTIONS",
    "HOLDING",
    "MODES",
    "Edge",
    "Reason",
    "Verdict",
    "action_rank",
    "deciding_sources",
    "round4",
    "strictest",
]

#: Actions from most lenient to strictest.
ACTIONS: tuple[str, ...] = ("allow", "flag", "pause", "reject")
#: Actions that hold an event back from learning when a guardrail gives them (protected
#: learning: a person decides first).
HOLDING: frozenset[str] = frozenset(("pause", "reject"))
MODES: tuple[str, ...] = ("shadow", "soft_lock", "locked")


#: Rounded values remembered (cleared when full): a chain's threshold and an edge's score
#: repeat from event to event, and ``round(x, 4)`` (correctly rounded, through a decimal
#: conversion) costs ≈ 0.45 µs — twice per verdict body and twice per wire row.
_ROUNDED: dict[float, float] = {}
_ROUNDED_MAX = 65_536


def round4(x: float) -> float:
    """``round(x, 4)`` with a negative zero made positive (a certain transition scores
    ``-log2(1) = -0.0``; ``-0.00001`` rounds to ``-0.0``: both would print ``-0.0``),
    remembered per float value. Zero is never looked up (``-0.0 == 0.0``), nor an int.

    >>> round4(1.23456), round4(-0.0), round4(2.5e-05), round4(-1e-05), round4(3)
    (1.2346, 0.0, 0.0, 0.0, 3)
    """
    if type(x) is not float:  # an int would share 3.0's entry and answer an int
        return round(x, 4)
    if not x:
        return 0.0
    got = _ROUNDED.get(x)
    if got is None:
        got = round(x, 4) + 0.0  # -0.0 + 0.0 is 0.0
        if len(_ROUNDED) >= _ROUNDED_MAX:
            _ROUNDED.clear()
        _ROUNDED[x] = got
    return got


def action_rank(action: str) -> int:
    return ACTIONS.index(action)


def strictest(actions: Iterable[str]) -> str:
    best = "allow"
    for a in actions:
        if ACTIONS.index(a) > ACTIONS.index(best):
            best = a
    return best


def deciding_sources(action: str, reasons: Iterable[Reason]) -> tuple[str, ...]:
    """The sources credited with a verdict of ``action``: those of the reasons whose action is
    the verdict's (the strictest). A weaker reason (a Markov ``flag`` under a guardrail's
    ``pause``) decided nothing. When no reason has the verdict's action (an engine error's
    on_error action), the strictest reasons' sources; none for no reasons.

    >>> deciding_sources("pause", [Reason("markov", "flag"), Reason("guardrail:pattern", "pause")])
    ('guardrail:pattern',)
    >>> deciding_sources("pause", [Reason("markov", "pause"), Reason("guardrail:pii", "pause")])
    ('markov', 'guardrail:pii')
    """
    rs = list(reasons)
    if not rs:
        return ()
    if not any(r.action == action for r in rs):
        action = strictest(r.action for r in rs)
    return tuple(dict.fromkeys(r.source for r in rs if r.action == action))


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a verdict has its action: ``source`` is ``markov`` or ``guardrail:<name>``."""

    source: str
    action: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "action": self.action, "detail": dict(self.detail)}


@dataclass(frozen=True, slots=True)
class Edge:
    """The transition an event made: counts as they were *before* this event was learned."""

    from_node: str
    to_node: str
    p: float
    count: float
    row_total: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.from_node,
            "to": self.to_node,
            "p": self.p,
            "count": self.count,
            "from_total": self.row_total,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    event_id: str
    agent_id: str
    run_id: str
    chain: str
    mode: str
    anomalous: bool
    score: float
    threshold: float
    edge: Edge
    action: str
    reasons: tuple[Reason, ...]
    decided_at: float
    trace_id: str = ""
    project_id: str = ""
    #: The chain's hash tag (``models.nodes.ChainId.tag``): how feedback finds the chain.
    chain_tag: str = ""
    #: Set when this event changed the chain's mode: "soft_lock", "locked" or "locked(forced)".
    mode_change: str = ""
    #: True when this answer is a replay of an earlier decision (redelivered event id).
    duplicate: bool = False
    #: True when the event is held back from learning until a human approves it.
    held: bool = False
    #: Set when a guard failed (e.g. Redis down); never reported as a detection.
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        e = self.edge  # its to_dict, inlined (twice per verdict on the worker's hot path)
        out: dict[str, Any] = {
            "event_id": self.event_id,
            "agent_id": self.agent_id,
            "run_id": self.run_id,
            "trace_id": self.trace_id,
            "project_id": self.project_id,
            "chain": self.chain,
            "chain_tag": self.chain_tag,
            "mode": self.mode,
            "anomalous": self.anomalous,
            "score": round4(self.score),
            "threshold": round4(self.threshold),
            "edge": {
                "from": e.from_node,
                "to": e.to_node,
                "p": e.p,
                "count": e.count,
                "from_total": e.row_total,
            },
            "action": self.action,
            "reasons": [r.to_dict() for r in self.reasons] if self.reasons else [],
            "decided_at": self.decided_at,
            "duplicate": self.duplicate,
            "held": self.held,
        }
        if self.error:
            out["error"] = self.error
        if self.mode_change:
            out["mode_change"] = self.mode_change
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Verdict:
        e = d["edge"]
        return cls(
            event_id=d["event_id"],
            agent_id=d["agent_id"],
            run_id=d["run_id"],
            trace_id=d.get("trace_id", ""),
            chain=d["chain"],
            mode=d["mode"],
            anomalous=bool(d["anomalous"]),
            score=float(d["score"]),
            threshold=float(d["threshold"]),
            edge=Edge(e["from"], e["to"], float(e["p"]), float(e["count"]), float(e["from_total"])),
            action=d["action"],
            reasons=tuple(
                Reason(r["source"], r["action"], r.get("detail", {})) for r in d.get("reasons", [])
            ),
            decided_at=float(d["decided_at"]),
            project_id=d.get("project_id", ""),
            chain_tag=d.get("chain_tag", ""),
            mode_change=d.get("mode_change", ""),
            duplicate=bool(d.get("duplicate", False)),
            held=bool(d.get("held", False)),
            error=d.get("error"),
        )
