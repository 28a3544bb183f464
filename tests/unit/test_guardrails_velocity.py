"""Velocity guardrail: counts in the window (supplied by the caller) against limits."""

from __future__ import annotations

import pytest

from models.guardrails import parse_policy_toml, state_spec
from models.guardrails.velocity import VelocityConfig, Window, check_velocity


def rules(cfg: VelocityConfig, agent: int | None, run: int | None) -> list[str]:
    return [r.detail["rule"] for r in check_velocity(cfg, agent_events=agent, run_events=run)]


def test_over_the_limit_triggers_at_the_limit_does_not() -> None:
    cfg = VelocityConfig(per_agent=Window(60, 100), per_run=Window(30, 10))
    assert rules(cfg, 100, 10) == []
    assert rules(cfg, 101, 10) == ["velocity.per_agent"]
    assert rules(cfg, 100, 11) == ["velocity.per_run"]
    assert rules(cfg, 500, 50) == ["velocity.per_agent", "velocity.per_run"]


def test_detail_explains_counts_against_limits() -> None:
    cfg = VelocityConfig(action="pause", per_run=Window(30, 10))
    (reason,) = check_velocity(cfg, agent_events=1, run_events=12)
    assert reason.source == "guardrail:velocity"
    assert reason.action == "pause"
    assert dict(reason.detail) == {
        "rule": "velocity.per_run",
        "count": 12,
        "limit": 10,
        "window_s": 30,
    }


@pytest.mark.parametrize(("agent", "run"), [(None, None), (None, 5), (5, None)])
def test_unknown_counts_are_never_a_detection(agent: int | None, run: int | None) -> None:
    cfg = VelocityConfig(per_agent=Window(60, 1), per_run=Window(60, 1))
    assert all(
        r.detail["count"] is not None
        for r in check_velocity(cfg, agent_events=agent, run_events=run)
    )
    assert len(check_velocity(cfg, agent_events=agent, run_events=run)) == (agent is not None) + (
        run is not None
    )


def test_limit_zero_and_disabled_switch_off() -> None:
    assert rules(VelocityConfig(per_agent=Window(60, 0), per_run=Window(60, 0)), 10**6, 10**6) == []
    assert rules(VelocityConfig(enabled=False), 10**6, 10**6) == []


def test_service_override_changes_the_limit_not_the_window() -> None:
    p = parse_policy_toml(
        """
        [guardrails.velocity]
        per_run = { window_s = 10, limit = 50 }
        [guardrails.velocity.by_service.search.per_run]
        limit = 500
        """
    )
    search = p.velocity.for_event("search", "normal")
    assert search.per_run == Window(10, 500)
    assert rules(search, 1, 400) == []
    assert rules(p.velocity.for_event("crm", "normal"), 1, 400) == ["velocity.per_run"]
    assert state_spec(p).run_window_s == 10
