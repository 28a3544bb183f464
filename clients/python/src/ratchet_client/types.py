"""Typed answers of the gateway: verdicts, their reasons, human approvals, accepted events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ACTIONS", "Accepted", "Approval", "Reason", "Verdict"]

#: The four answers, mildest first.
ACTIONS = ("allow", "flag", "pause", "reject")


@dataclass(frozen=True)
class Reason:
    """Why a verdict has its action: ``source`` is ``markov`` or ``guardrail:<name>``."""

    source: str
    action: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Approval:
    """A person's decision on a paused event."""

    decision: str  # "approve" | "reject"
    reason: str = ""
    actor: str = ""
    decided_at: float = 0.0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Approval:
        return cls(str(d.get("decision", "")), str(d.get("reason") or ""),
                   str(d.get("actor") or ""), float(d.get("decided_at") or 0.0))


@dataclass(frozen=True)
class Verdict:
    """The gateway's answer for one event (``raw`` keeps every field as sent)."""

    event_id: str
    action: str  # one of ACTIONS
    mode: str = ""
    anomalous: bool = False
    score: float = 0.0
    threshold: float = 0.0
    reasons: tuple[Reason, ...] = ()
    trace_id: str = ""
    decided_at: float = 0.0
    held: bool = False
    error: str | None = None
    approval: Approval | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def paused(self) -> bool:
        """Paused and not decided by a person yet."""
        return self.action == "pause" and self.approval is None

    @property
    def final_action(self) -> str:
        """What the caller should do now: a person's decision overrides ``pause``."""
        if self.action == "pause" and self.approval is not None:
            return "allow" if self.approval.decision == "approve" else "reject"
        return self.action

    @property
    def allowed(self) -> bool:
        """True when the call may go ahead (``allow``, ``flag``, or an approved pause)."""
        return self.final_action in ("allow", "flag")

    @classmethod
    def from_dict(cls, verdict: Mapping[str, Any],
                  approval: Mapping[str, Any] | None = None) -> Verdict:
        reasons = tuple(Reason(str(r.get("source", "")), str(r.get("action", "")),
                               dict(r.get("detail") or {}))
                        for r in verdict.get("reasons") or () if isinstance(r, Mapping))
        return cls(
            event_id=str(verdict.get("event_id", "")),
            action=str(verdict.get("action", "")),
            mode=str(verdict.get("mode", "")),
            anomalous=bool(verdict.get("anomalous", False)),
            score=float(verdict.get("score") or 0.0),
            threshold=float(verdict.get("threshold") or 0.0),
            reasons=reasons,
            trace_id=str(verdict.get("trace_id", "")),
            decided_at=float(verdict.get("decided_at") or 0.0),
            held=bool(verdict.get("held", False)),
            error=verdict.get("error"),
            approval=Approval.from_dict(approval) if approval else None,
            raw=dict(verdict),
        )


@dataclass(frozen=True)
class Accepted:
    """An event the gateway accepted (published for a decision)."""

    event_id: str
    trace_id: str = ""
