"""Velocity guardrail: too many events per agent, or per run, within a sliding window.

Pure part only. The Redis side counts events in two sliding windows — per agent over
``per_agent.window_s`` seconds and per run over ``per_run.window_s`` seconds — *including* the
event being decided, and passes the two counts in. A limit of 0 switches that counter off.

>>> cfg = VelocityConfig(per_run=Window(window_s=60, limit=3))
>>> [r.detail["rule"] for r in check_velocity(cfg, agent_events=4, run_events=4)]
['velocity.per_run']
>>> check_velocity(cfg, agent_events=4, run_events=3)
[]
>>> check_velocity(cfg, agent_events=None, run_events=None)  # no state (Redis down): no detection
[]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.guardrails._schema import (
    Fields,
    as_action,
    as_bool,
    as_table,
    check_keys,
    forbid_keys,
    ints,
    join,
)
from models.verdict import Reason

__all__ = [
    "NAME",
    "SOURCE",
    "VelocityConfig",
    "Window",
    "check_velocity",
    "parse_velocity",
    "velocity_to_dict",
]

NAME = "velocity"
SOURCE = f"guardrail:{NAME}"
_KEYS = ("enabled", "action", "per_agent", "per_run")
_WINDOW_KEYS = ("window_s", "limit")
_MAX_WINDOW_S = 86_400
_MAX_LIMIT = 100_000_000


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``limit`` events in any ``window_s`` seconds (``limit`` 0: not checked)."""

    window_s: int
    limit: int


@dataclass(frozen=True, slots=True)
class VelocityConfig:
    enabled: bool = True
    action: str = "flag"
    per_agent: Window = Window(window_s=60, limit=1_000)
    per_run: Window = Window(window_s=60, limit=300)


def _window(value: Any, path: str, base: Window, override: bool) -> Window:
    table = as_table(value, path)
    check_keys(table, _WINDOW_KEYS, path)
    if override:
        why = "the Redis side counts one window per agent and per run; set it at the top"
        forbid_keys(table, ("window_s",), path, why)
    f = Fields(table, path)
    return Window(
        window_s=f.get("window_s", base.window_s, ints(1, _MAX_WINDOW_S)),
        limit=f.get("limit", base.limit, ints(0, _MAX_LIMIT)),
    )


def parse_velocity(
    table: Mapping[str, Any], path: str, base: VelocityConfig, *, override: bool = False
) -> VelocityConfig:
    """Apply ``table`` over ``base``; an override may not change window sizes."""
    check_keys(table, _KEYS, path)
    f = Fields(table, path)
    return VelocityConfig(
        enabled=f.get("enabled", base.enabled, as_bool),
        action=f.get("action", base.action, as_action),
        per_agent=f.get(
            "per_agent", base.per_agent, lambda v, p: _window(v, p, base.per_agent, override)
        ),
        per_run=f.get("per_run", base.per_run, lambda v, p: _window(v, p, base.per_run, override)),
    )


def velocity_to_dict(cfg: VelocityConfig) -> dict[str, Any]:
    return {
        "enabled": cfg.enabled,
        "action": cfg.action,
        "per_agent": {"window_s": cfg.per_agent.window_s, "limit": cfg.per_agent.limit},
        "per_run": {"window_s": cfg.per_run.window_s, "limit": cfg.per_run.limit},
    }


def _over(rule: str, window: Window, count: int | None, action: str) -> list[Reason]:
    if count is None or window.limit <= 0 or count <= window.limit:
        return []
    detail = {"rule": rule, "count": count, "limit": window.limit, "window_s": window.window_s}
    return [Reason(SOURCE, action, detail)]


def _quiet(cfg: VelocityConfig, agent_events: int | None, run_events: int | None) -> bool:
    """True when both :func:`_over` calls below answer nothing (their own test, inlined)."""
    a, r = cfg.per_agent.limit, cfg.per_run.limit
    return (agent_events is None or a <= 0 or agent_events <= a) and (
        run_events is None or r <= 0 or run_events <= r
    )


def check_velocity(
    cfg: VelocityConfig, *, agent_events: int | None, run_events: int | None
) -> list[Reason]:
    """Counts include the current event; ``None`` means the count is unknown (skip)."""
    if not cfg.enabled:
        return []
    if _quiet(cfg, agent_events, run_events):
        return []  # the usual event
    return _over(join(NAME, "per_agent"), cfg.per_agent, agent_events, cfg.action) + _over(
        join(NAME, "per_run"), cfg.per_run, run_events, cfg.action
    )
