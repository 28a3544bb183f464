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

from collections.abc import Iterable
from dataclasses import dataclass, field

from models.errors import ConfigError

#: Projects a :class:`ScanShare` remembers before it forgets those whose share is full again.
_SHARE_PROJECTS = 10_000

__all__ = [
    "SCAN_SHARE",
    "SCAN_SHARE_BURST_S",
    "SCAN_STEPS_PER_BATCH",
    "SCAN_STEPS_PER_EVENT",
    "SHARE_STEPS_PER_S",
    "ScanBudget",
    "ScanShare",
]

#: Default budget of one event, steps (~0.25 s at RE2's slowest).
SCAN_STEPS_PER_EVENT = 16_000_000
#: Default budget of one project's events in one worker batch, steps.
SCAN_STEPS_PER_BATCH = 64_000_000
#: Seconds of payload scanning per second of a worker's time the busy projects share while
#: other projects are active on it (three quarters of a core: the rest is the others'), and the
#: most one may save up.
SCAN_SHARE = 0.75
SCAN_SHARE_BURST_S = 0.5
#: Steps a second of scanning covers at worst: an RE2 *set* whose automaton thrashes takes
#: 30–50 ns a step (a single pattern ~14): a project's batch is given at most the steps its
#: share has left at this rate, so a batch cannot outrun the share.
SHARE_STEPS_PER_S = 25_000_000


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


@dataclass(slots=True)
class ScanShare:
    """The scanning time each project may still take on one worker while it shares the worker:
    a bucket per project of ``burst_s`` seconds, refilled at ``rate`` seconds per second split
    among the *busy* projects (:meth:`split`: a project that scans little leaves the others
    their part; two busy projects of one tenant get half as much each, not twice as much
    together), charged with the time its events' scans *took* (measured, whatever made them
    slow: tenant regexes, digit-heavy text, Unicode). Steps bound one event and one batch; this
    bounds a tenant over time, so events that each fit their budgets — a policy of slow rules,
    text that is costly to scan — cannot hold a worker other tenants are waiting on. A project
    whose share is spent while another project was active on the worker in the last
    :attr:`window_s` seconds (the bucket may go below zero: a batch is charged after it ran)
    gets no scan budget until it refills: its events' scans fail closed (``*.scan_limit``
    reasons, the strictest action skipped). A project alone on the worker is never held back
    (work-conserving) and is charged nothing then. A batch is given at most the steps the share
    has left at the worst step rate (:meth:`steps`), so one batch cannot outrun the share either.

    >>> share = ScanShare(rate=0.5, burst_s=1.0)
    >>> share.contended(["a"], now=0.0), share.left("a", now=0.0)
    (False, 1.0)
    >>> share.charge("a", 3.0, now=0.0, contended=False)   # alone: not held back
    >>> share.left("a", now=0.0)
    1.0
    >>> share.contended(["b"], now=1.0)   # "a" was active a second ago
    True
    >>> share.charge("a", 3.0, now=1.0, contended=True)
    >>> share.left("a", now=1.0), share.left("a", now=5.0), share.left("b", now=1.0)
    (-2.0, 0.0, 1.0)
    >>> share.charge("b", 3.0, now=5.0, contended=True)   # two busy projects: half each
    >>> share.split(5.0), share.left("a", now=9.0)
    (2, 1.0)
    """

    #: Seconds of scanning per second the busy projects share (each gets its part).
    rate: float = SCAN_SHARE
    burst_s: float = SCAN_SHARE_BURST_S
    #: How recently another project must have been active for projects to share the worker.
    window_s: float = 5.0
    #: project → (seconds left, at): only projects that scanned lately.
    levels: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: project → when it was last active.
    seen: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.rate <= 1 or not 0 < self.burst_s <= 60:
            raise ConfigError(
                f"RATCHET_GUARD_SCAN_SHARE must be in (0, 1] (a share of one core; got "
                f"{self.rate}) and RATCHET_GUARD_SCAN_SHARE_BURST_S in (0, 60] seconds (got "
                f"{self.burst_s})")

    def contended(self, projects: Iterable[str], now: float) -> bool:
        """Record ``projects`` as active at ``now``; whether more than one project was active
        in the last :attr:`window_s` seconds."""
        for p in projects:
            self.seen[p] = now
        if len(self.seen) > 1:
            for p in [p for p, at in self.seen.items() if now - at > self.window_s]:
                del self.seen[p]
        return len(self.seen) > 1

    def _left(self, project: str, now: float, n: int) -> float:
        level = self.levels.get(project)
        if level is None:
            return self.burst_s
        seconds, at = level
        return min(self.burst_s, seconds + max(now - at, 0.0) * self.rate / n)

    def split(self, now: float) -> int:
        """Among how many projects the rate is split: the *busy* ones — those whose bucket is
        below half full even at the whole rate (at least one). A project that scans little
        takes nothing from the others' part, and a second busy project of one tenant halves
        each one's part instead of doubling the whole (max-min fair, roughly)."""
        half = self.burst_s / 2
        return max(1, sum(1 for p in self.levels if self._left(p, now, 1) < half))

    def left(self, project: str, now: float) -> float:
        """Seconds of scanning ``project`` may still take at ``now`` (monotonic seconds): its
        bucket refills at ``rate`` split among the busy projects, up to ``burst_s``."""
        return self._left(project, now, self.split(now))

    def steps(self, project: str, now: float, most: int) -> int:
        """The scan steps ``project``'s next batch may take while projects share the worker:
        what its share has left at the worst step rate (:data:`SHARE_STEPS_PER_S`), at most
        ``most``; 0 once the share is spent.

        >>> share = ScanShare(rate=0.25, burst_s=0.5)
        >>> share.steps("p", 0.0, 64_000_000)
        12500000
        >>> share.charge("p", 0.6, 0.0, contended=True)
        >>> share.steps("p", 0.0, 64_000_000), share.steps("p", 1.0, 64_000_000)
        (0, 3750000)
        """
        left = self.left(project, now)
        return 0 if left <= 0 else min(most, int(left * SHARE_STEPS_PER_S))

    def charge(self, project: str, seconds: float, now: float, *, contended: bool) -> None:
        """Take the ``seconds`` ``project``'s scans took, when ``contended`` (alone on the
        worker, a project is charged nothing: what it used then is not held against it)."""
        if not contended:
            return
        self.levels[project] = (self.left(project, now) - seconds, now)
        if len(self.levels) > _SHARE_PROJECTS:
            for p in [p for p in self.levels if self.left(p, now) >= self.burst_s]:
                del self.levels[p]
