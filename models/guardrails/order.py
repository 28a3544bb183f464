"""Step order: a call that never followed the run's previous call, for an agent whose order is set.

The Markov chains are per service, so an order *across* services — ``payments.pay`` straight
after ``crm.read`` when the agent always went ``crm.read → approvals.request → payments.pay`` —
is invisible to them. This guardrail keeps, per agent, which call (``service:action``) followed
which within a run (the start of a run counts as a step) and judges a pair never seen before,
when the agent's order there is settled:

- the agent has had more than ``min_runs`` runs;
- the previous step was followed at least ``min_support`` times (learned);
- from it the agent has only ever gone to at most ``max_successors`` distinct calls.

A busy, open-ended agent (an assistant that calls anything after anything) has many successors
per step and is never judged, so its variety raises nothing.

Streaks (``order.streak``): a call repeated back to back in a run more times than this agent
ever repeated it, once that longest repeat was reached at least ``streak_settled`` times and
the call's successors are settled as above (a pagination that always stops at 3 pages; a call
that never repeats, seen that often). The chains cannot tell: they keep a call's repeats per
service, where another service's calls in between do not break a streak, and their repeat limit
leaves a margin.

Learning: every event that is not judged new is counted (whatever the chains or the other
guardrails answer); a new pair (a longer streak) the rule reports is learned once it has been
reported in ``learn_after`` different runs (0: never — a policy change is then the only way on),
so a runaway loop cannot teach itself. Reports of events the rule itself holds (its action for
the event is pause or reject) never count: a held call waits for a person, and repeating it
teaches nothing (an attack run taught a pausing rule a new first call by sending it in five
runs). An agent whose hash is full (``ORDER_CAP`` fields: action
names carrying ids, say) learns nothing new and is still judged on what it has (filling the hash
does not switch the rule off; a new pair reported then cannot be learned while it is full). The
counting is atomic in Redis, per agent (``lua/guardrails.lua``); this module only turns what the
script found into a reason.

The rule and its defaults were measured on our tuning seeds and two outside generators before it
was built (docs/detection.md, "Detection v5").

>>> cfg = OrderConfig()
>>> found = OrderFinding("crm:read", 120, 1, 340)
>>> [r.detail["rule"] for r in check_order(cfg, "payments:pay", found)]
['order.unseen']
>>> check_order(cfg, "payments:pay", None)
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
    check_keys,
    forbid_keys,
    ints,
    join,
)
from models.guardrails.reports import REDELIVERED_NOTE, RunReports
from models.verdict import Reason

__all__ = [
    "NAME",
    "REDELIVERED_PAIR",
    "REDELIVERED_STREAK",
    "SOURCE",
    "START",
    "OrderConfig",
    "OrderFinding",
    "OrderReference",
    "StreakFinding",
    "check_order",
    "order_to_dict",
    "parse_order",
    "step_text",
]

NAME = "order"
SOURCE = f"guardrail:{NAME}"
#: What the reason calls the step before a run's first call.
START = "(start of run)"
_KEYS = ("enabled", "action", "min_runs", "min_support", "max_successors", "learn_after",
         "streak_settled")
#: Judged once per agent by the script: one value per policy, not per service or priority.
_TOP_ONLY = ("min_runs", "min_support", "max_successors", "learn_after", "streak_settled")


@dataclass(frozen=True, slots=True)
class OrderConfig:
    enabled: bool = True
    action: str = "flag"
    #: The agent's runs (this one included) must be more than this.
    min_runs: int = 100
    #: Times the previous step was followed (learned) before its successors are judged.
    min_support: int = 20
    #: Most distinct calls learned after the previous step for it to be judged.
    max_successors: int = 2
    #: Reports of a new pair (of a step's too long streak) after which it is learned (0 = never).
    learn_after: int = 5
    #: Times a step's longest streak was reached before a longer one is judged (0 = off).
    streak_settled: int = 30


@dataclass(frozen=True, slots=True)
class OrderFinding:
    """What the script found for an event whose pair it judged new."""

    #: The previous step (``service:action``, or :data:`START`).
    previous: str
    #: Times the previous step was followed, learned.
    from_seen: int
    #: Distinct calls learned after it.
    successors: int
    #: The agent's runs so far.
    agent_runs: int


@dataclass(frozen=True, slots=True)
class StreakFinding:
    """What the script found for an event whose streak it judged too long."""

    #: The call's repeats back to back in this run, this one included.
    streak: int
    #: The longest streak of the call learned for the agent.
    longest: int
    #: Times that longest streak was reached.
    reached: int


def step_text(service: str, action: str) -> str:
    """A step as reasons name it.

    >>> step_text("crm", "contacts.read")
    'crm:contacts.read'
    """
    return f"{service}:{action}"


def parse_order(
    table: Mapping[str, Any], path: str, base: OrderConfig, *, override: bool = False
) -> OrderConfig:
    """Apply ``table`` over ``base``; an override may switch the rule and set its action only."""
    check_keys(table, _KEYS, path)
    if override:
        forbid_keys(table, _TOP_ONLY, path,
                    "the order is judged once per agent, across services; set it at the top")
    f = Fields(table, path)
    return OrderConfig(
        enabled=f.get("enabled", base.enabled, as_bool),
        action=f.get("action", base.action, as_action),
        min_runs=f.get("min_runs", base.min_runs, ints(1, 1_000_000)),
        min_support=f.get("min_support", base.min_support, ints(1, 1_000_000)),
        max_successors=f.get("max_successors", base.max_successors, ints(1, 64)),
        learn_after=f.get("learn_after", base.learn_after, ints(0, 1_000_000)),
        streak_settled=f.get("streak_settled", base.streak_settled, ints(0, 1_000_000)),
    )


def order_to_dict(cfg: OrderConfig) -> dict[str, Any]:
    return {
        "enabled": cfg.enabled,
        "action": cfg.action,
        "min_runs": cfg.min_runs,
        "min_support": cfg.min_support,
        "max_successors": cfg.max_successors,
        "learn_after": cfg.learn_after,
        "streak_settled": cfg.streak_settled,
    }


#: What a redelivered event's findings are (the counts of its first decision are not kept).
REDELIVERED_PAIR = OrderFinding("", 0, 0, 0)
REDELIVERED_STREAK = StreakFinding(0, 0, 0)


def _note(found: OrderFinding) -> str:
    if found.previous == START:
        return (f"no run of this agent started with this call; its runs started with "
                f"{found.successors} other call(s) ({found.from_seen} runs learned)")
    return (f"this call never followed {found.previous} in this agent's runs; after it the "
            f"agent went on to {found.successors} other call(s) ({found.from_seen} times learned)")


def check_order(cfg: OrderConfig, step: str, found: OrderFinding | None,
                streak: StreakFinding | None = None) -> list[Reason]:
    """The reasons for an event whose pair the script judged new (``found``) or whose streak
    it judged too long (``streak``); None: not judged so, or no state."""
    if not cfg.enabled or (found is None and streak is None):
        return []
    out = [] if found is None else [_unseen(cfg, step, found)]
    if streak == REDELIVERED_STREAK:
        out.append(Reason(SOURCE, cfg.action, {"rule": join(NAME, "streak"), "step": step,
                                               "note": REDELIVERED_NOTE}))
    elif streak is not None:
        out.append(Reason(SOURCE, cfg.action, {
            "rule": join(NAME, "streak"),
            "step": step,
            "streak": streak.streak,
            "longest": streak.longest,
            "reached": streak.reached,
            "note": (f"this call back to back {streak.streak} times in a run; this agent never "
                     f"repeated it more than {streak.longest} times ({streak.reached} times "
                     "that long)"),
        }))
    return out


def _unseen(cfg: OrderConfig, step: str, found: OrderFinding) -> Reason:
    if found == REDELIVERED_PAIR:
        return Reason(SOURCE, cfg.action, {"rule": join(NAME, "unseen"), "to": step,
                                           "note": REDELIVERED_NOTE})
    detail: dict[str, object] = {
        "rule": join(NAME, "unseen"),
        "from": found.previous,
        "to": step,
        "from_seen": found.from_seen,
        "successors": found.successors,
        "agent_runs": found.agent_runs,
        "note": _note(found),
    }
    if cfg.learn_after:
        detail["learned_after"] = cfg.learn_after
    return Reason(SOURCE, cfg.action, detail)


class OrderReference:
    """The script's step-order counting in plain Python, for one agent (the agreement tests
    compare the two event by event): :meth:`step` judges and learns one new event."""

    def __init__(self, cfg: OrderConfig, cap: int) -> None:
        self.cfg, self.cap = cfg, cap
        self.fields: dict[object, int] = {}
        self.last: dict[str, tuple[str, int]] = {}
        #: What each run reported already (a report counts towards learn_after once a run).
        self.reported = RunReports()
        #: Per held event: what approving it teaches (lua/guard_feedback.lua).
        self.lessons: dict[str, list[tuple[str, str, object]]] = {}

    def _set(self, field: object, value: int) -> bool:
        if self.fields.get(field, 0) == 0 and value != 0 and len(self.fields) >= self.cap:
            return False
        if value == 0:
            self.fields.pop(field, None)
        else:
            self.fields[field] = value
        return True

    def _learn(self, prev: str, pair: tuple[str, str], count: int) -> None:
        if count == 0:
            if not self._set(pair, 1):
                return
            self._set(("s", prev), self.fields.get(("s", prev), 0) + 1)
        else:
            self._set(pair, count + 1)
        self._set(("t", prev), self.fields.get(("t", prev), 0) + 1)

    def step(self, run: str, step: str, held: bool = False, event: str = "",
             keep: bool = False) -> tuple[OrderFinding | None, StreakFinding | None]:
        """``held``: the rule holds the event's service (at some priority), so what it reports
        does not count towards ``learn_after``, a never-learned pair is judged however often
        and by however many calls the step before it was followed (a decoy step, or flagged
        calls elsewhere, cannot get it past), and a longer streak however many successors the
        step has; ``keep``: the rule pauses this event, so what it reports is kept as the
        lessons of ``event`` for :meth:`decide`."""
        get = self.fields.get
        prev, streak = self.last.get(run, (None, 0))
        if prev is None:
            prev = START
            self._set("r", get("r", 0) + 1)
        streak = streak + 1 if prev == step else 1
        self.last[run] = (step, streak)
        pair = (prev, step)
        count = get(pair, 0)
        cfg = self.cfg
        found = None
        if count == 0 and get("r", 0) > cfg.min_runs and (held or (
                get(("t", prev), 0) >= cfg.min_support
                and get(("s", prev), 0) <= cfg.max_successors)):
            found = OrderFinding(prev, get(("t", prev), 0), get(("s", prev), 0), get("r", 0))
            if keep:
                self.lessons.setdefault(event, []).append(("x", prev, step))
            if not held and self.reported.first(run, ("x", pair)):
                waiting = get(("p", pair), 0) + 1
                if cfg.learn_after > 0 and waiting >= cfg.learn_after:
                    self._set(("p", pair), 0)
                    self._learn(prev, pair, count)
                else:
                    self._set(("p", pair), waiting)
        else:
            self._learn(prev, pair, count)
        too_long = None
        if cfg.streak_settled > 0:
            longest, reached = get(("m", step), 0), get(("h", step), 0)
            if (streak > longest and get("r", 0) > cfg.min_runs
                    and get(("t", step), 0) >= cfg.min_support
                    and (held or get(("s", step), 0) <= cfg.max_successors)
                    and reached >= cfg.streak_settled):
                too_long = StreakFinding(streak, longest, reached)
                if keep:
                    self.lessons.setdefault(event, []).append(("y", step, streak))
                if not held and self.reported.first(run, ("y", step)):
                    waiting = get(("l", step), 0) + 1
                    if cfg.learn_after > 0 and waiting >= cfg.learn_after:
                        self._set(("l", step), 0)
                        self._set(("m", step), streak)
                        self._set(("h", step), 1)
                    else:
                        self._set(("l", step), waiting)
            elif streak > longest:
                self._set(("m", step), streak)
                self._set(("h", step), 1)
            elif streak == longest:
                self._set(("h", step), reached + 1)
        return found, too_long

    def decide(self, event: str, decision: str) -> int:
        """A person's decision on a held event (lua/guard_feedback.lua): approve learns what
        was reported for it and is still new, reject drops it. Lessons applied."""
        applied = 0
        for kind, step, value in self.lessons.pop(event, []) if decision == "approve" else ():
            if kind == "x":
                prev, to = step, str(value)
                if self.fields.get((prev, to), 0) == 0:
                    self._learn(prev, (prev, to), 0)
                    applied += 1
            elif isinstance(value, int) and value > self.fields.get(("m", step), 0):
                self._set(("m", step), value)
                self._set(("h", step), 1)
                applied += 1
        self.lessons.pop(event, None)
        return applied
