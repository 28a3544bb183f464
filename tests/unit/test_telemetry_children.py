"""Labelled metric children looked up once (ratchet/telemetry/children.py): the same child
prometheus_client hands out, so what is counted through it is what the registry exports."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from ratchet.telemetry.children import child


def test_the_child_is_prometheus_own_and_counts_into_the_metric() -> None:
    registry = CollectorRegistry()
    verdicts = Counter("t_verdicts_total", "t", ["action", "source"], registry=registry)
    seconds = Histogram("t_seconds", "t", ["script"], registry=registry)
    first = child(verdicts, "allow", "markov")
    assert first is child(verdicts, "allow", "markov")
    assert first is verdicts.labels(action="allow", source="markov")
    assert child(verdicts, "flag", "markov") is not first
    first.inc(3)
    child(verdicts, "allow", "markov").inc()
    child(seconds, "observe").observe(0.25)
    assert registry.get_sample_value(
        "t_verdicts_total", {"action": "allow", "source": "markov"}) == 4
    assert registry.get_sample_value("t_seconds_count", {"script": "observe"}) == 1


def test_children_of_metrics_with_the_same_values_stay_apart() -> None:
    registry = CollectorRegistry()
    a = Counter("t_a_total", "t", ["result"], registry=registry)
    b = Counter("t_b_total", "t", ["result"], registry=registry)
    child(a, "ok").inc()
    child(b, "ok").inc(2)
    assert registry.get_sample_value("t_a_total", {"result": "ok"}) == 1
    assert registry.get_sample_value("t_b_total", {"result": "ok"}) == 2
