"""VerdictStore.save_many: one Lua call on a single Redis, pipelined SETs on Redis Cluster.

Both paths must store the same bytes with the TTL, index only fresh pauses, and never let one
agent's verdict replace another agent's under the same (project, event id).
"""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from models.verdict import Edge, Verdict
from ratchet.sandbox.servers import RedisClusterServer
from ratchet.store.keys import Keys
from ratchet.store.verdicts import VerdictStore


def _verdict(i: int, action: str, *, duplicate: bool = False) -> Verdict:
    return Verdict(f"ev-{i}", "a", "r", "c", "locked", action != "allow", 5.0, 3.0,
                   Edge("x", "y", 0.5, 1.0, 2.0), action, (), 1000.0 + i, project_id="p",
                   duplicate=duplicate)


VERDICTS = [_verdict(0, "allow"), _verdict(1, "pause"), _verdict(2, "flag"),
            _verdict(3, "pause", duplicate=True), *(_verdict(i, "allow") for i in range(4, 40))]


async def _check(client: Redis | RedisCluster, store: VerdictStore, keys: Keys) -> None:
    await store.save_many(VERDICTS, 600)
    for v in VERDICTS:
        key = keys.verdict("p", v.event_id)
        assert await client.get(key) == orjson.dumps(v.to_dict())
        assert 0 < await client.ttl(key) <= 600
    paused = await client.zrange(keys.paused("p"), 0, -1)
    assert paused == [b"ev-1"]  # the duplicate pause is not indexed twice
    assert await store.get("p", "ev-2") == VERDICTS[2].to_dict()
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


async def test_single_redis_saves_in_one_script_call(redis_url: str, keys: Keys) -> None:
    client = Redis.from_url(redis_url)
    try:
        store = VerdictStore(client, keys)
        assert store._save_script is not None
        await _check(client, store, keys)
        # caller-encoded bodies are stored verbatim
        await store.save_many([VERDICTS[0]], 60, bodies=[b'{"custom":1}'])
        assert await client.get(keys.verdict("p", "ev-0")) == b'{"custom":1}'
    finally:
        await client.aclose()


@pytest.mark.cluster
async def test_cluster_saves_across_slots(redis_cluster: RedisClusterServer, keys: Keys) -> None:
    client = RedisCluster.from_url(redis_cluster.url)
    try:
        slots = {client.keyslot(keys.verdict("p", v.event_id)) for v in VERDICTS}
        assert len(slots) > 1  # one script call would be a cross-slot error here
        store = VerdictStore(client, keys)  # type: ignore[arg-type]
        assert store._save_script is None
        await _check(client, store, keys)
    finally:
        await client.aclose()
