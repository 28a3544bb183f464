"""Reply routes on a real 3-master Redis Cluster: sharded pub/sub from worker to gateway.

Several gateway listeners (as the gateway builds them) on one cluster: each one's channel lives
on the shard that owns its slot; a reply published by the worker's publisher wakes the waiter of
that listener only, and a reply to a route nobody listens on is heard by no one.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio.cluster import RedisCluster

from gateway.metrics import VERDICT_BYTES_READ
from gateway.replies import ReplyListener
from gateway.waiters import Waiters
from models.verdict import Edge, Verdict
from models.verdict_wire import encode_compact
from ratchet.sandbox.servers import RedisClusterServer
from ratchet.store.keys import Keys
from ratchet.store.replies import ReplyPublisher

pytestmark = [pytest.mark.asyncio, pytest.mark.cluster]


def _reply(event_id: str) -> bytes:
    v = Verdict(event_id, "a", "r", "c", "shadow", False, 0.0, 0.0, Edge("^", "n", 0.0, 0.0, 0.0),
                "allow", (), time.time(), trace_id="t", project_id="p")
    return encode_compact("p", "a", "t", time.time(), [v])


async def test_each_listener_gets_only_its_own_replies(
    redis_cluster: RedisClusterServer, keys: Keys
) -> None:
    client = RedisCluster.from_url(redis_cluster.url)
    await client.initialize()
    listeners = [ReplyListener(client, keys, Waiters()) for _ in range(6)]
    try:
        for listener in listeners:
            await listener.start()
        shards = {client.get_node_from_key(lst.channel).name for lst in listeners}
        assert len(shards) >= 2, shards  # the routes spread over the masters
        publisher = ReplyPublisher(client, Keys(keys.prefix))
        waits = [lst.waiters.add("p", f"e{i}") for i, lst in enumerate(listeners)]
        before = VERDICT_BYTES_READ._value.get()
        heard = await publisher.publish(
            [(lst.route, _reply(f"e{i}")) for i, lst in enumerate(listeners)]
            + [("gone-gateway", _reply("e-nobody"))]
        )
        assert heard == [1] * len(listeners) + [0]
        bodies = await asyncio.wait_for(asyncio.gather(*waits), 5)
        assert [b["event_id"] for b in bodies] == [f"e{i}" for i in range(len(listeners))]
        # every listener read exactly its own reply
        assert VERDICT_BYTES_READ._value.get() - before == sum(
            len(_reply(f"e{i}")) for i in range(len(listeners)))
    finally:
        for listener in listeners:
            await listener.stop()
        await client.aclose()
