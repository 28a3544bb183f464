"""Per-project verdict counts with bounded cardinality (``ratchet_project_verdicts_total``).

Metrics carry no project label by default: one series per project per action would grow with
the number of tenants. ``RATCHET_METRICS_PROJECT_LABEL_LIMIT = N`` (opt-in) gives the N busiest
projects a worker sees their own ``project`` value and counts every other project as ``other``:

- volume is counted per project in the process (at most ``max_tracked`` projects are tracked);
- once every ``interval_s`` (60 s) the busiest projects without a label take the free slots;
- a label, once given, is never taken back (a Prometheus series that exists stays), so a worker
  exports at most N project values plus ``other`` — per action, at most 4·(N + 1) series.

Until the first choice (the first minute) everything counts as ``other``. A project that becomes
busy after the slots are full stays ``other``; restart the worker (or raise N) to re-rank.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence

from ratchet.telemetry.metrics import PROJECT_VERDICTS

__all__ = ["OTHER", "ProjectLabels", "count_project_verdicts", "project_labels"]

#: The ``project`` label value of every project without a slot of its own.
OTHER = "other"


class ProjectLabels:
    """Which ``project`` label value a project's verdicts count under (see the module doc)."""

    def __init__(self, limit: int, *, interval_s: float = 60.0, max_tracked: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.interval_s = interval_s
        self.max_tracked = max_tracked
        self.clock = clock
        self.assigned: set[str] = set()
        self._volume: Counter[str] = Counter()
        self._next = clock() + interval_s

    def count(self, project_id: str, n: int) -> str:
        """Count ``n`` verdicts of ``project_id``; the label value they go under."""
        if project_id in self._volume or len(self._volume) < self.max_tracked:
            self._volume[project_id] += n
        if len(self.assigned) < self.limit and self.clock() >= self._next:
            self._choose()
        return project_id if project_id in self.assigned else OTHER

    def _choose(self) -> None:
        self._next = self.clock() + self.interval_s
        free = self.limit - len(self.assigned)
        busiest = [p for p, _ in self._volume.most_common() if p not in self.assigned]
        self.assigned.update(busiest[:free])


_labels = ProjectLabels(0)


def project_labels(limit: int | None = None) -> ProjectLabels:
    """The process's labeller; ``limit`` (the setting) replaces it when it changes."""
    global _labels
    if limit is not None and limit != _labels.limit:
        _labels = ProjectLabels(limit)
    return _labels


def count_project_verdicts(project_id: str, actions: Sequence[str]) -> None:
    """Count one envelope's verdicts (their actions); nothing when the limit is 0 (opt-in)."""
    labels = _labels
    if labels.limit <= 0:
        return
    value = labels.count(project_id, len(actions))
    for action, n in Counter(actions).items():
        PROJECT_VERDICTS.labels(project=value, action=action).inc(n)
