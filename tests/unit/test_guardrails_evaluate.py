"""The evaluator: every enabled guardrail on one event, with the state the caller supplies."""

from __future__ import annotations

import json
from typing import Any

from models.events import IngestEvent, parse_event
from models.guardrails import (
    EMPTY_STATE,
    GuardrailState,
    default_policy,
    evaluate,
    parse_policy_toml,
)
from models.verdict import strictest

AWS = "AKIA" + "IOSFODNN7EXAMPLE"


def event(payload: dict[str, Any], **extra: Any) -> IngestEvent:
    body = {
        "event_id": "e1",
        "agent_id": "agent-1",
        "run_id": "run-1",
        "service": extra.pop("service", "crm"),
        "action": "contacts.update",
        "payload": payload,
        **extra,
    }
    return parse_event(body, project_id="p1")


def sources(reasons: list[Any]) -> list[str]:
    return [r.detail["rule"] for r in reasons]


def test_clean_event_with_calm_state_has_no_reasons() -> None:
    state = GuardrailState(
        node="n1",
        run_nodes=("n0", "n1", "n2", "n0"),
        run_events=5,
        agent_events_in_window=3,
        run_events_in_window=5,
        run_cost=0.2,
        agent_daily_cost=3.0,
    )
    assert evaluate(default_policy(), event({"id": 1, "name": "ok"}, cost=0.01), state) == []


def test_all_guardrails_report_together_in_a_fixed_order() -> None:
    policy = parse_policy_toml(
        """
        [guardrails.pattern]
        rules = [{ id = "rm", regex = '\\brm\\s+-rf\\b', action = "reject" }]
        [guardrails.pii.detector_actions]
        secret = "pause"
        """
    )
    state = GuardrailState(
        node="loop",
        run_nodes=("loop",) * 30,
        run_events=31,
        agent_events_in_window=5_000,
        run_events_in_window=400,
        run_cost=30.0,
        agent_daily_cost=10.0,
    )
    payload = {
        "cmd": "rm -rf /tmp/x",
        "env": {"KEY": AWS},
        "file": {"content_type": "application/x-msdownload"},
    }
    reasons = evaluate(policy, event(payload, cost=1.0), state)
    assert sources(reasons) == [
        "velocity.per_agent",
        "velocity.per_run",
        "loop.same_node",
        "cost.per_run",
        "pattern.rm",
        "pii.secret",
        "media.mime",
    ]
    assert strictest(r.action for r in reasons) == "reject"
    assert {r.source for r in reasons} == {
        "guardrail:velocity",
        "guardrail:loop",
        "guardrail:cost",
        "guardrail:pattern",
        "guardrail:pii",
        "guardrail:media",
    }
    assert AWS[4:] not in json.dumps([r.to_dict() for r in reasons])


def test_entropy_needs_a_long_enough_varied_run() -> None:
    nodes = tuple(f"n{i}" for i in range(40))
    state = GuardrailState(node="n40", run_nodes=nodes, run_events=41)
    assert sources(evaluate(default_policy(), event({}), state)) == ["entropy.sequence"]
    short = GuardrailState(node="n40", run_nodes=nodes[-10:], run_events=11)
    assert evaluate(default_policy(), event({}), short) == []


def test_missing_state_is_never_a_detection() -> None:
    """Redis down: the caller passes no state; only stateless rules run."""
    payload = {"to": "ann@example.com"}
    emails = parse_policy_toml('[guardrails.pii]\ndetectors = ["email"]')
    assert sources(evaluate(emails, event(payload))) == ["pii.email"]
    assert evaluate(emails, event(payload), EMPTY_STATE) == evaluate(emails, event(payload))
    assert evaluate(default_policy(), event({"x": 1}, cost=1e6)) == []  # sums unknown


def test_per_event_cost_needs_no_state() -> None:
    policy = parse_policy_toml("[guardrails.cost]\nper_event_limit = 1.0")
    assert sources(evaluate(policy, event({}, cost=2.0))) == ["cost.per_event"]


def test_service_and_priority_select_the_config() -> None:
    policy = parse_policy_toml(
        """
        [guardrails.pii]
        detectors = ["email"]
        [guardrails.pii.by_service.crm]
        enabled = false
        [guardrails.pii.by_priority.critical]
        action = "reject"
        """
    )
    payload = {"to": "ann@example.com"}
    assert evaluate(policy, event(payload, service="crm")) == []
    (r,) = evaluate(policy, event(payload, service="mail", priority="critical"))
    assert r.action == "reject"
    assert evaluate(policy, event(payload, service="crm", priority="critical")) == []


def test_disabled_guardrails_skip_the_payload_walk() -> None:
    policy = parse_policy_toml(
        "[guardrails.pii]\nenabled = false\n[guardrails.media]\nenabled = false\n"
    )
    assert evaluate(policy, event({"to": "ann@example.com", "k": AWS})) == []
