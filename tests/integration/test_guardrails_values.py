"""The value guardrail on a real Redis: the script against its Python reference, and the rule
through the engine (a number far out of range and a new category value reported, learned after
``learn_after`` runs, open fields never judged, an override's ``pause``, redeliveries).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import struct
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.errors import ValidationError
from models.events import IngestEvent, parse_event
from models.guardrails import parse_policy_toml, state_spec
from models.guardrails.state import HOLD_VALUES, KEEP_VALUES
from models.guardrails.values import (
    CATEGORY,
    COUNT_MAX,
    RANGE,
    ZERO,
    Observation,
    ValueConfig,
    ValueReference,
    magnitude,
    observations,
)
from models.verdict import Verdict
from ratchet.engine.engine import Engine
from ratchet.store.guardrails import GuardBatch, GuardStore, make_guard_item
from ratchet.store.keys import Keys
from ratchet.store.policies import FixedPolicy

#: Slots of the agreement test: (path, kind); the slot bytes are the path's, padded. Range
#: magnitudes are 122..134, on both sides of zero's (128): negative, positive and mixed ranges.
SLOTS = (("a", RANGE), ("b", RANGE), ("c", CATEGORY), ("d", CATEGORY))


def _obs(which: int, value: int) -> Observation:
    path, kind = SLOTS[which]
    if kind == RANGE:  # 99: zero (magnitude 190), read as its mirror against negative ranges
        return Observation(path, kind, ZERO if value == 99 else 122 + value, path.encode() * 8)
    return Observation(path, kind, 1000 + value, path.encode() * 8)


def _spec(cfg: ValueConfig) -> Any:
    base = state_spec(parse_policy_toml("[guardrails.order]\nenabled = false\n"))
    return type(base)(base.agent_window_s, base.run_window_s, base.history, base.run_events,
                      base.run_cost, base.agent_daily_cost, None, cfg)


#: Values mostly in a narrow band (ranges and sets settle), sometimes one, two or more steps
#: out (each margin's edge), sometimes far.
value_st = st.sampled_from((5, 6, 5, 6, 5, 6, 7, 8, 4, 3, 2, 9, 12, 0, 99))
#: (run, observations, 0 = the previous event again, 0 = held by the rule: reports do not teach)
event_st = st.tuples(st.integers(0, 3),
                     st.lists(st.tuples(st.integers(0, 3), value_st), max_size=3),
                     st.integers(0, 9), st.integers(0, 3))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event_st, min_size=1, max_size=120),
       cuts=st.lists(st.integers(1, 120), max_size=8),
       support=st.integers(1, 3), margin=st.integers(0, 2), below=st.integers(0, 3),
       distinct=st.integers(1, 3), learn_after=st.integers(0, 3),
       cap=st.sampled_from([4, 5, 6, 4096]))
def test_script_judges_and_learns_as_the_reference(
    redis_url: str, events: list[tuple[int, list[tuple[int, int]], int, int]], cuts: list[int],
    support: int, margin: int, below: int, distinct: int, learn_after: int, cap: int,
) -> None:
    """Event by event, in any batching, with redeliveries (a repeated id answers what it
    answered the first time) and a full hash: the same findings and the same stored fields as
    :class:`ValueReference`."""
    cfg = ValueConfig(min_support=support, margin=margin, margin_below=below,
                      max_distinct=distinct, learn_after=learn_after)
    asyncio.run(_both(redis_url, events, cuts, cfg, cap))


def test_script_agrees_on_seeded_random_traffic(redis_url: str) -> None:
    """The same comparison on 120 seeded random sequences (hypothesis favours short, simple
    lists; these reach every margin's edge and the caps many times over)."""
    values = (5, 6, 5, 6, 5, 6, 7, 8, 4, 3, 2, 9, 12, 0, 99, 1, 1, 1)

    async def sweep() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            for trial in range(120):
                r = random.Random(trial)
                cfg = ValueConfig(min_support=r.randint(1, 3), margin=r.randint(0, 2),
                                  margin_below=r.randint(0, 3), max_distinct=r.randint(1, 3),
                                  learn_after=r.randint(0, 3))
                events = [(r.randint(0, 3),
                           [(r.randint(0, 3), r.choice(values)) for _ in range(r.randint(0, 3))],
                           r.randint(0, 9), r.randint(0, 3)) for _ in range(r.randint(1, 120))]
                cuts = [r.randint(1, 120) for _ in range(r.randint(0, 6))]
                await _compare(client, events, cuts, cfg, r.choice((4, 5, 6, 8, 4096)))
        finally:
            await client.aclose()

    asyncio.run(sweep())


async def _both(redis_url: str, events: list[tuple[int, list[tuple[int, int]], int, int]],
                cuts: list[int], cfg: ValueConfig, cap: int) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        await _compare(client, events, cuts, cfg, cap)
    finally:
        await client.aclose()


async def _compare(client: aioredis.Redis, events: list[tuple[int, list[tuple[int, int]], int, int]],
                   cuts: list[int], cfg: ValueConfig, cap: int) -> None:
    store = GuardStore(client, Keys(f"val{uuid.uuid4().hex[:8]}"))
    store.value_cap = cap
    ref = ValueReference(cfg, cap)
    spec = _spec(cfg)
    items: list[Any] = []
    want: list[tuple[str, Any]] = []
    first: dict[str, set[int]] = {}
    for run, obs, dup, held in events:
        if dup == 0 and items:  # the previous event again (same id, run and values)
            items.append(items[-1])
            want.append(("again", first[items[-1].event_id]))
            continue
        event_id = f"e{len(items)}"
        values = tuple(_obs(w, v) for w, v in obs)
        # held 0: the rule pauses it (held, lessons kept), 1: holds it elsewhere, else neither
        found = ref.event(f"r{run}", values, held <= 1, event_id, held == 0)
        first[event_id] = {f.kind for f in found}
        want.append(("new", found))
        items.append(make_guard_item(event_id, f"r{run}", 0, "n", None, "", values,
                                     (HOLD_VALUES if held <= 1 else 0)
                                     | (KEEP_VALUES if held == 0 else 0)))
    got = []
    bounds = sorted({c for c in cuts if c < len(items)} | {0, len(items)})
    for lo, hi in itertools.pairwise(bounds):
        [answers] = await store.update([GuardBatch("t1", items[lo:hi], spec)])
        got += answers
    for (kind, expected), answer in zip(want, got, strict=True):
        if kind == "again":
            assert answer.duplicate
            assert {f.kind for f in answer.state.values} == expected
        else:
            assert not answer.duplicate and answer.state.values == expected
    stored = await client.hgetall(store.keys.guard_agent_keys("t1").values)
    assert dict(_field(f, v) for f, v in stored.items()) == ref.fields
    # a person's decisions on the held events (lua/guard_feedback.lua): approve teaches what
    # was reported and is still new, reject drops it; each applies once
    decided = [item for item in dict.fromkeys(items) if item.hold]
    for k, item in enumerate(decided):
        decision = ("approve", "reject", "approve")[k % 3]
        for _ in range(2):  # a redelivered decision is a no-op
            got_n = await store.feedback("t1", item.run_id, item.event_id, decision,
                                         max_distinct=cfg.max_distinct, margin=cfg.margin,
                                         margin_below=cfg.margin_below)
            assert got_n == ref.decide(item.event_id, decision)
    stored = await client.hgetall(store.keys.guard_agent_keys("t1").values)
    assert dict(_field(f, v) for f, v in stored.items()) == ref.fields


def _field(raw: bytes, value: bytes) -> tuple[object, object]:
    """A stored value field as :class:`ValueReference` keeps it (lua/guardrails.lua)."""
    if len(raw) == 8:
        kind = dict(SLOTS)[raw[:1].decode()]
        count, changed = struct.unpack_from("<II", value)
        if kind == RANGE:
            return raw, [count, changed, value[8], value[9]]
        if len(value) == 9:
            return raw, [count, changed, None]
        return raw, [count, changed, {int.from_bytes(value[i:i + 4], "little")
                                      for i in range(8, len(value), 4)}]
    assert raw[:1] == b"p"
    slot, what = raw[1:9], raw[9:]
    key: object = what == b"+" if len(what) == 1 else int.from_bytes(what, "little")
    return ("p", slot, key), int(value)


def ev(run: str, payload: dict[str, Any], *, service: str = "payments",
       action: str = "create_payout", agent: str = "a1") -> IngestEvent:
    return parse_event({"event_id": f"{agent}-{run}-{uuid.uuid4().hex[:8]}", "agent_id": agent,
                        "run_id": run, "service": service, "action": action,
                        "payload": payload}, "p1")


def value_reasons(v: Verdict) -> list[dict[str, Any]]:
    return [dict(r.detail) for r in v.reasons if r.source == "guardrail:value"]


def _payout(k: int) -> dict[str, Any]:
    return {"amount": 90 + (k * 37) % 3900, "currency": ("USD", "EUR")[k % 2], "dry_run": True,
            "claim": f"CLM-{100000 + k}"}


async def _settle(engine: Engine, runs: int) -> None:
    for k in range(runs):
        await engine.decide([ev(f"r{k}", _payout(k))])


async def test_a_value_out_of_range_is_reported_then_learned(
        redis_client: aioredis.Redis, keys: Keys) -> None:
    engine = Engine.create(redis_client, keys=keys, policies=FixedPolicy(parse_policy_toml("")))
    await _settle(engine, 100)
    big = dict(_payout(0), amount=98_000.0)
    [got] = await engine.decide([ev("x0", big)])
    [reason] = value_reasons(got)
    assert (reason["rule"], reason["paths"]) == ("value.range", ["amount"])
    assert "98000" not in str(reason) and got.action == "flag"
    assert "2^6 .. 2^11" in reason["note"]
    # a usual one passes
    [ok] = await engine.decide([ev("ok", dict(big, amount=1_234))])
    assert value_reasons(ok) == []
    # reported in learn_after (3) runs, then learned: the fourth run passes; a second report in
    # one run does not count
    twice = await engine.decide([ev("x1", big), ev("x1", big)])
    flagged = [bool(value_reasons(twice[0])), bool(value_reasons(twice[1]))]
    for k in range(2, 4):
        [v] = await engine.decide([ev(f"x{k}", big)])
        flagged.append(bool(value_reasons(v)))
    assert flagged == [True, True, True, False]
    # within the margin of the range learned (2^16 .. 2^16 + 2): not judged
    [near] = await engine.decide([ev("near", dict(big, amount=300_000))])
    assert value_reasons(near) == []


async def test_a_new_category_value_is_reported(redis_client: aioredis.Redis, keys: Keys) -> None:
    """A boolean that was always true, a currency never used: reported by path; an id-like
    field (a new value every time) is open and never judged."""
    engine = Engine.create(redis_client, keys=keys, policies=FixedPolicy(parse_policy_toml("")))
    await _settle(engine, 100)
    [got] = await engine.decide([ev("x", dict(_payout(1), dry_run=False, currency="XBT"))])
    [reason] = value_reasons(got)
    assert (reason["rule"], reason["paths"]) == ("value.unseen", ["currency", "dry_run"])
    assert "2 distinct" in reason["note"]
    [fresh_claim] = await engine.decide([ev("y", dict(_payout(2), claim="CLM-999999"))])
    assert value_reasons(fresh_claim) == []


async def test_an_unsettled_field_is_not_judged(redis_client: aioredis.Redis, keys: Keys) -> None:
    """Too few values seen, or a range still growing: nothing is judged."""
    engine = Engine.create(redis_client, keys=keys, policies=FixedPolicy(parse_policy_toml("")))
    await _settle(engine, 20)  # fewer than min_support (30)
    [got] = await engine.decide([ev("x", dict(_payout(0), amount=98_000.0))])
    assert value_reasons(got) == []
    growing = Engine.create(redis_client, keys=Keys(keys.prefix + "g"),
                            policies=FixedPolicy(parse_policy_toml("")))
    for k in range(80):  # the amount doubles every 10 calls: never 30 calls unchanged
        await growing.decide([ev(f"r{k}", dict(_payout(k), amount=2 ** (k // 10)))])
    [got] = await growing.decide([ev("x", dict(_payout(0), amount=2 ** 20))])
    assert value_reasons(got) == []


async def test_a_pause_override_and_switching_off(redis_client: aioredis.Redis,
                                                  keys: Keys) -> None:
    policy = parse_policy_toml("[guardrails.value.by_service.payments]\naction = 'pause'\n")
    engine = Engine.create(redis_client, keys=keys, policies=FixedPolicy(policy))
    await _settle(engine, 100)
    [got] = await engine.decide([ev("x", dict(_payout(0), amount=98_000.0))])
    assert got.action == "pause" and value_reasons(got)
    with pytest.raises(ValidationError, match="set the rule's settings at the top"):
        parse_policy_toml("[guardrails.value.by_service.payments]\nmargin = 5\n")
    off = Engine.create(redis_client, keys=Keys(keys.prefix + "o"), policies=FixedPolicy(
        parse_policy_toml("[guardrails.value]\nenabled = false\n")))
    await _settle(off, 100)
    [got] = await off.decide([ev("x", dict(_payout(0), amount=98_000.0))])
    assert value_reasons(got) == []


async def test_a_value_a_pausing_rule_holds_is_never_learned_from_its_recurrence(
        redis_client: aioredis.Redis, keys: Keys) -> None:
    """Attack run 7 (F1): with the value rule pausing payouts, a payout to a new account was
    paused three times, then allowed with no reason on the fourth run — nobody approved it.
    A held value now waits for a person however often it comes; with the rule flagging (it
    holds nothing) the same recurrence is still learned after learn_after runs."""
    policy = parse_policy_toml("[guardrails.value.by_service.payments]\naction = 'pause'\n")
    engine = Engine.create(redis_client, keys=keys, policies=FixedPolicy(policy))
    await _settle(engine, 100)
    big = dict(_payout(0), amount=98_000.0)
    actions = [(await engine.decide([ev(f"x{k}", big)]))[0] for k in range(8)]
    assert [bool(value_reasons(v)) for v in actions] == [True] * 8
    assert {v.action for v in actions} == {"pause"}
    # a person approves one: the value is learned (the rule and the chain), the next passes;
    # a rejection teaches nothing
    await engine.feedback(actions[1].chain_tag, actions[1].run_id, actions[1].event_id,
                          "reject", project_id="p1", agent_id="a1")
    [still] = await engine.decide([ev("x8", big)])
    assert still.action == "pause" and value_reasons(still)
    await engine.feedback(actions[0].chain_tag, actions[0].run_id, actions[0].event_id,
                          "approve", project_id="p1", agent_id="a1")
    [taught] = await engine.decide([ev("x9", big)])
    assert value_reasons(taught) == [] and taught.action == "allow"
    # attack run 9 (R2): the approval reaches 98,000 (its magnitude, 2^16), not four to eight
    # times past it — 500,000 (2^18) is paused again, and the person sees its magnitude
    [far] = await engine.decide([ev("x10", dict(big, amount=500_000.0))])
    assert far.action == "pause", far.reasons
    [reason] = value_reasons(far)
    assert reason["magnitude"] == "2^18" and "(about 2^18)" in reason["note"]
    [near] = await engine.decide([ev("x11", dict(big, amount=120_000.0))])
    assert near.action == "allow" and value_reasons(near) == []  # the same magnitude
    # the rule's other services, which it only flags, still learn by recurrence
    crm = Engine.create(redis_client, keys=Keys(keys.prefix + "f"), policies=FixedPolicy(policy))
    for k in range(100):
        await crm.decide([ev(f"r{k}", _payout(k), service="crm")])
    flagged = [(await crm.decide([ev(f"y{k}", big, service="crm")]))[0] for k in range(5)]
    assert [bool(value_reasons(v)) for v in flagged] == [True, True, True, False, False]
    assert {v.action for v in flagged[:3]} == {"flag"}


async def test_a_held_range_cannot_be_ratcheted_up_inside_its_margin(
        redis_client: aioredis.Redis, keys: Keys) -> None:
    """Attack run 8 (R2): a price learned at 1-100 under a pausing rule was raised about 4x a
    run — each step inside the margin, so learned at once — to 400,000, every step allowed. A
    held slot's settled range now widens only by approvals: steps inside the margin pass, the
    next one past it pauses."""
    policy = parse_policy_toml("[guardrails.value.by_service.payments]\naction = 'pause'\n")
    engine = Engine.create(redis_client, keys=keys, policies=FixedPolicy(policy))
    await _settle(engine, 100)  # amounts 90 .. 3,989
    actions = []
    for k, amount in enumerate((12_000, 14_000, 15_500, 60_000, 240_000)):
        [v] = await engine.decide([ev(f"u{k}", dict(_payout(0), amount=amount))])
        actions.append((v.action, bool(value_reasons(v))))
    assert actions[:3] == [("allow", False)] * 3  # within 4x of the learned 3,989
    assert actions[3:] == [("pause", True)] * 2  # the range did not follow them up


async def test_a_redelivery_answers_the_same(redis_client: aioredis.Redis, keys: Keys) -> None:
    engine = Engine.create(redis_client, keys=keys, policies=FixedPolicy(parse_policy_toml("")))
    await _settle(engine, 100)
    batch = [ev("x", dict(_payout(0), amount=98_000.0))]
    first = await engine.decide(batch)
    again = await engine.decide(batch)
    assert value_reasons(first[0])[0]["rule"] == value_reasons(again[0])[0]["rule"] == (
        "value.range")
    assert "redelivery" in value_reasons(again[0])[0]["note"]
    # the redelivery was not counted: two more runs are reported before it is learned
    flagged = []
    for k in range(1, 4):
        [v] = await engine.decide([ev(f"x{k}", dict(_payout(0), amount=98_000.0))])
        flagged.append(bool(value_reasons(v)))
    assert flagged == [True, True, False]


def test_observations_read_numbers_lengths_and_text() -> None:
    cfg = ValueConfig(max_values=7, max_text=5)
    got = observations("s", "a", {"n": 0, "ok": True, "tags": ["x", "long text"], "skip": None,
                                  "m": {"f": -2.5}, "late": 1}, cfg)
    # a container's scalars first, then what its containers hold
    assert [(o.path, o.kind) for o in got] == [
        ("n", RANGE), ("ok", CATEGORY), ("late", RANGE), ("tags[#]", RANGE),
        ("tags[]", CATEGORY), ("tags[]", CATEGORY), ("m.f", RANGE)]
    assert got[0].value == magnitude(0) and got[6].value == magnitude(-2.5)
    # rows of an order cannot crowd out the amount beside them: every row is read, folded per
    # slot (a range by its extremes, a category by its distinct values)
    rows = [{"sku": "a", "qty": 1}] * 7 + [{"sku": "b", "qty": 40}]
    order = observations("s", "a", {"items": rows, "amount": 98000, "currency": "USD"},
                         ValueConfig())
    assert [(o.path, o.value) for o in order] == [
        ("amount", magnitude(98000)), ("currency", order[1].value), ("items[#]", magnitude(8)),
        ("items[].sku", order[3].value), ("items[].sku", order[4].value),
        ("items[].qty", magnitude(1)), ("items[].qty", magnitude(40))]
    assert order[3].value != order[4].value
    assert magnitude(10 ** 400) == 255 and magnitude(-(2 ** 70)) == 1
    # a payload of many skipped values is looked at only so far; long keys are not kept
    wide = {f"k{i}": None for i in range(100_000)}
    wide["late"] = 1
    assert observations("s", "a", wide, ValueConfig()) == ()
    assert observations("s", "a", {"x" * 100_000: 1}, ValueConfig())[0].path == "*"
    from models.guardrails import values
    assert all(len(k) <= 40 for k in values._KEY_TEXT)
    # the same path of another call is another slot; data-like keys share one
    assert observations("s", "b", {"n": 1}, cfg)[0].slot != got[0].slot
    by_email = observations("s", "a", {"by": {"bob@example.com": 1, "ann@example.com": 2}}, cfg)
    assert {o.path for o in by_email} == {"by.*"}


def test_nothing_an_event_carries_is_out_of_sight() -> None:
    """Attack run 7 (F2, F3): a 46-character account passed where a short unknown one was
    paused (text over max_text was not read); a fourth recipient passed (three elements of an
    array were read); values nested past eight levels were not read either."""
    cfg = ValueConfig()
    long_a = observations("p", "pay", {"dest": "acct_attacker_offshore_" + "0" * 24}, cfg)
    long_b = observations("p", "pay", {"dest": "acct_attacker_offshore_" + "1" * 24}, cfg)
    assert long_a[0].kind == CATEGORY and long_a[0].value != long_b[0].value
    # past max_text, by the first max_text characters and the length's power of two
    same_head = observations("p", "pay", {"dest": "x" * 40 + "tail-a"}, cfg)
    longer = observations("p", "pay", {"dest": "x" * 40 + "tail-b" * 40}, cfg)
    assert same_head[0].value != longer[0].value
    team = ["team@acme.example", "ops@acme.example"]
    usual = observations("m", "send", {"to": team * 2}, cfg)
    bad = observations("m", "send", {"to": [*team, *team, "attacker@evil.example"]}, cfg)
    assert {o.value for o in bad if o.path == "to[]"} - {o.value for o in usual} != set()
    # of many distinct elements, max_distinct + 1 are read: one at least is new to a settled set
    many = observations("m", "send", {"to": [f"u{i}@x.example" for i in range(50)]}, cfg)
    assert sum(o.path == "to[]" for o in many) == cfg.max_distinct + 1
    deep: Any = {"privileged": True}
    for _ in range(14):
        deep = {"spec": deep}
    assert [o.path for o in observations("k", "apply", deep, cfg)] == [
        ".".join(["spec"] * 14) + ".privileged"]


def test_a_zero_in_an_array_does_not_hide_its_other_values() -> None:
    """Review: zero is judged as -2^-2 against a negative range, so folding by the magnitude
    byte alone (zero is 190, above every negative) dropped -0.001 from [-1, 0, -0.001]."""
    ref = ValueReference(ValueConfig(min_support=3))
    for k in range(6):
        assert ref.event(f"r{k}", observations("s", "a", {"d": [-1, -2]}, ValueConfig())) == ()
    alone = observations("s", "a", {"d": [-1, -0.001]}, ValueConfig())
    with_zero = observations("s", "a", {"d": [-1, 0, -0.001]}, ValueConfig())
    assert {o.value for o in alone if o.path == "d[]"} <= {o.value for o in with_zero}
    assert ValueReference(ValueConfig(min_support=3)).event("x", with_zero) == ()  # fresh: none
    assert [f.path for f in ref.event("x", with_zero)] == ["d[]"]


def test_a_full_hash_still_judges_what_it_has() -> None:
    """Junk keys that fill an agent's hash add no field past the cap, and the slots it has are
    still judged: filling the hash does not switch the rule off (the agreement tests hold the
    script to the same)."""
    ref = ValueReference(ValueConfig(min_support=3), cap=4)
    for k in range(5):
        assert ref.event(f"r{k}", (_obs(0, 5),)) == ()
    for k in range(10):  # new slots: three fit, the rest are not kept
        ref.event("junk", (Observation(f"j{k}", RANGE, 190, b"j" * 7 + bytes([k])),))
    assert len(ref.fields) == 4
    [found] = ref.event("x", (_obs(0, 12),))
    assert (found.path, found.kind) == ("a", RANGE)


async def test_a_count_at_its_limit_loses_half_and_stays_settled(
        redis_client: aioredis.Redis, keys: Keys) -> None:
    """A slot whose count reached 2^32 - 1: the script and the reference both halve it with its
    count at the last change, keeping the observations since (still settled: judged)."""
    cfg = ValueConfig(min_support=30)
    store = GuardStore(redis_client, keys)
    ref = ValueReference(cfg)
    slot = _obs(0, 5).slot
    ref.fields[slot] = [COUNT_MAX, COUNT_MAX - 40, 127, 127]
    await redis_client.hset(keys.guard_agent_keys("t1").values, slot,
                            struct.pack("<IIBB", COUNT_MAX, COUNT_MAX - 40, 127, 127))
    items = [make_guard_item(f"e{i}", "r", 0, "n", None, "", (_obs(0, v),))
             for i, v in enumerate((5, 12))]
    [answers] = await store.update([GuardBatch("t1", items, _spec(cfg))])
    want = [ref.event("r", item.values) for item in items]
    assert [a.state.values for a in answers] == want and want[1]
    stored = await redis_client.hget(keys.guard_agent_keys("t1").values, slot)
    assert list(struct.unpack("<IIBB", stored)) == ref.fields[slot]
    assert ref.fields[slot][0] - ref.fields[slot][1] == 41


async def test_a_slot_of_another_kind_is_not_read(redis_client: aioredis.Redis,
                                                  keys: Keys) -> None:
    """Two slots of different kinds under one 64-bit hash (forged here): the script skips the
    observation instead of failing the agent's batch, as the reference does."""
    cfg = ValueConfig(min_support=1)
    store = GuardStore(redis_client, keys)
    slot = _obs(0, 5).slot
    stored = struct.pack("<II", 50, 1) + (1000).to_bytes(4, "little")  # a category's state
    await redis_client.hset(keys.guard_agent_keys("t1").values, slot, stored)
    ref = ValueReference(cfg)
    ref.fields[slot] = [50, 1, {1000}]
    items = [make_guard_item("e0", "r", 0, "n", None, "", (_obs(0, 12),))]
    [answers] = await store.update([GuardBatch("t1", items, _spec(cfg))])
    assert answers[0].state.values == ref.event("r", items[0].values) == ()
    assert await redis_client.hget(keys.guard_agent_keys("t1").values, slot) == stored
