"""No threshold above ``ceiling_bits``: a transition never seen stays anomalous.

Dec 4 attack run, round 6: new shapes the escape let through (≈ 12–14 bits, not anomalous) went
into a locked chain's window of recent scores beside its ≈ 0-bit steps, and the robust
threshold (median + 3·1.4826·MAD) rose to 28–48 bits — above the ≈ 19.9 bits of a transition
never seen, so `contacts.wipe` and exfiltration payloads were allowed. The window is written
here directly, as such traffic leaves it, so the test does not depend on how the escape scores.
"""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from models.params import EngineParams
from ratchet.engine.engine import Engine
from ratchet.store.keys import Keys
from tests.integration.engine_support import FAST, crm_run


async def _inflated(redis_client: aioredis.Redis, params: EngineParams) -> tuple[Engine, str]:
    keys = Keys(f"ce{uuid.uuid4().hex[:8]}")
    engine = Engine.create(redis_client, keys=keys, rich=True, guardrails=False, params=params)
    for r in range(12):
        [*_, v] = await engine.decide(crm_run(f"t{r}", [("search", {"q": "x"}),
                                                     ("read", {"id": r})]))
    assert v.mode == "locked"
    window = keys.chain_keys(v.chain_tag).window
    await redis_client.delete(window)
    await redis_client.rpush(window, *([13.5, 0.0] * 8))  # newest first, as the script keeps it
    return engine, window


async def test_an_inflated_window_cannot_lift_the_threshold_past_a_never_seen_call(
    redis_client: aioredis.Redis,
) -> None:
    engine, _ = await _inflated(redis_client, FAST)
    [_, wipe] = await engine.decide(crm_run("x", [("search", {"q": "x"}), ("wipe", {"all": True})]))
    assert wipe.score > FAST.ceiling_bits
    assert wipe.threshold == FAST.ceiling_bits
    assert wipe.anomalous and wipe.action == "pause"


async def test_without_the_ceiling_the_same_window_lets_it_through(
    redis_client: aioredis.Redis,
) -> None:
    """The control: the inflated window alone puts the threshold over the call's score."""
    engine, _ = await _inflated(redis_client, FAST.replace(ceiling_bits=64.0))
    [_, wipe] = await engine.decide(crm_run("x", [("search", {"q": "x"}), ("wipe", {"all": True})]))
    assert wipe.threshold > wipe.score
    assert not wipe.anomalous and wipe.action == "allow"


async def test_shapes_the_escape_let_through_stay_out_of_the_window(
    redis_client: aioredis.Redis,
) -> None:
    """Round 7: reads each bringing one new field were allowed by the shape escape (≈ 12 bits)
    and went into the window beside the ≈ 0-bit searches, lifting the threshold to the ceiling,
    where a read with two new fields (17.8 bits) passed. The window now holds only the chain's
    normal step scores: the threshold does not move."""
    params = FAST.replace(field_escape_support=0, min_support=2)
    keys = Keys(f"ce{uuid.uuid4().hex[:8]}")
    engine = Engine.create(redis_client, keys=keys, rich=True, guardrails=False, params=params)
    for r in range(40):
        [*_, v] = await engine.decide(crm_run(f"t{r}", [("search", {"q": "x"}),
                                                     ("read", {"id": r})]))
    assert v.mode == "locked"
    window = keys.chain_keys(v.chain_tag).window
    before = await redis_client.lrange(window, 0, -1)
    escaped = []
    for i in range(8):  # one new field each: scored by the escape, allowed
        [_, read] = await engine.decide(crm_run(f"w{i}", [("search", {"q": "x"}),
                                                       ("read", {"id": 1, f"opt{i}": True})]))
        escaped.append(read)
    assert all(not w.anomalous for w in escaped)
    assert any(w.score > 4.0 for w in escaped)  # these scores would have gone in
    after = await redis_client.lrange(window, 0, -1)
    assert max(float(x) for x in after) <= max(float(x) for x in before), (before, after)
