"""VerdictStore: a batch's verdicts saved in one call per project into one hash per kind and time
bucket, looked up by event id, kept for their kind's TTL — on a single Redis and on Redis Cluster.

Both must store the caller's bytes, index only fresh pauses, keep allow verdicts only
``allow_ttl_s`` and the others ``ttl_s``, and never let one agent's verdict replace another
agent's under the same (project, event id).
"""

from __future__ import annotations

import dataclasses
import time

import orjson
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from models.verdict import Edge, Verdict
from models.verdict_stored import encode_stored
from ratchet.sandbox.servers import RedisClusterServer
from ratchet.store.keys import Keys
from ratchet.store.verdicts import ALLOW_BUCKET_S, HELD_BUCKET_S, VerdictStore


def _verdict(i: int, action: str, *, duplicate: bool = False, project: str = "p") -> Verdict:
    return Verdict(f"ev-{i}", "a", "r", "c", "locked", action != "allow", 5.0, 3.0,
                   Edge("x", "y", 0.5, 1.0, 2.0), action, (), 1000.0 + i, project_id=project,
                   duplicate=duplicate)


VERDICTS = [_verdict(0, "allow"), _verdict(1, "pause"), _verdict(2, "flag"),
            _verdict(3, "pause", duplicate=True), *(_verdict(i, "allow") for i in range(4, 40))]


async def _bucket_of(client: Redis | RedisCluster, keys: Keys, v: Verdict) -> str | None:
    """The bucket key holding ``v`` (scanning the live buckets of its kind)."""
    kind, width = ("a", ALLOW_BUCKET_S) if v.action == "allow" else ("n", HELD_BUCKET_S)
    now = int(time.time() // width)
    for i in (now, now - 1):
        key = keys.verdict_bucket(v.project_id, kind, i)
        if await client.hexists(key, v.event_id):
            return key
    return None


async def _check(client: Redis | RedisCluster, store: VerdictStore, keys: Keys) -> None:
    await store.save_many(VERDICTS, 600)
    buckets = set()
    for v in VERDICTS:
        key = await _bucket_of(client, keys, v)
        assert key is not None, v.event_id
        buckets.add(key)
        assert await client.hget(key, v.event_id) == encode_stored(v)  # compact, ≈ 210 B
        assert await store.get("p", v.event_id) == v.to_dict()
    assert len(buckets) == 2  # one hash per kind for the whole batch, not a key per verdict
    paused = await client.zrange(keys.paused("p"), 0, -1)
    assert paused == [b"ev-1"]  # the duplicate pause is not indexed twice
    page = await store.list_paused("p")
    assert page.verdicts == [VERDICTS[1].to_dict()]
    # an event id belongs to one agent per project: another agent's verdict under it (a pause
    # too) is dropped, the owner's redelivery is stored again (issue 10, finding 3)
    intruders = [dataclasses.replace(VERDICTS[i], agent_id="intruder", action="pause")
                 for i in (2, 4)]
    await store.save_many(intruders, 600)
    assert await store.get("p", "ev-2") == VERDICTS[2].to_dict()
    assert await store.get("p", "ev-4") == VERDICTS[4].to_dict()
    assert await client.zrange(keys.paused("p"), 0, -1) == [b"ev-1"]
    again = dataclasses.replace(VERDICTS[2], action="pause", duplicate=True)
    await store.save_many([again, intruders[1]], 600)
    assert await store.get("p", "ev-2") == again.to_dict()
    assert await store.get("p", "ev-4") == VERDICTS[4].to_dict()
    assert await store.get("p", "ev-unknown") is None
    assert await store.get("other", "ev-2") is None  # verdicts are per project


async def test_single_redis_saves_a_batch_in_one_hash_per_kind(redis_url: str, keys: Keys) -> None:
    client = Redis.from_url(redis_url)
    try:
        store = VerdictStore(client, keys)
        await _check(client, store, keys)
        # caller-encoded bodies are stored verbatim
        await store.save_many([VERDICTS[0]], 60, bodies=[b'{"custom":1,"agent_id":"a"}'])
        assert await store.get("p", "ev-0") == {"custom": 1, "agent_id": "a"}
    finally:
        await client.aclose()


async def test_verdicts_are_kept_for_their_kinds_ttl(redis_url: str, keys: Keys) -> None:
    """Allow verdicts live allow_ttl_s (+ < one bucket), the others ttl_s (+ < one bucket)."""
    client = Redis.from_url(redis_url)
    try:
        store = VerdictStore(client, keys, ttl_s=86_400, allow_ttl_s=900)
        await store.save_many([_verdict(0, "allow"), _verdict(1, "pause")], 86_400)
        allow = await _bucket_of(client, keys, _verdict(0, "allow"))
        held = await _bucket_of(client, keys, _verdict(1, "pause"))
        assert allow is not None and held is not None and allow != held
        assert 900 - 5 <= await client.ttl(allow) <= 900 + ALLOW_BUCKET_S
        assert 86_400 - 5 <= await client.ttl(held) <= 86_400 + HELD_BUCKET_S
        # the allow TTL never exceeds the verdict TTL the worker passes
        short = VerdictStore(client, keys, ttl_s=120, allow_ttl_s=900)
        await short.save_many([_verdict(5, "allow", project="q")], 120)
        key = await _bucket_of(client, keys, _verdict(5, "allow", project="q"))
        assert key is not None and 0 < await client.ttl(key) <= 120 + ALLOW_BUCKET_S
    finally:
        await client.aclose()


async def test_lookup_serves_the_ids_first_agent_across_buckets(
    redis_url: str, keys: Keys
) -> None:
    """An intruder's verdict in a LATER bucket (gateway id check off) is never answered; the
    owner's redelivery in a later bucket is."""
    client = Redis.from_url(redis_url)
    try:
        store = VerdictStore(client, keys)
        owner = _verdict(7, "allow")
        await store.save_many([owner], 600)
        later = int(time.time() // ALLOW_BUCKET_S) + 1  # the next bucket, written directly
        intruder = dataclasses.replace(owner, agent_id="intruder", score=99.0,
                                       decided_at=owner.decided_at + 1)
        await client.hset(keys.verdict_bucket("p", "a", later), owner.event_id,
                          orjson.dumps(intruder.to_dict()))
        assert await store.get("p", owner.event_id) == owner.to_dict()
        redelivered = dataclasses.replace(owner, duplicate=True, decided_at=owner.decided_at + 2)
        held = int(time.time() // HELD_BUCKET_S)  # a redelivery that a guardrail now flags
        await client.hset(keys.verdict_bucket("p", "n", held), owner.event_id,
                          orjson.dumps(redelivered.to_dict()))
        assert await store.get("p", owner.event_id) == redelivered.to_dict()
    finally:
        await client.aclose()


async def test_lookup_reads_owners_of_both_stored_forms(redis_url: str, keys: Keys) -> None:
    """The owner of an id is judged from compact and JSON entries alike (agent, decided_at read
    by lua/verdict_get.lua from either form): an owner stored as JSON by an earlier release
    keeps its id against a compact intruder decided later, and its compact redelivery is
    answered; the save refuses a compact intruder over a JSON owner."""
    client = Redis.from_url(redis_url)
    try:
        store = VerdictStore(client, keys)
        owner = _verdict(8, "allow")
        now_a = int(time.time() // ALLOW_BUCKET_S)
        await client.hset(keys.verdict_bucket("p", "a", now_a), owner.event_id,
                          orjson.dumps(owner.to_dict()))  # an earlier release's JSON
        intruder = dataclasses.replace(owner, agent_id="intruder", decided_at=owner.decided_at + 1)
        await client.hset(keys.verdict_bucket("p", "a", now_a + 1), owner.event_id,
                          encode_stored(intruder))
        assert await store.get("p", owner.event_id) == owner.to_dict()
        redelivered = dataclasses.replace(owner, duplicate=True, decided_at=owner.decided_at + 2,
                                          action="flag", anomalous=True)
        await client.hset(keys.verdict_bucket("p", "n", int(time.time() // HELD_BUCKET_S)),
                          owner.event_id, encode_stored(redelivered))
        assert await store.get("p", owner.event_id) == redelivered.to_dict()
        other = _verdict(9, "allow")
        await client.hset(keys.verdict_bucket("p", "a", now_a), other.event_id,
                          orjson.dumps(other.to_dict()))
        await store.save_many([dataclasses.replace(other, agent_id="intruder")], 600)
        assert await store.get("p", other.event_id) == other.to_dict()
    finally:
        await client.aclose()


async def test_verdicts_of_the_per_event_layout_are_still_found(
    redis_url: str, keys: Keys
) -> None:
    client = Redis.from_url(redis_url)
    try:
        old = _verdict(99, "pause")
        await client.set(keys.verdict("p", old.event_id), orjson.dumps(old.to_dict()), ex=60)
        assert await VerdictStore(client, keys).get("p", old.event_id) == old.to_dict()
    finally:
        await client.aclose()


@pytest.mark.cluster
async def test_cluster_saves_and_looks_up(redis_cluster: RedisClusterServer, keys: Keys) -> None:
    client = RedisCluster.from_url(redis_cluster.url)
    try:
        slots = {client.keyslot(keys.verdict_bucket("p", kind, i))
                 for kind in "an" for i in range(5)}
        assert len(slots) == 1  # one project's buckets: one script call per project
        store = VerdictStore(client, keys)  # type: ignore[arg-type]
        await _check(client, store, keys)
        old = _verdict(99, "pause")
        await client.set(keys.verdict("p", old.event_id), orjson.dumps(old.to_dict()), ex=60)
        assert await store.get("p", old.event_id) == old.to_dict()
    finally:
        await client.aclose()
