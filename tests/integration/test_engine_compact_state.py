"""What the engine keeps in Redis per event, and for how long: compact dedup answers under
compact event fields, state written by the previous formats still honoured, and the TTL of each
kind of key asserted on a real redis-server (docs/operations.md, "What Redis keeps")."""

from __future__ import annotations

import struct
import uuid
from importlib import resources

from redis.asyncio import Redis

from models.events import IngestEvent
from models.guardrails import StateSpec
from models.params import EngineParams
from ratchet.engine.engine import Engine
from ratchet.store.chains import ChainBatch, EngineStore, ObserveItem
from ratchet.store.guardrails import GuardBatch, GuardItem, GuardStore
from ratchet.store.keys import Keys, event_field


def _uuid(i: int) -> str:
    return str(uuid.UUID(int=i + 12345))


async def test_uuid_events_are_kept_compact_and_deduplicated(
    redis_client: Redis, keys: Keys
) -> None:
    store = EngineStore(redis_client, keys, EngineParams())
    items = [ObserveItem(_uuid(i), "r1", f"n{i % 3}", end_of_run=i == 5) for i in range(6)]
    [first] = await store.observe([ChainBatch("cs", items)])
    run_key = keys.run("cs", "r1")
    fields = await redis_client.hkeys(run_key)
    for item in items:
        field = event_field(item.event_id)
        assert field in fields and len(field) == 17  # "u" + 16 bytes, not "e:" + 36 characters
        stored = await redis_client.hget(run_key, field)
        # "\1", two doubles, the from-node and six varints: well under 64 bytes
        assert stored is not None and stored[:1] == b"\1" and len(stored) <= 48, stored
    # values of at most 64 bytes: the run hash keeps Redis's compact listpack encoding
    assert await redis_client.object("encoding", run_key) == b"listpack"
    [again] = await store.observe([ChainBatch("cs", items)])
    assert [o.duplicate for o in again] == [True] * 6
    assert [o.__class__(**{**_fields(o), "duplicate": False}) for o in again] == first


async def test_hex_from_nodes_are_kept_as_8_bytes_and_answered_as_hex(
    redis_client: Redis, keys: Keys
) -> None:
    """Real nodes are 16 hex digits: an answer keeps its from-node as 8 bytes ("\2"), ≈ 9
    bytes less per event, and a redelivery is answered the same hex node; a "\1" answer of the
    previous release with a hex from-node is still answered."""
    store = EngineStore(redis_client, keys, EngineParams())
    nodes = [f"{i:016x}" for i in (0xABCDEF0123456789, 0x0F0E0D0C0B0A0908, 0xFFFF)]
    items = [ObserveItem(_uuid(100 + i), "r1", nodes[i % 3], end_of_run=i == 5)
             for i in range(6)]
    [first] = await store.observe([ChainBatch("hx", items)])
    run_key = keys.run("hx", "r1")
    for item, obs in zip(items, first, strict=True):
        stored = await redis_client.hget(run_key, event_field(item.event_id))
        assert stored is not None
        if len(obs.from_node) == 16:
            assert stored[:1] == b"\2" and stored[17:25] == bytes.fromhex(obs.from_node)
            assert len(stored) <= 40, stored
        else:  # the run's start "^": kept as text
            assert stored[:1] == b"\1"
    assert sum(len(o.from_node) == 16 for o in first) >= 4
    [again] = await store.observe([ChainBatch("hx", items)])
    assert [o.__class__(**{**_fields(o), "duplicate": False}) for o in again] == first
    # the run's last node: "\0" + its 8 bytes; the next batch continues from its hex text
    cont = [ObserveItem(_uuid(200), "r2", nodes[1]), ObserveItem(_uuid(201), "r2", nodes[2])]
    await store.observe([ChainBatch("hx", cont[:1])])
    assert await redis_client.hget(keys.run("hx", "r2"), "last") == b"\0" + bytes.fromhex(nodes[1])
    [[nxt]] = await store.observe([ChainBatch("hx", cont[1:])])
    assert (nxt.from_node, nxt.to_node) == (nodes[1], nodes[2])
    await redis_client.hset(keys.run("hx", "r3"), mapping={"last": nodes[0], "ended": "0"})
    [[up]] = await store.observe([ChainBatch("hx", [ObserveItem(_uuid(300), "r3", nodes[1])])])
    assert up.from_node == nodes[0]  # the hex text of the previous release
    previous = (b"\1" + struct.pack(">dd", 7.25, 11.5) + bytes([16]) + nodes[0].encode()
                + bytes([5, 9, 1 + 32, 4, 2, 3]))
    await redis_client.hset(run_key, event_field(_uuid(999)), previous)
    [[old]] = await store.observe([ChainBatch("hx", [ObserveItem(_uuid(999), "r1", nodes[2])])])
    assert old.duplicate and (old.from_node, old.to_node) == (nodes[0], nodes[2])
    assert (old.score, old.threshold, old.runs, old.repeats, old.repeat_limit) == \
        (7.25, 11.5, 4, 2, 3)


def _fields(o: object) -> dict[str, object]:
    return {name: getattr(o, name) for name in o.__slots__}  # type: ignore[attr-defined]


async def test_answers_and_holds_stored_by_the_previous_formats_are_honoured(
    redis_client: Redis, keys: Keys
) -> None:
    """A redelivery across the upgrade is answered from the old text answer (not counted again);
    an event held before the upgrade can still be approved."""
    store = EngineStore(redis_client, keys, EngineParams())
    run_key = keys.run("old", "r1")
    old = "^\tn1\t0\t0\t19.931568569324174\t12\t1\t1\t1\t1\t3\t0\t1\t0\t0\t0\t2"
    await redis_client.hset(run_key, mapping={"e:ev-1": old, "last": "n1", "ended": "0",
                                              "la": "crm.read", "rep": "0"})
    [[obs]] = await store.observe([ChainBatch("old", [ObserveItem("ev-1", "r1", "zz")])])
    assert obs.duplicate and (obs.from_node, obs.to_node) == ("^", "n1")
    assert (obs.score, obs.threshold, obs.anomalous, obs.mode, obs.action, obs.held) == \
        (19.931568569324174, 12.0, True, 1, "flag", True)
    assert (obs.runs, obs.to_new, obs.repeat_limit) == (3, True, 2)
    assert await store.edge_counts("old") == {}  # nothing counted for the redelivery
    # the format before varints: "\0", two doubles, from \t the integers as text
    previous = (b"\0" + struct.pack(">dd", 7.25, 11.5) + b"n1\t123456789\t987654321\t"
                + str(1 + 2 + 32 + 2048 * 2).encode() + b"\t4\t2\t3")
    await redis_client.hset(run_key, event_field(_uuid(7)), previous)
    [[again]] = await store.observe([ChainBatch("old", [ObserveItem(_uuid(7), "r1", "zz")])])
    assert again.duplicate and (again.from_node, again.to_node) == ("n1", "$")
    assert (again.score, again.threshold, again.anomalous, again.held, again.mode) == \
        (7.25, 11.5, True, True, 1)
    assert (again.runs, again.repeats, again.repeat_limit) == (4, 2, 3)
    assert await store.edge_counts("old") == {}
    await redis_client.hset(run_key, "h:ev-9", "^\tn1\t^\tcrm.read")
    res = await store.feedback("old", "r1", "ev-9", "approve")
    assert res.applied and res.learned == 1
    assert await store.edge_counts("old") == {"^\tn1": 1000}


def _event(i: int, run: str, *, ts: float) -> IngestEvent:
    return IngestEvent(event_id=_uuid(i), agent_id="agent", run_id=run, service="crm",
                       action="crm.read", payload={"q": "x", "n": i}, project_id="proj",
                       end_of_run=False, ts=ts)


async def test_retention_of_each_kind_of_key(redis_client: Redis, keys: Keys) -> None:
    """Run state and dedup answers: run_ttl; chain state: chain_ttl; the guardrails' run
    velocity window: only its window + 60 s (older slots never count again)."""
    engine = Engine.create(redis_client, keys=keys, run_ttl_s=7_200, chain_ttl_s=900_000,
                           event_time=True)
    await engine.decide([_event(i, "r1", ts=1_700_000_000.0 + i) for i in range(3)])
    chain = engine.chain_of(_event(0, "r1", ts=0.0))
    run_ttl = await redis_client.ttl(keys.run(chain.tag, "r1"))
    assert 7_200 - 5 <= run_ttl <= 7_200
    for key in keys.chain_keys(chain.tag).as_list():
        if await redis_client.exists(key):
            assert 900_000 - 5 <= await redis_client.ttl(key) <= 900_000, key
    guard = keys.guard_run_keys(keys.guard_tag("proj", "agent"), "r1")
    assert 7_200 - 5 <= await redis_client.ttl(guard.state) <= 7_200
    assert 7_200 - 5 <= await redis_client.ttl(guard.nodes) <= 7_200
    window_ttl = await redis_client.ttl(guard.window)
    assert 0 < window_ttl < 7_200 - 5, window_ttl  # far less than the run's own state
    assert window_ttl <= 60 * 60 + 60  # ≤ the longest default run window + 60 s


async def test_observe_reply_is_flat_and_numeric(redis_client: Redis, keys: Keys) -> None:
    """The reply the engine reads in place: one blob of 48-byte records (four doubles, four
    32-bit integers per event), then from and to per event; a redelivery's record says so."""
    store = EngineStore(redis_client, keys, EngineParams())
    call_keys, args = store.observe_call(
        ChainBatch("flat", [ObserveItem("a", "r", "n1"), ObserveItem("b", "r", "n2")]),
        learn=True, now_ms=1)
    raw = await store.scripts["observe"](keys=call_keys, args=args)
    assert len(raw) == 1 + 2 * 2 and len(raw[0]) == 2 * 48
    first, second = struct.iter_unpack(">ddddiiii", raw[0])
    score, threshold, count, row, flags, runs, repeats, limit = first
    assert raw[1:3] == [b"^", b"n1"] and raw[3:5] == [b"n1", b"n2"]
    assert (count, row, runs, repeats, limit) == (0, 0, 1, 0, 2) and not flags & 2048
    assert score > 19 and threshold == EngineParams().fallback_bits and second[0] > 19
    again = await store.scripts["observe"](keys=call_keys, args=args)
    assert len(again) == len(raw) and again[1:] == raw[1:]
    records = list(struct.iter_unpack(">ddddiiii", again[0]))
    # the stored answers, flagged as redeliveries: everything else as first answered
    assert [r[4] & 2048 for r in records] == [2048, 2048]
    assert [(*r[:4], r[4] - 2048, *r[5:]) for r in records] == [first, second]


_SPEC = StateSpec(agent_window_s=60, run_window_s=60, history=4, run_events=True,
                  run_cost=True, agent_daily_cost=True)


async def test_guardrail_answers_are_compact_and_redeliveries_answered_the_same(
    redis_client: Redis, keys: Keys
) -> None:
    """Each event's guardrail answer is kept in ≈ 20 bytes (flags, varints, doubles) and a
    redelivery is answered exactly the first state, odd float sums and large counts included."""
    store = GuardStore(redis_client, keys)
    t0 = 1_700_000_000_000
    costs = [0.1, 0.2, 1e-9, 123456.789, None, 0.30000000000000004]
    items = [GuardItem(_uuid(i), "r1", t0 + i, f"n{i % 3}", costs[i]) for i in range(6)]
    # a velocity window count past one varint byte: 200 earlier events of the agent
    await store.update([GuardBatch("tg", [GuardItem(_uuid(1000 + i), "r0", t0, "x")
                                          for i in range(200)], _SPEC)])
    [first] = await store.update([GuardBatch("tg", items, _SPEC)])
    assert first[-1].state.agent_events_in_window == 206
    run = keys.guard_run_keys("tg", "r1").state
    for item in items:
        stored = await redis_client.hget(run, event_field(item.event_id))
        assert stored is not None and stored[0] < 16 and len(stored) <= 24, stored
    assert await redis_client.object("encoding", run) == b"listpack"
    [again] = await store.update([GuardBatch("tg", list(reversed(items)), _SPEC)])
    assert [a.duplicate for a in again] == [True] * 6
    assert [a.state for a in reversed(again)] == [a.state for a in first]
    assert await redis_client.hget(run, "n") == b"6"  # nothing counted twice


async def test_guardrail_answers_stored_as_text_by_the_previous_release_are_honoured(
    redis_client: Redis, keys: Keys
) -> None:
    store = GuardStore(redis_client, keys)
    run = keys.guard_run_keys("tg", "r1")
    old = "2\t41\t3\t0.0069409999999999993\t0.32464100000000018"
    await redis_client.hset(run.state, mapping={"n": 3, "cost": "0.0069409999999999993",
                                                event_field("ev-3"): old})
    await redis_client.rpush(run.node_list, "n0", "n1", "n2")  # the list of the previous release
    item = GuardItem("ev-3", "r1", 1_700_000_000_000, "n2", 0.5)
    [[answer]] = await store.update([GuardBatch("tg", [item], _SPEC)])
    assert answer.duplicate
    assert (answer.state.run_events, answer.state.agent_events_in_window,
            answer.state.run_events_in_window) == (3, 41, 3)
    assert answer.state.run_cost == 0.0069409999999999993
    assert answer.state.agent_daily_cost == 0.32464100000000018
    assert answer.state.run_nodes == ("n0", "n1")
    assert await redis_client.hget(run.state, "n") == b"3"
    # a new event of the run: the old list's nodes carried into the run's nodes string
    new = GuardItem("ev-4", "r1", 1_700_000_000_000, "00ff00ff00ff00ff", 0.5)
    [[fresh]] = await store.update([GuardBatch("tg", [new], _SPEC)])
    assert not fresh.duplicate and fresh.state.run_nodes[-3:] == ("n0", "n1", "n2")
    assert await redis_client.get(run.nodes) == (b"\2n0\2n1\2n2\x08"
                                                  + bytes.fromhex("00ff00ff00ff00ff"))
    # trimmed to the last 2 × history nodes
    more = [GuardItem(f"ev-{5 + i}", "r1", 1_700_000_000_000, f"{i:016x}", 0.5)
            for i in range(10)]
    [answers] = await store.update([GuardBatch("tg", more, _SPEC)])
    assert answers[-1].state.run_nodes == tuple(f"{i:016x}" for i in range(5, 9))
    assert await redis_client.get(run.nodes) == b"".join(
        b"\x08" + bytes.fromhex(f"{i:016x}") for i in range(2, 10))


def _varint(x: int) -> bytes:
    out = bytearray()
    while x >= 128:
        out.append(x % 128 + 128)
        x //= 128
    out.append(x)
    return bytes(out)


async def test_varints_of_every_length_round_trip(redis_client: Redis) -> None:
    # lua/includes/varint.lua has a fast path per length (1, 2, 3 bytes) and a loop past them:
    # each boundary must encode as the base-128 bytes and read back to the same value.
    source = resources.files("lua.includes").joinpath("varint.lua").read_text() + """
local out = {}
for i = 1, #ARGV do
  local s = varint(tonumber(ARGV[i]))
  local x, after = varint_read(s, 1)
  out[i] = { s, x, after }
end
return out
"""
    values = [0, 1, 127, 128, 16383, 16384, 2097151, 2097152, 2**28 - 1, 2**28, 2**35 + 5]
    got = await redis_client.eval(source, 0, *values)
    assert [(bytes(s), int(x), int(after)) for s, x, after in got] == [
        (_varint(v), v, len(_varint(v)) + 1) for v in values
    ]
    assert [len(_varint(v)) for v in values] == [1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 6]
