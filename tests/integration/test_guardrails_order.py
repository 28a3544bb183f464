"""The step-order guardrail on a real Redis: the script against its Python reference, and the
rule through the engine (judged, learned after ``learn_after`` reports, open agents never
judged, an override's ``pause`` holding the event back, redeliveries answered the same).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.errors import ValidationError
from models.events import IngestEvent, parse_event
from models.guardrails import parse_policy_toml, state_spec
from models.guardrails.order import START, OrderConfig, OrderReference
from models.guardrails.state import HOLD_ORDER, KEEP_ORDER
from models.verdict import Verdict
from ratchet.engine.engine import Engine
from ratchet.store.guardrails import GuardBatch, GuardStore, make_guard_item, step_of
from ratchet.store.keys import Keys
from ratchet.store.policies import FixedPolicy

STEPS = ("crm:read", "crm:write", "mail:send", "pay:pay")
NORMAL = ("crm:read", "approvals:request", "payments:pay")


def _spec(cfg: OrderConfig) -> Any:
    base = state_spec(parse_policy_toml(""))
    return type(base)(base.agent_window_s, base.run_window_s, base.history, base.run_events,
                      base.run_cost, base.agent_daily_cost, cfg)


#: (run, step, 0 = the previous event again, 0 = held by the rule: reports do not teach)
event_st = st.tuples(st.integers(0, 3), st.sampled_from(STEPS), st.integers(0, 9),
                     st.integers(0, 3))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event_st, min_size=1, max_size=120),
       cuts=st.lists(st.integers(1, 120), max_size=8),
       learn_after=st.integers(0, 3), successors=st.integers(1, 3),
       cap=st.sampled_from([6, 10, 4096]), settled=st.integers(0, 3))
def test_script_judges_and_learns_as_the_reference(
    redis_url: str, events: list[tuple[int, str, int, int]], cuts: list[int],
    learn_after: int, successors: int, cap: int, settled: int,
) -> None:
    """Event by event, in any batching, with redeliveries (a repeated id answers what it
    answered the first time) and a full hash: the same findings (new pairs, too long streaks)
    and the same stored fields as :class:`OrderReference`."""
    cfg = OrderConfig(min_runs=1, min_support=2, max_successors=successors,
                      learn_after=learn_after, streak_settled=settled)
    asyncio.run(_both(redis_url, events, cuts, cfg, cap))


async def _both(redis_url: str, events: list[tuple[int, str, int, int]], cuts: list[int],
                cfg: OrderConfig, cap: int) -> None:
    redis_client = aioredis.Redis.from_url(redis_url)
    try:
        await _compare(redis_client, events, cuts, cfg, cap)
    finally:
        await redis_client.aclose()


async def _compare(redis_client: aioredis.Redis, events: list[tuple[int, str, int, int]],
                   cuts: list[int], cfg: OrderConfig, cap: int) -> None:
    store = GuardStore(redis_client, Keys(f"ord{uuid.uuid4().hex[:8]}"))
    store.order_cap = cap
    ref = OrderReference(cfg, cap)
    spec = _spec(cfg)
    items: list[Any] = []
    want: list[tuple[str, Any]] = []
    first: dict[str, tuple[bool, bool]] = {}
    for run, step, dup, held in events:
        if dup == 0 and items:  # the previous event again (same id, run and step)
            items.append(items[-1])
            want.append(("again", first[items[-1].event_id]))
            continue
        event_id = f"e{len(items)}"
        # held 0: the rule pauses it (held, lessons kept), 1: holds it elsewhere, else neither
        found = ref.step(f"r{run}", step, held <= 1, event_id, held == 0)
        first[event_id] = (found[0] is not None, found[1] is not None)
        want.append(("new", found))
        items.append(make_guard_item(event_id, f"r{run}", 0, "n", None, step, (),
                                     (HOLD_ORDER if held <= 1 else 0)
                                     | (KEEP_ORDER if held == 0 else 0)))
    got = []
    bounds = sorted({c for c in cuts if c < len(items)} | {0, len(items)})
    for lo, hi in itertools.pairwise(bounds):
        [answers] = await store.update([GuardBatch("t1", items[lo:hi], spec)])
        got += answers
    for (kind, expected), answer in zip(want, got, strict=True):
        state = answer.state
        if kind == "again":
            assert answer.duplicate
            assert (state.order is not None, state.streak is not None) == expected
        else:
            assert not answer.duplicate and (state.order, state.streak) == expected
    # and the state itself: field by field
    stored = await redis_client.hgetall(store.keys.guard_agent_keys("t1").order)
    assert {_field(f if isinstance(f, bytes) else f.encode()): int(v)
            for f, v in stored.items()} == ref.fields
    # a person's decisions on the held events (lua/guard_feedback.lua): approve teaches what
    # was reported and is still new, reject drops it; each applies once
    decided = [item for item in dict.fromkeys(items) if item.hold]
    for k, item in enumerate(decided):
        decision = ("approve", "reject", "approve")[k % 3]
        for _ in range(2):
            got_n = await store.feedback("t1", item.run_id, item.event_id, decision,
                                         max_distinct=8, margin=2, margin_below=4)
            assert got_n == ref.decide(item.event_id, decision)
    stored = await redis_client.hgetall(store.keys.guard_agent_keys("t1").order)
    assert {_field(f if isinstance(f, bytes) else f.encode()): int(v)
            for f, v in stored.items()} == ref.fields


def _field(raw: bytes) -> object:
    """A stored order field as :class:`OrderReference` names it (lua/guardrails.lua)."""
    if raw == b"r":
        return "r"
    if len(raw) == 9:
        return (raw[:1].decode(), step_of(raw[1:]))
    if len(raw) == 17:
        return ("p", (step_of(raw[1:9]), step_of(raw[9:])))
    return (step_of(raw[:8]), step_of(raw[8:]))


def ev(i: int, run: str, step: str, agent: str = "a1") -> IngestEvent:
    service, action = step.split(":")
    return parse_event({"event_id": f"{agent}-{run}-{i}-{uuid.uuid4().hex[:6]}",
                        "agent_id": agent, "run_id": run, "service": service,
                        "action": action, "payload": {"id": i}}, "p1")


def order_reasons(v: Verdict) -> list[dict[str, Any]]:
    return [dict(r.detail) for r in v.reasons if r.source == "guardrail:order"]


async def _settle(engine: Engine, runs: int, steps: tuple[str, ...], agent: str = "a1") -> None:
    for k in range(runs):
        await engine.decide([ev(i, f"{agent}-r{k}", s, agent) for i, s in enumerate(steps)])


async def test_an_unseen_order_is_reported_then_learned(redis_client: aioredis.Redis,
                                                        keys: Keys) -> None:
    engine = Engine.create(redis_client, keys=keys, policies=FixedPolicy(parse_policy_toml("")))
    await _settle(engine, 101, NORMAL)
    # skipping the approval: payments:pay straight after crm:read
    got = await engine.decide([ev(0, "x0", "crm:read"), ev(1, "x0", "payments:pay")])
    assert order_reasons(got[0]) == []
    [reason] = order_reasons(got[1])
    assert (reason["rule"], reason["from"], reason["to"]) == (
        "order.unseen", "crm:read", "payments:pay")
    assert (reason["from_seen"], reason["successors"], reason["agent_runs"]) == (101, 1, 102)
    assert got[1].action == "flag"
    # reported learn_after (5) times in all, then learned: the sixth passes
    flagged = [bool(order_reasons((await engine.decide(
        [ev(0, f"x{k}", "crm:read"), ev(1, f"x{k}", "payments:pay")]))[1]))
        for k in range(1, 6)]
    assert flagged == [True, True, True, True, False]
    # the usual order is still fine, and a start never seen is judged too
    assert not any(order_reasons(v) for v in await engine.decide(
        [ev(i, "y", s) for i, s in enumerate(NORMAL)]))
    [start] = await engine.decide([ev(0, "z", "payments:pay")])
    assert order_reasons(start)[0]["from"] == START


async def test_an_open_agent_is_never_judged(redis_client: aioredis.Redis, keys: Keys) -> None:
    """Three or more different calls after each call: nothing is judged, whatever comes."""
    engine = Engine.create(redis_client, keys=keys, policies=FixedPolicy(parse_policy_toml("")))
    calls = ("chat:reply", "search:web", "files:read", "mail:draft")
    for k in range(120):
        steps = tuple(calls[(k + j * (1 + k % 3)) % 4] for j in range(4))
        await engine.decide([ev(i, f"r{k}", s) for i, s in enumerate(steps)])
    got = await engine.decide([ev(i, "new", s) for i, s in enumerate(
        ("files:read", "chat:reply", "files:read", "mail:draft", "code:run"))])
    assert not any(order_reasons(v) for v in got)


async def test_a_pause_override_holds_the_event_back(redis_client: aioredis.Redis,
                                                     keys: Keys) -> None:
    policy = parse_policy_toml("[guardrails.order.by_service.payments]\naction = 'pause'\n")
    engine = Engine.create(redis_client, keys=keys, policies=FixedPolicy(policy))
    await _settle(engine, 101, NORMAL)
    got = await engine.decide([ev(0, "x", "crm:read"), ev(1, "x", "payments:pay")])
    assert got[1].action == "pause" and order_reasons(got[1])
    # held, it is never learned from its recurrence (attack run 7, F1: a pausing rule taught a
    # new first call by five runs that sent it): the tenth run still waits for a person
    again = [(await engine.decide([ev(0, f"x{k}", "crm:read"),
                                   ev(1, f"x{k}", "payments:pay")]))[1] for k in range(1, 10)]
    assert all(v.action == "pause" and order_reasons(v) for v in again)
    # until a person approves one: the pair is learned (order and chain), the next run passes
    await engine.feedback(again[0].chain_tag, again[0].run_id, again[0].event_id, "approve",
                          project_id="p1", agent_id="a1")
    after = await engine.decide([ev(0, "y", "crm:read"), ev(1, "y", "payments:pay")])
    assert order_reasons(after[1]) == [] and after[1].action == "allow"
    # an override cannot move what the script judges by
    with pytest.raises(ValidationError, match="set it at the top"):
        parse_policy_toml("[guardrails.order.by_service.payments]\nmin_runs = 5\n")


async def test_flagged_calls_cannot_open_the_step_before_a_held_one(
        redis_client: aioredis.Redis, keys: Keys) -> None:
    """Review of the F1 fix: a pair is judged only after a step with at most max_successors
    successors, and the crm service only flags — so runs of crm:read → crm:list / crm:note,
    reported and learned after learn_after runs, gave crm:read three successors, and the held
    crm:read → payments:pay was then no longer judged (and learned). Where the rule holds the
    service, a never-learned pair is judged however many successors the step before it has."""
    policy = parse_policy_toml("[guardrails.order.by_service.payments]\naction = 'pause'\n")
    engine = Engine.create(redis_client, keys=keys, policies=FixedPolicy(policy))
    await _settle(engine, 101, NORMAL)
    for k in range(6):  # open crm:read: two new successors, each reported then learned
        for i, nxt in enumerate(("crm:list", "crm:note")):
            await engine.decide([ev(0, f"o{k}-{i}", "crm:read"), ev(1, f"o{k}-{i}", nxt)])
    opened = await engine.decide([ev(0, "z0", "crm:read"), ev(1, "z0", "crm:list")])
    assert order_reasons(opened[1]) == []  # learned: crm:read has three successors now
    got = await engine.decide([ev(0, "z1", "crm:read"), ev(1, "z1", "payments:pay")])
    assert got[1].action == "pause" and order_reasons(got[1])


async def test_a_decoy_call_does_not_get_a_held_step_past(
        redis_client: aioredis.Redis, keys: Keys) -> None:
    """Attack run 8 (R1): a call the agent never made, sent just before a payment (and
    abandoned when it was paused), left the payment after a step followed fewer than
    min_support times — never judged, allowed. Into a held service a never-learned pair is
    judged however rarely the step before it was seen."""
    policy = parse_policy_toml("[guardrails.order.by_service.payments]\naction = 'pause'\n")
    engine = Engine.create(redis_client, keys=keys, policies=FixedPolicy(policy))
    await _settle(engine, 101, NORMAL)
    got = await engine.decide([ev(0, "d0", f"zz{uuid.uuid4().hex[:6]}:noop"),
                               ev(1, "d0", "payments:pay")])
    assert got[1].action == "pause" and order_reasons(got[1])
    # a service the rule only flags keeps the support rule (a rare step is not judged)
    got = await engine.decide([ev(0, "d1", f"zz{uuid.uuid4().hex[:6]}:noop"),
                               ev(1, "d1", "crm:read")])
    assert order_reasons(got[1]) == []


async def test_a_priority_the_rule_only_flags_does_not_teach_what_another_holds(
        redis_client: aioredis.Redis, keys: Keys) -> None:
    """Review of the F1 fix: pairs carry no priority, so normal-priority calls the rule only
    flags were learned after learn_after runs and the critical call (paused) was then not
    reported at all."""
    policy = parse_policy_toml("[guardrails.order.by_priority.critical]\naction = 'pause'\n")
    engine = Engine.create(redis_client, keys=keys, policies=FixedPolicy(policy))
    await _settle(engine, 101, NORMAL)
    for k in range(8):
        got = await engine.decide([ev(0, f"n{k}", "crm:read"), ev(1, f"n{k}", "payments:pay")])
        assert order_reasons(got[1]) and got[1].action == "flag"
    critical = parse_event({"event_id": f"c-{uuid.uuid4().hex[:6]}", "agent_id": "a1",
                            "run_id": "c", "service": "payments", "action": "pay",
                            "priority": "critical", "payload": {"id": 1}}, "p1")
    got = await engine.decide([ev(0, "c", "crm:read"), critical])
    assert got[1].action == "pause" and order_reasons(got[1])


async def test_a_redelivery_answers_the_same(redis_client: aioredis.Redis, keys: Keys) -> None:
    engine = Engine.create(redis_client, keys=keys, policies=FixedPolicy(parse_policy_toml("")))
    await _settle(engine, 101, NORMAL)
    batch = [ev(0, "x", "crm:read"), ev(1, "x", "payments:pay")]
    first = await engine.decide(batch)
    again = await engine.decide(batch)
    assert order_reasons(first[1]) and order_reasons(again[1])
    assert "redelivery" in order_reasons(again[1])[0]["note"]
    # the redelivery was not counted: the pair still waits for four more reports
    flagged = [bool(order_reasons((await engine.decide(
        [ev(0, f"x{k}", "crm:read"), ev(1, f"x{k}", "payments:pay")]))[1]))
        for k in range(1, 6)]
    assert flagged == [True, True, True, True, False]


async def test_a_streak_longer_than_ever_is_reported(redis_client: aioredis.Redis,
                                                     keys: Keys) -> None:
    """Pages listed three times back to back in every run (with another service between runs'
    steps): a fourth time is reported; three stays fine; a call in between breaks a streak."""
    engine = Engine.create(redis_client, keys=keys, policies=FixedPolicy(parse_policy_toml("")))
    usual = ("crm:list", "crm:list", "crm:list", "mail:send")
    await _settle(engine, 101, usual)
    got = await engine.decide([ev(i, "x", s) for i, s in enumerate(
        ("crm:list", "crm:list", "crm:list", "crm:list", "mail:send"))])
    assert [[d["rule"] for d in order_reasons(v)] for v in got] == [
        [], [], [], ["order.streak"], []]
    detail = order_reasons(got[3])[0]
    assert (detail["step"], detail["streak"], detail["longest"]) == ("crm:list", 4, 3)
    assert detail["reached"] == 102  # 101 runs, and this one before its fourth call
    assert not any(order_reasons(v) for v in await engine.decide(
        [ev(i, "y", s) for i, s in enumerate(usual)]))
    # switched off: nothing
    quiet = Engine.create(redis_client, keys=Keys(keys.prefix + "q"), policies=FixedPolicy(
        parse_policy_toml("[guardrails.order]\nstreak_settled = 0\n")))
    await _settle(quiet, 101, usual)
    got = await quiet.decide([ev(i, "x", s) for i, s in enumerate(("crm:list",) * 4)])
    assert not any(order_reasons(v) for v in got)


async def test_a_runaway_loop_does_not_teach_itself(redis_client: aioredis.Redis,
                                                    keys: Keys) -> None:
    """Reports count once a run towards learn_after: one run of 20 calls back to back is
    reported from the fourth call to the last, and the next such run is reported again."""
    engine = Engine.create(redis_client, keys=keys, policies=FixedPolicy(parse_policy_toml("")))
    await _settle(engine, 101, ("crm:list", "crm:list", "crm:list", "mail:send"))
    for run in ("loop-1", "loop-2"):
        got = await engine.decide([ev(i, run, "crm:list") for i in range(20)])
        assert [bool(order_reasons(v)) for v in got] == [False] * 3 + [True] * 17, run


async def test_the_stored_answer_stays_readable_by_the_release_before(
        redis_client: aioredis.Redis, keys: Keys) -> None:
    """A judged event's remembered answer keeps its first byte under 32 (an older script reads
    bit 4 as nothing and never takes it for text) and carries the order bits in its last."""
    engine = Engine.create(redis_client, keys=keys, policies=FixedPolicy(parse_policy_toml("")))
    await _settle(engine, 101, NORMAL)
    batch = [ev(0, "x", "crm:read"), ev(1, "x", "payments:pay")]
    await engine.decide(batch)
    from ratchet.store.keys import event_field
    tag = keys.guard_tag("p1", "a1")
    stored = await redis_client.hget(keys.guard_run_keys(tag, "x").state,
                                     event_field(batch[1].event_id))
    assert stored is not None and 16 <= stored[0] < 32 and stored[-1] == 16


def test_a_full_hash_still_judges_what_it_has() -> None:
    """Junk steps that fill an agent's order hash add nothing past the cap, and a settled step's
    new successor is still reported (filling the hash does not switch the rule off; the
    agreement test holds the script to the same)."""
    cfg = OrderConfig(min_runs=1, min_support=2, max_successors=1, streak_settled=0)
    ref = OrderReference(cfg, cap=12)
    for k in range(4):
        assert ref.step(f"r{k}", "crm:read") == (None, None)
        ref.step(f"r{k}", "mail:send")
    for k in range(20):
        ref.step("junk", f"x:{k}")
    assert len(ref.fields) == 12
    found, _ = ref.step("r9", "crm:read")
    assert found is None  # the start's successor (crm:read) is known
    found, _ = ref.step("r9", "pay:pay")
    assert found is not None and found.previous == "crm:read"
