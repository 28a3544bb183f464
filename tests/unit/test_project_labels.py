"""The opt-in per-project verdict metric keeps its cardinality bounded: at most N project label
values (the busiest seen when slots are chosen) plus ``other``, never reassigned."""

from __future__ import annotations

from prometheus_client import REGISTRY

from ratchet.telemetry import projects
from ratchet.telemetry.projects import OTHER, ProjectLabels, count_project_verdicts


def test_the_busiest_projects_get_the_slots_and_keep_them() -> None:
    now = [0.0]
    labels = ProjectLabels(2, interval_s=60.0, clock=lambda: now[0])
    for p, n in (("small", 1), ("big", 50), ("mid", 20)):
        assert labels.count(p, n) == OTHER  # nothing is chosen in the first minute
    now[0] = 61.0
    assert labels.count("small", 1) == OTHER
    assert labels.assigned == {"big", "mid"}
    for i in range(500):  # many more projects later: all 'other', whatever their volume
        assert labels.count(f"p{i}", 1000) == OTHER
    now[0] = 500.0
    assert labels.count("p1", 1) == OTHER and labels.assigned == {"big", "mid"}
    assert labels.count("big", 1) == "big"


def test_free_slots_are_filled_at_the_next_choice_only() -> None:
    now = [0.0]
    labels = ProjectLabels(3, interval_s=60.0, clock=lambda: now[0])
    labels.count("a", 5)
    now[0] = 60.0
    assert labels.count("a", 1) == "a"
    assert labels.count("b", 100) == OTHER  # slots free, but chosen once a minute
    now[0] = 121.0
    assert labels.count("b", 1) == "b"


def test_tracked_volume_is_bounded() -> None:
    labels = ProjectLabels(1, max_tracked=10, clock=lambda: 0.0)
    for i in range(1000):
        labels.count(f"p{i}", 1)
    assert len(labels._volume) == 10


def _series() -> set[str]:
    return {s.labels["project"] for m in REGISTRY.collect()
            if m.name == "ratchet_project_verdicts" for s in m.samples
            if s.name == "ratchet_project_verdicts_total"}


def test_off_by_default_and_bounded_when_on() -> None:
    before = _series()
    projects.project_labels(0)
    count_project_verdicts("nobody", ["allow", "pause"])
    assert _series() == before  # the limit 0: no series at all
    now = [0.0]
    projects._labels = ProjectLabels(2, clock=lambda: now[0])
    try:
        for i in range(50):
            count_project_verdicts(f"tenant-{i}", ["allow"] * (i + 1))
        now[0] = 61.0
        for i in range(50):
            count_project_verdicts(f"tenant-{i}", ["allow", "flag"])
        new = _series() - before
        assert new == {"tenant-49", "tenant-48", OTHER} - before
    finally:
        projects.project_labels(0)
