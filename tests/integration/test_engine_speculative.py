"""The single-event path's dry observe call and the speculation built on it, on a real Redis.

``lua/observe.lua`` with ``learn=2`` (dry) must answer exactly what the learning call answers
next, write nothing, and refuse (``'!'``) a batch a checkpoint falls in; with ``learn=3``
(direct) it must learn exactly as ``learn=1`` on a chain past shadow and act as ``learn=2`` on a
chain in shadow, saying which at the end of its answer. The engine observes a small batch beside
the guardrail state: directly when no guardrail of the policy can hold an event back, else dry,
sending the learning call with the verdict save only when the guardrails hold nothing and the
mode floor is the predicted one; a learning call that answers otherwise (another writer of the
chain in between) is caught, and the worker then decides the batch again from the stored answers.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from models.envelope import IngestEnvelope
from models.events import IngestEvent, parse_event
from models.guardrails import parse_policy_toml
from models.params import EngineParams
from models.verdict import Verdict
from ratchet.engine.engine import Engine
from ratchet.store.chains import ChainBatch, ObserveItem
from ratchet.store.keys import Keys
from ratchet.store.policies import FixedPolicy
from ratchet.store.round import Deferred, Round
from ratchet.store.verdicts import VerdictStore
from streams.worker import IngestProcessor

pytestmark = pytest.mark.asyncio

PAUSE_SECOND_IN_RUN = (
    "[guardrails.velocity]\naction = 'pause'\nper_run = { window_s = 60, limit = 1 }\n"
)


async def _snapshot(client: aioredis.Redis, prefix: str) -> dict[bytes, bytes | None]:
    keys = sorted([k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)])
    return {k: await client.dump(k) for k in keys}


async def _state(client: aioredis.Redis, prefix: str) -> dict[bytes, Any]:
    """Every key of ``prefix`` by its name without the prefix, with its value read out (two
    prefixes that saw the same writes compare equal)."""
    out: dict[bytes, Any] = {}
    async for k in client.scan_iter(match=f"{prefix}:*", count=1000):
        kind = (await client.type(k)).decode()
        if kind == "hash":
            value: Any = await client.hgetall(k)
        elif kind == "list":
            value = await client.lrange(k, 0, -1)
        elif kind == "string":
            value = await client.get(k)
        elif kind == "zset":
            value = await client.zrange(k, 0, -1, withscores=True)
        else:
            value = kind
        out[k.replace(prefix.encode(), b"", 1)] = value
    return out


def _speculated(result: str) -> float:
    labels = {"result": result}
    return REGISTRY.get_sample_value("ratchet_engine_speculative_batches_total", labels) or 0.0


def _event(run: str, i: int, *, shape: int = 0, end: bool = False, agent: str = "a1") -> IngestEvent:
    return parse_event({
        "event_id": f"{run}-{i}-{uuid.uuid4().hex[:8]}", "agent_id": agent, "run_id": run,
        "service": "crm", "action": f"op.{shape % 3}", "payload": {f"k{shape}": i},
        "end_of_run": end,
    }, "p1")


async def test_a_dry_call_answers_what_learning_answers_and_writes_nothing(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    params = EngineParams(checkpoint_runs=3)
    engine = Engine.create(redis_client, keys=keys, params=params, guardrails=False,
                           labels=False)
    store, script = engine.store, engine.store.scripts["observe"]
    tag = engine.chain_of(_event("r0", 0)).tag
    compared = refused = 0
    previous: IngestEvent | None = None
    for i in range(40):
        run = f"r{i // 4}"
        ev = _event(run, i, shape=i * 7 % 5, end=i % 4 == 3)
        if i == 17 and previous is not None:  # a redelivery: the stored answer, dry or not
            ev = previous
        batch = ChainBatch(tag, [ObserveItem(ev.event_id, ev.run_id, engine.node_of(ev),
                                             False, ev.end_of_run, False, ev.action)])
        k, args = store.observe_call(batch, learn=True, now_ms=1_780_000_000_000 + i)
        before = await _snapshot(redis_client, keys.prefix)
        dry = await script(keys=k, args=[args[0], 2, *args[2:]])
        assert await _snapshot(redis_client, keys.prefix) == before, f"event {i} wrote"
        learned = await script(keys=k, args=args)
        if dry == [b"!"]:
            refused += 1  # a checkpoint: the step-by-step path runs
        else:
            assert dry == learned, f"event {i}"
            compared += 1
        previous = ev
    assert refused == 3 and compared == 37  # runs 3, 6 and 9 start with a checkpoint


async def test_a_guardrail_hold_declines_the_speculation_and_is_not_learned(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    engine = Engine.create(redis_client, keys=keys, labels=False,
                           policies=FixedPolicy(parse_policy_toml(PAUSE_SECOND_IN_RUN)))

    async def decide(ev: IngestEvent) -> tuple[Verdict, Deferred]:
        writes = Deferred()
        [verdict] = await engine.decide([ev], writes=writes)
        await Round(redis_client).extend_run(writes.ops)
        return verdict, writes

    first, _ = await decide(_event("r1", 0))  # nothing known of the agent yet: step by step
    sent, declined = _speculated("sent"), _speculated("declined")
    second, writes = await decide(_event("r1", 1, shape=1))
    assert second.action == "pause" and second.held  # held back from learning
    assert _speculated("declined") == declined + 1 and _speculated("sent") == sent
    assert not any(getattr(op, "script", None) is engine.store.scripts["observe"]
                   for op in writes.ops)
    third, writes = await decide(_event("r2", 0, shape=2))  # a new run: velocity allows it
    assert third.action == "allow" and not third.held
    assert _speculated("sent") == sent + 1
    assert any(getattr(op, "script", None) is engine.store.scripts["observe"]
               for op in writes.ops)
    assert first.action == "allow"


async def test_another_writer_between_the_round_trips_is_caught_and_redone(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    engine = Engine.create(redis_client, keys=keys, guardrails=False, labels=False)
    other = Engine.create(redis_client, keys=keys, guardrails=False, labels=False)
    interfere = {"left": 0}

    class Racing:
        """The real engine; once, another engine learns on the same run in between."""

        async def decide(self, events: Any, **kw: Any) -> list[Verdict]:
            verdicts = await engine.decide(events, **kw)
            if interfere["left"] and kw.get("writes") is not None and kw["writes"].ops:
                interfere["left"] -= 1
                await other.decide([_event("r1", 99, shape=4)])
            return verdicts

        async def feedback(self, *a: Any) -> object:
            raise AssertionError("not used")

    store = VerdictStore(redis_client, keys)
    processor = IngestProcessor(Racing(), store)
    warm = _event("r1", 0)
    await processor.process([IngestEnvelope("p1", "a1", "t" * 16, 0.0, (warm,))])
    redone = _speculated("redone")
    interfere["left"] = 1
    ev = _event("r1", 1, shape=1)
    await processor.process([IngestEnvelope("p1", "a1", "t" * 16, 0.0, (ev,))])
    assert interfere["left"] == 0 and _speculated("redone") == redone + 1
    saved = await store.get("p1", ev.event_id)
    [again] = await engine.decide([ev])  # a redelivery answers the stored answer
    assert again.duplicate and saved is not None
    stored = again.to_dict()
    for name in ("edge", "score", "threshold", "action", "mode", "anomalous"):
        assert saved[name] == stored[name], name


async def test_a_direct_call_learns_past_shadow_and_is_dry_in_shadow(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    """learn=3 against learn=1 on twin prefixes fed the same events: a chain past shadow learns
    (last value 1) exactly as learn=1 does; in shadow the call writes nothing and answers what
    learn=1 answers next (last value 0), or '!' when a checkpoint falls in it."""
    params = EngineParams(checkpoint_runs=2, min_runs_soft=4)
    twin = Keys(keys.prefix + "twin")
    ref = Engine.create(redis_client, keys=twin, params=params, guardrails=False, labels=False)
    engine = Engine.create(redis_client, keys=keys, params=params, guardrails=False,
                           labels=False)
    script = engine.store.scripts["observe"]
    tag = engine.chain_of(_event("r0", 0)).tag
    seen = {"learned": 0, "dry": 0, "refused": 0}
    previous: IngestEvent | None = None
    for i in range(60):
        ev = _event(f"r{i // 3}", i, shape=i % 3, end=i % 3 == 2)
        if i == 41 and previous is not None:  # a redelivery
            ev = previous
        batch = ChainBatch(tag, [ObserveItem(ev.event_id, ev.run_id, engine.node_of(ev),
                                             False, ev.end_of_run, False, ev.action)])
        now_ms = 1_780_000_000_000 + 1000 * i
        rk, rargs = ref.store.observe_call(batch, learn=True, now_ms=now_ms)
        expected = await script(keys=rk, args=rargs)
        k, args = engine.store.observe_call(batch, learn=True, now_ms=now_ms)
        before = await _snapshot(redis_client, keys.prefix)
        got = await script(keys=k, args=[args[0], 3, *args[2:]])
        if got == [b"!"]:
            seen["refused"] += 1
            assert await _snapshot(redis_client, keys.prefix) == before, f"event {i} wrote"
            got = await script(keys=k, args=args)  # the step-by-step path
        elif got[-1] == 0:
            seen["dry"] += 1
            assert await _snapshot(redis_client, keys.prefix) == before, f"event {i} wrote"
            learned = await script(keys=k, args=args)  # the learning call sent with the save
            assert learned == got[:-1], f"event {i}"
            got = learned
        else:
            assert got[-1] == 1, f"event {i}"
            seen["learned"] += 1
            got = got[:-1]
        assert got == expected, f"event {i}"
        previous = ev
    assert await _state(redis_client, keys.prefix) == await _state(redis_client, twin.prefix)
    assert seen["learned"] >= 30 and seen["dry"] >= 3 and seen["refused"] >= 1, seen


async def test_under_a_flag_only_policy_a_single_event_learns_in_the_first_round_trip(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    """The default policy (every guardrail flags) cannot hold an event back: once the chain is
    past shadow, no observe call waits for the save; verdicts and every stored value are those
    of the step-by-step path on a twin prefix."""
    params = EngineParams(checkpoint_runs=2, min_runs_soft=4)
    twin = Keys(keys.prefix + "twin")
    flags = FixedPolicy(parse_policy_toml("[guardrails.velocity]\naction = 'flag'\n"))
    engine = Engine.create(redis_client, keys=keys, params=params, policies=flags, labels=False)
    ref = Engine.create(redis_client, keys=twin, params=params, policies=flags, labels=False)
    observe = engine.store.scripts["observe"]
    t = {"now": 1_780_000_000.0}
    engine.clock = ref.clock = lambda: t["now"]
    direct = _speculated("direct")
    deferred = 0
    for i in range(45):
        t["now"] += 1.0
        ev = _event(f"r{i // 3}", i, shape=i % 3, end=i % 3 == 2)
        writes = Deferred()
        [verdict] = await engine.decide([ev], writes=writes)
        answers = await Round(redis_client).extend_run(writes.ops)
        assert writes.confirmed(answers)
        deferred += sum(getattr(op, "script", None) is observe for op in writes.ops)
        [expected] = await ref.decide([ev])
        mine, theirs = verdict.to_dict(), expected.to_dict()
        for name in ("edge", "score", "threshold", "action", "mode", "anomalous", "reasons",
                     "held", "duplicate"):
            assert mine[name] == theirs[name], (i, name)
        assert mine.get("mode_change") == theirs.get("mode_change"), i
    assert _speculated("direct") >= direct + 25
    assert deferred <= 45 - 25  # the chain's young events only (shadow: dry, learned after)
    assert await _state(redis_client, keys.prefix) == await _state(redis_client, twin.prefix)


async def test_a_policy_that_can_pause_keeps_a_mature_chain_on_the_dry_path(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    """A pattern rule that pauses can hold an event back, so even a chain past shadow is
    observed dry in the first round trip: the paused event is held and not learned (its edge
    is still unseen afterwards), and a later event the rule passes learns as usual."""
    params = EngineParams(checkpoint_runs=2, min_runs_soft=4)
    pause = FixedPolicy(parse_policy_toml(
        "[guardrails.pattern]\nrules = [{ id = 'x', literal = 'DROP', action = 'pause' }]\n"))
    engine = Engine.create(redis_client, keys=keys, params=params, policies=pause, labels=False)
    direct = _speculated("direct")

    async def decide(ev: IngestEvent) -> Verdict:
        writes = Deferred()
        [verdict] = await engine.decide([ev], writes=writes)
        assert writes.confirmed(await Round(redis_client).extend_run(writes.ops))
        return verdict

    for i in range(30):  # past shadow
        await decide(_event(f"r{i // 3}", i, shape=i % 3, end=i % 3 == 2))
    dropped = parse_event({
        "event_id": f"drop-{uuid.uuid4().hex[:8]}", "agent_id": "a1", "run_id": "rx",
        "service": "crm", "action": "op.9", "payload": {"q": "DROP"}}, "p1")
    held = await decide(dropped)
    assert held.mode != "shadow" and held.action == "pause" and held.held
    assert _speculated("direct") == direct  # never learned in the first round trip
    again = parse_event({
        "event_id": f"again-{uuid.uuid4().hex[:8]}", "agent_id": "a1", "run_id": "ry",
        "service": "crm", "action": "op.9", "payload": {"q": "fine"}}, "p1")
    after = await decide(again)
    assert after.edge.count == 0  # the held event's transition was not counted
