"""What a verdict says when Ratchet failed to judge the event: the ``on_error`` policy. Pure.

An engine error (a bug, corrupted state, a poison event) must never be an attacker's bypass:
if failing the engine turned ``reject`` into ``allow``, provoking a failure would be the attack.
Each project chooses, in its guardrail policy (``on_error = "allow" | "flag" | "pause"``), what
an event gets when it could not be judged; without a choice, ``high`` and ``critical`` events
are paused for a human and the others allowed (so a fault does not stop every agent). Either
way the verdict carries ``error`` and the worker counts it (``ratchet_error_verdicts_total``).
``reject`` is not offered: a fault is not evidence against the agent.

>>> on_error_action(None, "critical"), on_error_action(None, "normal")
('pause', 'allow')
>>> on_error_action("flag", "low"), on_error_action("allow", "critical")
('flag', 'allow')
>>> parse_on_error("stop", "on_error")
Traceback (most recent call last):
...
models.errors.ValidationError: on_error must be one of allow, flag, pause, got 'stop'
"""

from __future__ import annotations

from typing import Any

from models.errors import ValidationError

__all__ = ["ON_ERROR_ACTIONS", "PAUSE_ON_ERROR", "on_error_action", "parse_on_error"]

#: What a project may choose for events Ratchet failed to judge.
ON_ERROR_ACTIONS: tuple[str, ...] = ("allow", "flag", "pause")
#: Priorities paused on error when the project chose nothing.
PAUSE_ON_ERROR: frozenset[str] = frozenset(("high", "critical"))


def parse_on_error(value: Any, field: str) -> str:
    """A policy's ``on_error`` value, or :class:`ValidationError` naming ``field``."""
    if not isinstance(value, str) or value not in ON_ERROR_ACTIONS:
        shown = repr(value) if isinstance(value, str) else type(value).__name__
        raise ValidationError(
            f"{field} must be one of {', '.join(ON_ERROR_ACTIONS)}, got {shown}", field
        )
    return value


def on_error_action(chosen: str | None, priority: str) -> str:
    """The action of an event that could not be judged: the project's choice, else ``pause``
    for high/critical priority and ``allow`` for the rest."""
    if chosen is not None:
        return chosen
    return "pause" if priority in PAUSE_ON_ERROR else "allow"
