"""A circuit breaker per destination. Pure: every call is given the current time.

closed → (``failures`` failures within ``window_s``) → open → (``open_s`` later) → half-open:
exactly one trial call is let through; its success closes the breaker, its failure reopens it.

>>> b = CircuitBreaker(failures=2, window_s=60, open_s=30)
>>> b.allow(0.0), b.record_failure(1.0), b.record_failure(2.0)
(True, None, 'open')
>>> b.allow(10.0), b.allow(32.0), b.allow(32.1)
(False, True, False)
>>> b.record_success(33.0)
'closed'
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "CircuitBreaker"]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass
class CircuitBreaker:
    failures: int = 10
    window_s: float = 60.0
    open_s: float = 30.0
    state: str = CLOSED
    opened_at: float = 0.0
    trial_in_flight: bool = False
    _recent: deque[float] = field(default_factory=deque, repr=False)

    def allow(self, now: float) -> bool:
        """May a call go out now? In half-open, only the one trial call may."""
        if self.state == OPEN and now - self.opened_at >= self.open_s:
            self.state, self.trial_in_flight = HALF_OPEN, False
        if self.state == CLOSED:
            return True
        if self.state == HALF_OPEN and not self.trial_in_flight:
            self.trial_in_flight = True
            return True
        return False

    def retry_at(self) -> float | None:
        """When an open breaker lets its trial through (None unless open)."""
        return self.opened_at + self.open_s if self.state == OPEN else None

    def record_success(self, now: float) -> str | None:
        """Returns the new state if it changed."""
        if self.state == CLOSED:
            return None
        self.state, self.trial_in_flight = CLOSED, False
        self._recent.clear()
        return CLOSED

    def record_failure(self, now: float) -> str | None:
        """Returns the new state if it changed."""
        if self.state == HALF_OPEN:
            return self._open(now)
        if self.state == OPEN:
            return None
        self._recent.append(now)
        while self._recent and now - self._recent[0] > self.window_s:
            self._recent.popleft()
        if len(self._recent) >= self.failures:
            return self._open(now)
        return None

    def _open(self, now: float) -> str:
        self.state, self.opened_at, self.trial_in_flight = OPEN, now, False
        self._recent.clear()
        return OPEN
