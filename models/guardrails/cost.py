"""Cost guardrail: the sum of ``cost`` per run and per agent per day, against limits.

Pure part only. The Redis side keeps two running sums of the events' ``cost`` — per run, and
per agent per UTC day — *including* the event being decided, and passes them in. Units are
whatever agents send in ``cost`` (the defaults assume US dollars). A limit of 0 is off.

>>> cfg = CostConfig(per_run_limit=5.0, per_agent_daily_limit=0.0)
>>> r, = check_cost(cfg, event_cost=2.0, run_cost=6.5, agent_daily_cost=40.0)
>>> (r.detail["rule"], r.detail["total"], r.detail["limit"])
('cost.per_run', 6.5, 5.0)
>>> check_cost(cfg, event_cost=2.0, run_cost=5.0, agent_daily_cost=None)   # at the limit: fine
[]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.guardrails._schema import Fields, as_action, as_bool, check_keys, floats
from models.verdict import Reason

__all__ = ["NAME", "SOURCE", "CostConfig", "check_cost", "cost_to_dict", "parse_cost"]

NAME = "cost"
SOURCE = f"guardrail:{NAME}"
_KEYS = ("enabled", "action", "per_event_limit", "per_run_limit", "per_agent_daily_limit")
_MAX = 1e12
#: Float sums kept by Redis (INCRBYFLOAT) drift; a hair over the limit is at the limit.
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class CostConfig:
    enabled: bool = True
    action: str = "flag"
    #: One event's own ``cost`` (needs no state).
    per_event_limit: float = 0.0
    per_run_limit: float = 25.0
    per_agent_daily_limit: float = 250.0


def parse_cost(
    table: Mapping[str, Any], path: str, base: CostConfig, *, override: bool = False
) -> CostConfig:
    check_keys(table, _KEYS, path)
    f = Fields(table, path)
    limit = floats(0.0, _MAX)
    return CostConfig(
        enabled=f.get("enabled", base.enabled, as_bool),
        action=f.get("action", base.action, as_action),
        per_event_limit=f.get("per_event_limit", base.per_event_limit, limit),
        per_run_limit=f.get("per_run_limit", base.per_run_limit, limit),
        per_agent_daily_limit=f.get("per_agent_daily_limit", base.per_agent_daily_limit, limit),
    )


def cost_to_dict(cfg: CostConfig) -> dict[str, Any]:
    return {
        "enabled": cfg.enabled,
        "action": cfg.action,
        "per_event_limit": cfg.per_event_limit,
        "per_run_limit": cfg.per_run_limit,
        "per_agent_daily_limit": cfg.per_agent_daily_limit,
    }


def _quiet(
    cfg: CostConfig, event_cost: float | None, run_cost: float | None,
    agent_daily_cost: float | None,
) -> bool:
    """True when no total is over its limit: the loop of :func:`check_cost` unrolled, with its
    test negated as written (so a NaN answers the same)."""
    pe, pr, pa = cfg.per_event_limit, cfg.per_run_limit, cfg.per_agent_daily_limit
    return (
        (event_cost is None or not (pe > 0 and event_cost - pe > _EPS))
        and (run_cost is None or not (pr > 0 and run_cost - pr > _EPS))
        and (agent_daily_cost is None or not (pa > 0 and agent_daily_cost - pa > _EPS))
    )


def check_cost(
    cfg: CostConfig,
    *,
    event_cost: float | None,
    run_cost: float | None,
    agent_daily_cost: float | None,
) -> list[Reason]:
    """Sums include this event's cost; ``None`` means unknown (skipped, never a detection)."""
    if not cfg.enabled:
        return []
    if _quiet(cfg, event_cost, run_cost, agent_daily_cost):
        return []  # the usual event
    out: list[Reason] = []
    for rule, total, limit in (
        ("cost.per_event", event_cost, cfg.per_event_limit),
        ("cost.per_run", run_cost, cfg.per_run_limit),
        ("cost.per_agent_daily", agent_daily_cost, cfg.per_agent_daily_limit),
    ):
        if total is not None and limit > 0 and total - limit > _EPS:
            detail: dict[str, Any] = {"rule": rule, "total": round(total, 6), "limit": limit}
            if event_cost is not None:
                detail["event_cost"] = round(event_cost, 6)
            out.append(Reason(SOURCE, cfg.action, detail))
    return out
