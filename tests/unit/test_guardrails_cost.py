"""Cost guardrail: running sums supplied by the caller against per-run / per-day limits."""

from __future__ import annotations

from models.guardrails import parse_policy_toml
from models.guardrails.cost import CostConfig, check_cost

CFG = CostConfig(per_event_limit=2.0, per_run_limit=10.0, per_agent_daily_limit=100.0)


def rules(cfg: CostConfig, event: float | None, run: float | None, day: float | None) -> list[str]:
    return [
        r.detail["rule"]
        for r in check_cost(cfg, event_cost=event, run_cost=run, agent_daily_cost=day)
    ]


def test_each_limit_triggers_only_above_it() -> None:
    assert rules(CFG, 2.0, 10.0, 100.0) == []
    assert rules(CFG, 2.5, 1.0, 1.0) == ["cost.per_event"]
    assert rules(CFG, 1.0, 10.01, 1.0) == ["cost.per_run"]
    assert rules(CFG, 1.0, 1.0, 100.5) == ["cost.per_agent_daily"]
    assert rules(CFG, 3.0, 11.0, 101.0) == [
        "cost.per_event",
        "cost.per_run",
        "cost.per_agent_daily",
    ]


def test_float_drift_at_the_limit_is_not_over_it() -> None:
    total = sum([0.1] * 100)  # 9.99999999999998, or 10.000000000000002 in another order
    assert rules(CFG, 0.1, total + 1e-12, 0.0) == []


def test_detail_counts_against_limits() -> None:
    (r,) = check_cost(CFG, event_cost=0.5, run_cost=12.25, agent_daily_cost=None)
    assert r.source == "guardrail:cost" and r.action == "flag"
    assert dict(r.detail) == {
        "rule": "cost.per_run",
        "total": 12.25,
        "limit": 10.0,
        "event_cost": 0.5,
    }


def test_unknown_sums_zero_limits_and_disabled_are_silent() -> None:
    assert rules(CFG, None, None, None) == []
    assert (
        rules(
            CostConfig(per_event_limit=0, per_run_limit=0, per_agent_daily_limit=0), 1e9, 1e9, 1e9
        )
        == []
    )
    assert rules(CostConfig(enabled=False), 1e9, 1e9, 1e9) == []


def test_priority_override() -> None:
    p = parse_policy_toml(
        """
        [guardrails.cost]
        per_run_limit = 10.0
        [guardrails.cost.by_priority.critical]
        action = "reject"
        per_run_limit = 50.0
        """
    )
    crit = p.cost.for_event("any", "critical")
    (r,) = check_cost(crit, event_cost=1.0, run_cost=60.0, agent_daily_cost=0.0)
    assert r.action == "reject"
    assert check_cost(crit, event_cost=1.0, run_cost=20.0, agent_daily_cost=0.0) == []
    assert rules(p.cost.for_event("any", "normal"), 1.0, 20.0, 0.0) == ["cost.per_run"]
