"""Reports counted once a run: what the learned guardrails' reference models share.

The step order and the values (:mod:`models.guardrails.order`, :mod:`models.guardrails.values`)
learn what they report after ``learn_after`` reports in different runs, so one runaway run
cannot teach itself; their scripts keep a mark per report in the run's hash, and their reference
models keep the same marks here.

>>> marks = RunReports()
>>> marks.first("r1", "x"), marks.first("r1", "x"), marks.first("r2", "x")
(True, False, True)
"""

from __future__ import annotations

__all__ = ["REDELIVERED_NOTE", "RunReports"]

#: What a learned guardrail's reason says of a redelivered event (its counts are not kept).
REDELIVERED_NOTE = "reported when this event was first decided (a redelivery: counts not kept)"


class RunReports:
    """What each run reported already."""

    def __init__(self) -> None:
        self._seen: dict[str, set[object]] = {}

    def first(self, run: str, what: object) -> bool:
        """Whether ``run`` reports ``what`` for the first time (and mark it)."""
        seen = self._seen.setdefault(run, set())
        if what in seen:
            return False
        seen.add(what)
        return True
