"""The per-event state the guardrails read, and what the Redis side must keep to supply it.

The state contract (one Lua call per event or batch maintains all of it; counts and sums
**include the event being decided**; ``None`` means "not known" — e.g. Redis is down — and the
guardrail that needs it is skipped, never reported as a detection):

- ``node`` (loop, entropy): nothing to keep — the current event's node (skeleton hash, or the
  rich node), computed before the guardrails run.
- ``run_nodes`` (loop, entropy): the last ``StateSpec.history`` nodes of the run *before* this
  event, oldest first — a capped list per run (RPUSH + LTRIM), expiring with the idle run.
- ``run_events`` (entropy): events in the run so far — a counter per run (run TTL).
- ``agent_events_in_window`` (velocity): events of the agent in the last
  ``StateSpec.agent_window_s`` seconds — a sliding window per agent (a sorted set of
  timestamps trimmed by ZREMRANGEBYSCORE, or two fixed-window counters weighted).
- ``run_events_in_window`` (velocity): the same per run, over ``StateSpec.run_window_s``.
- ``run_cost`` (cost): sum of ``cost`` over the run — INCRBYFLOAT per run (run TTL).
- ``agent_daily_cost`` (cost): sum of ``cost`` of the agent on the current UTC day — one key
  per agent and day (INCRBYFLOAT, TTL a little over 24 h).
- ``order``, ``streak`` (order): set when the script judged this event's step pair new for
  the agent, or its streak too long (:mod:`models.guardrails.order`) — one hash per agent of
  pair and streak counts, and the run's last step and its streak.
- ``values`` (value): the event's observations the script judged outside what the agent's
  calls ever carried (:mod:`models.guardrails.values`) — one hash per agent of slot states.

:func:`models.guardrails.evaluate.state_spec` says, for a given policy, which of these are
needed and with which window sizes and history length.

>>> GuardrailState(node="n1", run_nodes=("n0",), run_events=2).run_cost is None
True
"""

from __future__ import annotations

from dataclasses import dataclass

from models.guardrails.order import OrderConfig, OrderFinding, StreakFinding
from models.guardrails.values import ValueConfig, ValueFinding

__all__ = ["EMPTY_STATE", "HOLD_ORDER", "HOLD_VALUES", "KEEP_ORDER", "KEEP_VALUES",
           "GuardrailState", "StateSpec"]

#: What an event's reports may not teach (lua/guardrails.lua ARGV[24]): its step-order reports,
#: its value reports — set when that rule holds the event's service at some priority (pause,
#: reject); and whether what they would teach is kept for an approval (the rule pauses this
#: very event: only a paused event can be approved).
HOLD_ORDER, HOLD_VALUES, KEEP_ORDER, KEEP_VALUES = 1, 2, 4, 8


@dataclass(frozen=True, slots=True)
class GuardrailState:
    """Plain values read from Redis for one event (see the module docstring for the contract)."""

    #: This event's node; "" when unknown (loop and entropy are then skipped).
    node: str = ""
    #: Previous nodes of this run, oldest first, at most ``StateSpec.history`` of them.
    run_nodes: tuple[str, ...] = ()
    #: Events in this run, this one included.
    run_events: int | None = None
    #: Events of this agent within the velocity ``per_agent`` window, this one included.
    agent_events_in_window: int | None = None
    #: Events of this run within the velocity ``per_run`` window, this one included.
    run_events_in_window: int | None = None
    #: Sum of ``cost`` over this run, this event included.
    run_cost: float | None = None
    #: Sum of ``cost`` of this agent over the current UTC day, this event included.
    agent_daily_cost: float | None = None
    #: The step pair judged new (None: known, not judged, or no state).
    order: OrderFinding | None = None
    #: The call's streak judged too long (None: not, or no state).
    streak: StreakFinding | None = None
    #: The event's values judged (empty: none, or no state).
    values: tuple[ValueFinding, ...] = ()


#: No state at all: only the stateless guardrails (pattern, PII, media, per-event cost) run.
EMPTY_STATE = GuardrailState()


@dataclass(frozen=True, slots=True)
class StateSpec:
    """What the Redis side must maintain for a policy (``None``/0/False: not needed)."""

    #: Sliding-window length for ``agent_events_in_window``, in seconds.
    agent_window_s: int | None
    #: Sliding-window length for ``run_events_in_window``, in seconds.
    run_window_s: int | None
    #: How many previous nodes of a run to keep and pass as ``run_nodes``.
    history: int
    run_events: bool
    run_cost: bool
    agent_daily_cost: bool
    #: The step-order settings the script judges by (None: the order is not kept).
    order: OrderConfig | None = None
    #: The value settings the script judges by (None: values are not kept).
    values: ValueConfig | None = None
