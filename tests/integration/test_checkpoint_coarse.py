"""The checkpoint leaves the never-decayed fields of the back-off hash in place instead of
rewriting the hash whole (``lua/includes/checkpoint.lua``): every chain key must hold exactly
what the whole rewrite (``DEL`` + ``HSET`` of every field, the previous script, rebuilt here
from the current one) leaves, and every answer must be the same — on traffic with key-path
digests, a checkpoint every 2 runs, and stray fields (a total nothing adds to, an unknown kind)
planted in the hash."""

from __future__ import annotations

import random

import msgspec
from redis.asyncio import Redis

from models.params import EngineParams
from ratchet.engine.engine import Engine
from ratchet.store.chains import ChainBatch, ObserveItem
from ratchet.store.keys import Keys
from ratchet.store.scripts import script_source

IN_PLACE = """    if kind == 'r' or kind == 'T' or kind == 'X' or kind == 'p' or kind == 'U'
        or kind == '#' then
      -- kept in place
    elseif"""
WHOLE = """    if kind == 'r' or kind == 'T' or kind == 'X' or kind == 'p' or kind == 'U'
        or kind == '#' then
      cout[f] = ccounts[f]
      cout_fields[#cout_fields + 1] = f
    elseif"""
DROP = "  for j = 1, #dropped, 1000 do"
CHANGED_ONLY = "    if v ~= ccounts[f] then"


def whole_rewrite_source() -> str:
    """observe.lua with the previous checkpoint: plain fields copied, the hash deleted first,
    every field written again (not only the counts the decay changed)."""
    src = script_source("observe")
    assert IN_PLACE in src and DROP in src and CHANGED_ONLY in src
    src = src.replace(IN_PLACE, WHOLE).replace(CHANGED_ONLY, "    if true then")
    return src.replace(DROP, "  redis.call('DEL', coarse_key)\n  for j = 1, 0 do", 1)


def _events(rng: random.Random, n: int) -> list[tuple[str, str, str, str, bool]]:
    out = []
    for i in range(n):
        run = f"r{i // 5}"
        act = rng.choice(["tools.read", "tools.write", "tools.search"])
        shape = rng.randrange(12)
        out.append((f"e{i}", run, f"node{shape}", act, i % 5 == 4))
    return out


async def _snapshot(client: Redis, keys: list[str]) -> list[object]:
    out: list[object] = []
    for key in keys:
        kind = (await client.type(key)).decode()
        if kind == "hash":  # less the encoding marker (the reference writes it as "0")
            out.append(sorted(i for i in (await client.hgetall(key)).items() if i[0] != b"#"))
        elif kind == "list":
            out.append(await client.lrange(key, 0, -1))
        else:
            out.append(kind)
    return out


async def test_in_place_checkpoint_equals_whole_rewrite(redis_client: Redis) -> None:
    params = EngineParams(checkpoint_runs=2, min_support=1)
    reference = redis_client.register_script(whole_rewrite_source())
    rng = random.Random(5)
    events = _events(rng, 400)
    engines = [Engine.create(redis_client, keys=Keys(f"ck{i}{rng.randrange(10**9)}"),
                             guardrails=False, params=params, labels=False) for i in range(2)]
    now_ms = 1_700_000_000_000
    checkpoints = 0
    for lo in range(0, len(events), 25):
        answers, states = [], []
        for which, engine in enumerate(engines):
            items = [ObserveItem(e, run, node, False, end, False, act,
                                 ",".join(f"{h:x}" for h in range(int(node[4:]) % 5 + 1)))
                     for e, run, node, act, end in events[lo:lo + 25]]
            call_keys, args = engine.store.observe_call(
                ChainBatch("c1", items, eligible=True), learn=True, now_ms=now_ms + lo)
            if lo == 200:  # stray fields: a total no count adds to, a kind nobody writes
                await redis_client.hset(call_keys[6], mapping={"A\tghost": 7, "Zodd": 1})
            script = engine.store.scripts["observe"] if which == 0 else reference
            answers.append(await script(keys=call_keys, args=args))
            states.append(await _snapshot(redis_client, call_keys[:7]))
        assert answers[0] == answers[1], f"answers differ in the batch at {lo}"
        assert states[0] == states[1], f"chain state differs after the batch at {lo}"
        runs = int(await redis_client.hget(engines[0].store.keys.chain_keys("c1").meta, "runs") or 0)
        checkpoints = runs // 2
    assert checkpoints >= 30
    fields = dict(states[0][6])  # type: ignore[arg-type]
    assert any(f.startswith(b"p\t") for f in fields) and b"Zodd" not in fields
    # past 32 fields the back-off hash is kept in the hashtable encoding by its marker
    coarse = engines[0].store.keys.chain_keys("c1").coarse
    assert await redis_client.hget(coarse, "#") == b"0" * 65
    assert await redis_client.object("encoding", coarse) == b"hashtable"


async def test_a_snapshot_kept_as_a_hash_is_read_and_replaced(redis_client: Redis) -> None:
    # Releases before kept the checkpoint's snapshot as a hash (":snap"); the script now keeps
    # one MessagePack string under another name (":snap2"). A chain whose snapshot is still the
    # old hash must be judged exactly as the same chain with the string (same answers, same
    # stored state after the next checkpoint), and the old hash deleted by that checkpoint.
    # Batches of two runs: one checkpoint each, the one that reads the planted hash.
    params = EngineParams(checkpoint_runs=2, min_support=1)
    rng = random.Random(9)
    events = _events(rng, 200)
    engines = [Engine.create(redis_client, keys=Keys(f"sn{i}{rng.randrange(10**9)}"),
                             guardrails=False, params=params, labels=False) for i in range(2)]
    now_ms = 1_700_000_000_000
    converted = 0
    for lo in range(0, len(events), 10):
        answers, states = [], []
        for which, engine in enumerate(engines):
            ck = engine.store.keys.chain_keys("c1")
            snap = ck.snapshot
            if which == 1 and await redis_client.exists(snap):
                counts = msgspec.msgpack.decode(await redis_client.get(snap))
                await redis_client.delete(snap)
                if counts:
                    await redis_client.hset(ck.snapshot_hash, mapping=counts)
                    converted += 1
            items = [ObserveItem(e, run, node, False, end, False, act, "")
                     for e, run, node, act, end in events[lo:lo + 10]]
            call_keys, args = engine.store.observe_call(
                ChainBatch("c1", items, eligible=True), learn=True, now_ms=now_ms + lo)
            answers.append(await engine.store.scripts["observe"](keys=call_keys, args=args))
            state = await _snapshot(redis_client, call_keys[:7])
            state[5] = msgspec.msgpack.decode(await redis_client.get(snap))
            assert not await redis_client.exists(ck.snapshot_hash)
            states.append(state)
        assert answers[0] == answers[1], f"answers differ in the batch at {lo}"
        assert states[0] == states[1], f"chain state differs after the batch at {lo}"
    assert converted >= 15


async def test_the_hashtable_marker_comes_back_after_an_older_worker_drops_it(
    redis_client: Redis,
) -> None:
    # A worker of an older release deletes fields it does not know at its checkpoint, the
    # back-off hash's "#" marker among them; the next checkpoint of this release writes it again.
    params = EngineParams(checkpoint_runs=2, min_support=1)
    rng = random.Random(3)
    events = _events(rng, 300)
    engine = Engine.create(redis_client, keys=Keys(f"mk{rng.randrange(10**9)}"),
                           guardrails=False, params=params, labels=False)
    coarse = engine.store.keys.chain_keys("c1").coarse

    async def run(lo: int, hi: int) -> None:
        items = [ObserveItem(e, r, node, False, end, False, act,
                             ",".join(f"{h:x}" for h in range(int(node[4:]) % 5 + 1)))
                 for e, r, node, act, end in events[lo:hi]]
        call_keys, args = engine.store.observe_call(
            ChainBatch("c1", items, eligible=True), learn=True, now_ms=1_700_000_000_000 + lo)
        await engine.store.scripts["observe"](keys=call_keys, args=args)

    await run(0, 200)
    assert await redis_client.hget(coarse, "#") == b"0" * 65
    await redis_client.hdel(coarse, "#")
    await run(200, 300)  # 20 runs: checkpoints
    assert await redis_client.hget(coarse, "#") == b"0" * 65
