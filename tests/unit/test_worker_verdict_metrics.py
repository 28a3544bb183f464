"""``ratchet_verdicts_total`` counts verdicts by action, deciding source kind and chain mode."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import REGISTRY

from models.envelope import IngestEnvelope
from models.events import parse_event
from models.verdict import Edge, Reason, Verdict
from streams.worker import IngestProcessor


def _count(**labels: str) -> float:
    return REGISTRY.get_sample_value("ratchet_verdicts_total", labels) or 0.0


def _verdict(event_id: str, action: str, mode: str, reasons: tuple[Reason, ...]) -> Verdict:
    return Verdict(event_id, "a1", "r1", "c", mode, action != "allow", 1.0, 12.0,
                   Edge("x", "y", 0.5, 1, 2), action, reasons, time.time(), project_id="p")


def test_verdicts_are_counted_by_action_source_and_mode() -> None:
    events = [parse_event({"event_id": f"e{i}", "agent_id": "a1", "run_id": "r1",
                           "service": "s", "action": "x", "payload": {}}, "p") for i in range(3)]
    env = IngestEnvelope("p", "a1", "t" * 16, time.time(), tuple(events))
    verdicts = [
        _verdict("e0", "allow", "shadow", ()),
        _verdict("e1", "pause", "locked", (Reason("markov", "pause"),)),
        _verdict("e2", "reject", "soft_lock",
                 (Reason("markov", "flag"), Reason("guardrail:pattern", "reject"))),
    ]
    keys: list[dict[str, Any]] = [
        {"action": "allow", "source": "none", "mode": "shadow"},
        {"action": "pause", "source": "markov", "mode": "locked"},
        {"action": "reject", "source": "guardrail", "mode": "soft_lock"},
    ]
    before = [_count(**k) for k in keys]
    processor = IngestProcessor(engine=None, store=None)  # type: ignore[arg-type]
    out = processor._emit([env], verdicts)
    assert len(out) == 1
    assert [_count(**k) - b for k, b in zip(keys, before, strict=True)] == [1.0, 1.0, 1.0]


def test_the_source_is_the_reason_whose_action_is_the_verdicts() -> None:
    """A weaker reason decides nothing; a guardrail tied with the chain counts as guardrail."""
    events = [parse_event({"event_id": f"e{i}", "agent_id": "a1", "run_id": "r1",
                           "service": "s", "action": "x", "payload": {}}, "p") for i in range(3)]
    env = IngestEnvelope("p", "a1", "t" * 16, time.time(), tuple(events))
    verdicts = [
        _verdict("e0", "pause", "shadow",
                 (Reason("markov", "flag"), Reason("guardrail:pattern", "pause"))),
        _verdict("e1", "pause", "soft_lock",
                 (Reason("markov", "pause"), Reason("guardrail:pii", "pause"))),
        _verdict("e2", "pause", "locked",
                 (Reason("markov", "pause"), Reason("guardrail:pii", "flag"))),
    ]
    keys: list[dict[str, Any]] = [
        {"action": "pause", "source": "guardrail", "mode": "shadow"},
        {"action": "pause", "source": "guardrail", "mode": "soft_lock"},
        {"action": "pause", "source": "markov", "mode": "locked"},
    ]
    before = [_count(**k) for k in keys]
    processor = IngestProcessor(engine=None, store=None)  # type: ignore[arg-type]
    processor._emit([env], verdicts)
    assert [_count(**k) - b for k, b in zip(keys, before, strict=True)] == [1.0, 1.0, 1.0]
