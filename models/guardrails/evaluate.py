"""Run every enabled guardrail of a policy on one event: ``evaluate(policy, event, state)``.

The payload is walked once and the leaves shared by the pattern, PII and media guardrails;
configs for the event's service and priority are looked up, not merged, per event. Reasons
come out in a fixed order (velocity, loop, entropy, cost, pattern, PII, media, order, value); the verdict
takes the strictest action (:func:`models.verdict.strictest`) and lists them all.

>>> from models.events import parse_event
>>> from models.guardrails.policy import default_policy
>>> event = parse_event({"event_id": "e1", "agent_id": "a", "run_id": "r", "service": "mail",
...                      "action": "send", "payload": {"key": "AKIAIOSFODNN7EXAMPLE"}},
...                     project_id="p")
>>> [(r.source, r.action, r.detail["rule"]) for r in evaluate(default_policy(), event)]
[('guardrail:pii', 'flag', 'pii.secret')]
>>> state_spec(default_policy())
StateSpec(agent_window_s=60, run_window_s=60, history=64, run_events=True, run_cost=True, agent_daily_cost=True, order=OrderConfig(enabled=True, action='flag', min_runs=100, min_support=20, max_successors=2, learn_after=5, streak_settled=30), values=ValueConfig(enabled=True, action='flag', min_support=30, margin=2, margin_below=4, max_distinct=8, learn_after=3, max_values=64, max_text=40))
"""

from __future__ import annotations

from typing import TypeVar

from models.events import PRIORITIES, IngestEvent
from models.guardrails.budget import ScanBudget
from models.guardrails.cost import check_cost
from models.guardrails.decode import with_decoded
from models.guardrails.entropy import check_entropy
from models.guardrails.loop import check_loop
from models.guardrails.media import check_media
from models.guardrails.order import check_order, step_text
from models.guardrails.paths import Leaf, walk
from models.guardrails.pattern import builtin_scope, check_pattern
from models.guardrails.pii import check_pii
from models.guardrails.policy import Guardrail, Policy
from models.guardrails.state import (
    EMPTY_STATE,
    HOLD_ORDER,
    HOLD_VALUES,
    KEEP_ORDER,
    KEEP_VALUES,
    GuardrailState,
    StateSpec,
)
from models.guardrails.values import check_values
from models.guardrails.velocity import check_velocity
from models.verdict import Reason

__all__ = ["evaluate", "learning_holds", "state_spec"]

C = TypeVar("C")


def evaluate(
    policy: Policy,
    event: IngestEvent,
    state: GuardrailState | None = None,
    budget: ScanBudget | None = None,
) -> list[Reason]:
    """All guardrail reasons for ``event``; ``state`` from Redis (None: stateless rules only);
    ``budget`` bounds the pattern scans (None: unbounded; see :class:`ScanBudget`)."""
    st = state or EMPTY_STATE
    svc, prio = event.service, event.priority
    velocity = policy.velocity.for_event(svc, prio)
    loop = policy.loop.for_event(svc, prio)
    entropy = policy.entropy.for_event(svc, prio)
    cost = policy.cost.for_event(svc, prio)
    pattern = policy.pattern.for_event(svc, prio)
    pii = policy.pii.for_event(svc, prio)
    media = policy.media.for_event(svc, prio)

    out: list[Reason] = []
    if velocity.enabled:
        out += check_velocity(
            velocity, agent_events=st.agent_events_in_window, run_events=st.run_events_in_window
        )
    if st.node and loop.enabled:
        out += check_loop(loop, st.run_nodes, st.node)
    if st.node and entropy.enabled:
        out += check_entropy(entropy, st.run_nodes, st.node, run_events=st.run_events)
    if cost.enabled:
        out += check_cost(
            cost, event_cost=event.cost, run_cost=st.run_cost, agent_daily_cost=st.agent_daily_cost
        )
    scan_patterns = pattern.enabled and bool(pattern.rules)
    if scan_patterns or pii.enabled or media.enabled:
        leaves: tuple[Leaf, ...] = walk(event.payload)
        read = with_decoded(leaves) if scan_patterns or pii.enabled else leaves
        if scan_patterns:
            pattern = builtin_scope(pattern, read)
            scan_patterns = bool(pattern.rules)
        if scan_patterns:
            out += check_pattern(pattern, read, budget)
        if pii.enabled:
            out += check_pii(pii, read, budget)
        if media.enabled:
            out += check_media(media, leaves)
    if st.order is not None or st.streak is not None:
        order = policy.order.for_event(svc, prio)
        if order.enabled:
            out += check_order(order, step_text(svc, event.action), st.order, st.streak)
    if st.values:
        value = policy.value.for_event(svc, prio)
        if value.enabled:
            out += check_values(value, st.values)
    return out


def _all(g: Guardrail[C]) -> list[C]:
    """Every variant of a guardrail's config: base, per service, per priority, combined."""
    return [g.base, *g.by_service.values(), *g.by_priority.values(), *g.resolved.values()]


#: Actions that hold an event back for a person.
_HOLDING = frozenset(("pause", "reject"))


def learning_holds(policy: Policy, service: str, priority: str) -> int:
    """The :mod:`~models.guardrails.state` ``HOLD_*`` / ``KEEP_*`` bits of an event: the
    learning rules that hold its service at some priority — their reports of it never teach
    them (protected learning: a held call is learned only once a person approves it; slots and
    step pairs do not carry the priority, so a priority the rule only flags must not teach what
    another one holds) — and those that pause this very event, whose lessons are kept for an
    approval.

    >>> from models.guardrails.policy import parse_policy_toml
    >>> p = parse_policy_toml("[guardrails.value.by_service.pay]\\naction = 'pause'\\n"
    ...                       "[guardrails.order.by_priority.critical]\\naction = 'reject'\\n")
    >>> learning_holds(p, "pay", "normal"), learning_holds(p, "crm", "normal")
    (11, 1)
    """
    out = 0
    for rule, held, keep in ((policy.order, HOLD_ORDER, KEEP_ORDER),
                             (policy.value, HOLD_VALUES, KEEP_VALUES)):
        variants = [rule.for_event(service, p) for p in PRIORITIES]
        if any(c.enabled and c.action in _HOLDING for c in variants):
            out |= held
        own = rule.for_event(service, priority)
        if own.enabled and own.action == "pause":
            out |= keep
    return out


def state_spec(policy: Policy) -> StateSpec:
    """What the Redis side must keep for ``policy`` (see :mod:`models.guardrails.state`):
    a counter is needed when any service/priority variant of its guardrail uses it."""
    vel = [c for c in _all(policy.velocity) if c.enabled]
    loops = [c for c in _all(policy.loop) if c.enabled]
    ents = [c for c in _all(policy.entropy) if c.enabled]
    costs = [c for c in _all(policy.cost) if c.enabled]
    order = policy.order.base if any(c.enabled for c in _all(policy.order)) else None
    values = policy.value.base if any(c.enabled for c in _all(policy.value)) else None
    history = max([c.history for c in loops] + [c.window - 1 for c in ents], default=0)
    base_vel = policy.velocity.base
    return StateSpec(
        agent_window_s=base_vel.per_agent.window_s if any(c.per_agent.limit for c in vel) else None,
        run_window_s=base_vel.per_run.window_s if any(c.per_run.limit for c in vel) else None,
        history=history,
        run_events=bool(ents),
        run_cost=any(c.per_run_limit > 0 for c in costs),
        agent_daily_cost=any(c.per_agent_daily_limit > 0 for c in costs),
        order=order,
        values=values,
    )
