"""A chain batch that crosses several checkpoints in one observe call
(``lua/includes/checkpoint.lua``: only the call's first checkpoint reads the hashes and the
snapshot; the later ones work from the caches and memory, and every write waits for the end of
the call) must answer and leave exactly what the same events answer and leave sent one call per
event — at most one checkpoint a call, each reading everything from Redis: the same answers, the
same chain keys (every hash field and value, the score window, the snapshot's counts, the meta
counters). Only the distribution change kept in meta (``chg``) may differ, in its last bits:
its floating-point sum runs over the fields in another order."""

from __future__ import annotations

import math
import random
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from models.params import EngineParams
from ratchet.engine.engine import Engine
from ratchet.store.chains import ChainBatch, ObserveItem
from ratchet.store.keys import Keys
from ratchet.telemetry.metrics import CHECKPOINT_STOPS

BATCH = 120  # 24 runs of 5 events: 12 checkpoints in one call at checkpoint_runs = 2


def _events(rng: random.Random, n: int) -> list[tuple[str, str, str, str, bool, str]]:
    out = []
    for i in range(n):
        act = rng.choice(["tools.read", "tools.write", "tools.search"])
        shape = rng.randrange(14)
        paths = ",".join(f"{h:x}" for h in range(shape % 5 + 1))
        out.append((f"e{i}", f"r{i // 5}", f"node{shape}", act, i % 5 == 4, paths))
    return out


async def _state(client: Redis, keys: list[str]) -> dict[str, Any]:
    """meta, edges, rows, nodes, window, snapshot (decoded), back-off hash."""
    meta = {k.decode(): v.decode() for k, v in (await client.hgetall(keys[0])).items()}
    blob = await client.get(keys[5])
    return {
        "meta": meta,
        "edges": await client.hgetall(keys[1]),
        "rows": await client.hgetall(keys[2]),
        "nodes": await client.hgetall(keys[3]),
        "window": await client.lrange(keys[4], 0, -1),
        "snapshot": msgspec.msgpack.decode(blob) if blob is not None else None,
        "coarse": await client.hgetall(keys[6]),
    }


async def _call(engine: Engine, items: list[ObserveItem], now_ms: int) -> list[Any]:
    keys, args = engine.store.observe_call(
        ChainBatch("c1", items, eligible=True), learn=True, now_ms=now_ms)
    answer: list[Any] = await engine.store.scripts["observe"](keys=keys, args=args)
    return answer


@pytest.mark.parametrize("decay", ["uniform", "tiered"])
async def test_a_batch_across_checkpoints_equals_one_call_per_event(
    redis_client: Redis, decay: str
) -> None:
    params = EngineParams(checkpoint_runs=2, min_support=1, decay=decay)
    rng = random.Random(17)
    events = _events(rng, 6 * BATCH)
    whole, single = (Engine.create(redis_client, keys=Keys(f"cc{i}{rng.randrange(10**9)}"),
                                   guardrails=False, params=params, labels=False)
                     for i in range(2))
    changes = 0
    for lo in range(0, len(events), BATCH):
        now_ms = 1_700_000_000_000 + lo
        items = [ObserveItem(e, run, node, False, end, False, act, paths)
                 for e, run, node, act, end, paths in events[lo:lo + BATCH]]
        batch_answer = await _call(whole, items, now_ms)
        blobs: list[bytes] = []
        values: list[Any] = []
        for item in items:
            one = await _call(single, [item], now_ms)
            blobs.append(one[0])
            values += one[1:]
        assert batch_answer == [b"".join(blobs), *values], f"answers differ in the batch at {lo}"
        keys = [whole.store.keys.chain_keys("c1").as_list(),
                single.store.keys.chain_keys("c1").as_list()]
        a, b = [await _state(redis_client, k) for k in keys]
        chg_a, chg_b = a["meta"].pop("chg"), b["meta"].pop("chg")
        assert math.isclose(float(chg_a), float(chg_b), rel_tol=1e-12, abs_tol=1e-15)
        changes += float(chg_a) != 1.0
        assert a == b, f"chain state differs after the batch at {lo}"
    # the checkpoints measured real distributions, and the chain learned a vocabulary
    assert changes >= 4
    assert int(a["meta"]["runs"]) == len(events) // 5
    assert a["snapshot"] and any(f.startswith(b"p\t") for f in a["coarse"])


async def test_a_flood_of_short_runs_is_split_into_calls_with_the_same_answers(
    redis_client: Redis,
) -> None:
    """1,000 one-event runs of new shapes on a chain near its caps (the outside attack run's
    flood): with the default checkpoint budget the store sends the batch in several calls
    (counted), and the verdicts and the chain's state are those of one unbounded call."""
    params = EngineParams()

    def flood(lo: int) -> list[ObserveItem]:
        return [ObserveItem(f"f{i}", f"r{i}", f"{i:016x}", False, True, False, "x.y", "")
                for i in range(lo, lo + 1_000)]

    engines = [Engine.create(redis_client, keys=Keys(f"fl{i}{random.randrange(10**9)}"),
                             guardrails=False, params=params, labels=False) for i in range(2)]
    engines[1].store.checkpoint_work = 0  # unbounded: one call per batch
    stops = CHECKPOINT_STOPS._value.get()
    for lo in (0, 1_000, 2_000):
        answers = []
        for engine in engines:
            [answer] = await engine.store.observe_answers(
                [ChainBatch("c1", flood(lo), eligible=True)], now_ms=1_700_000_000_000 + lo)
            answers.append(answer.observations())
        assert answers[0] == answers[1], f"answers differ in the batch at {lo}"
    split = CHECKPOINT_STOPS._value.get() - stops
    assert split >= 5, split  # the chain is big: its checkpoints no longer fit one call
    a, b = [await _state(redis_client, e.store.keys.chain_keys("c1").as_list()) for e in engines]
    # (the distribution change is summed in another order when a call reads the hashes again)
    assert math.isclose(float(a["meta"].pop("chg")), float(b["meta"].pop("chg")), rel_tol=1e-12)
    assert a == b
