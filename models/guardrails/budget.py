"""How much payload scanning one event may cost: a budget in *steps*, shared by the scanning
guardrails of the event.

A worker decides every tenant's events in one loop, so the content guardrails — the pattern
rules (tenant-written regexes on RE2) and the PII detectors — must not let one tenant's events
hold it. Their cost is counted in steps, one step being about one RE2 instruction over one byte
(10–20 ns measured at RE2's worst, its NFA): a pattern rule charges bytes scanned × its compiled
program size (:meth:`models.guardrails.regex_safety.Regex.cost`); the PII scan charges
:data:`models.guardrails.pii.PII_STEPS_PER_CHAR` per character. The worker gives each event a
budget of at most :data:`SCAN_STEPS_PER_EVENT`, drawn from its project's
:data:`SCAN_STEPS_PER_BATCH` for the batch (``RATCHET_GUARD_SCAN_STEPS_PER_*``).

What the budget does not cover **fails closed**: a guardrail that could not finish adds a
``<guardrail>.scan_limit`` reason with the strictest action of what it skipped — an attacker
cannot pad an event past a rule.

>>> b = ScanBudget(100)
>>> b.take(60), b.take(60), b.take(40), b.steps, b.used
(True, False, True, 0, 100)
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SCAN_STEPS_PER_BATCH", "SCAN_STEPS_PER_EVENT", "ScanBudget"]

#: Default budget of one event, steps (~0.25 s at RE2's slowest).
SCAN_STEPS_PER_EVENT = 16_000_000
#: Default budget of one project's events in one worker batch, steps.
SCAN_STEPS_PER_BATCH = 64_000_000


@dataclass(slots=True)
class ScanBudget:
    """Steps a scan may still take; mutable, shared by the guardrails of one event. ``used``
    counts what was charged."""

    steps: int
    used: int = field(default=0)

    def take(self, cost: int) -> bool:
        """Charge ``cost`` steps if they are left; ``False`` (nothing charged) otherwise."""
        if cost > self.steps:
            return False
        self.steps -= cost
        self.used += cost
        return True
