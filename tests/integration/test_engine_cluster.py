"""Every engine script on a real 3-master Redis Cluster; a cross-slot call must fail.

The cross-slot failure is the proof that the hash tags are right: all keys of one chain live on
one slot, and a script given keys of two chains is refused by the cluster.
"""

from __future__ import annotations

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, ResponseError

from models.params import EngineParams
from models.reference import ReferenceChain
from ratchet.sandbox.servers import RedisClusterServer
from ratchet.store.chains import ChainBatch, EngineStore, ObserveItem
from ratchet.store.keys import Keys

pytestmark = [pytest.mark.asyncio, pytest.mark.cluster]


def _items(run: str, nodes: list[str]) -> list[ObserveItem]:
    return [ObserveItem(f"{run}-{i}", run, n, end_of_run=i == len(nodes) - 1)
            for i, n in enumerate(nodes)]


async def test_scripts_run_on_cluster(redis_cluster: RedisClusterServer, keys: Keys) -> None:
    client = RedisCluster.from_url(redis_cluster.url)
    await client.initialize()
    try:
        params = EngineParams(min_runs_soft=20, min_runs_locked=40)
        store = EngineStore(client, keys, params)
        ref = ReferenceChain(params, eligible_chain=True)
        tags = [f"chain{i}" for i in range(12)]
        slots = {client.keyslot(keys.chain_keys(t).meta) for t in tags}
        nodes = {client.get_node_from_key(keys.chain_keys(t).meta).name for t in tags}
        assert len(slots) == len(tags) and len(nodes) == 3  # spread over all masters
        for r in range(60):
            batches = [ChainBatch(t, _items(f"r{r}", ["a", "b"]), eligible=True) for t in tags]
            answers = await store.observe(batches)
            assert len(answers) == len(tags)
            for item in batches[0].items:
                ref.observe(item.event_id, item.run_id, item.node, end_of_run=item.end_of_run)
        for t in tags:
            assert await store.edge_counts(t) == ref.edges
            assert (await store.chain_meta(t))["mode"] == "2"
        [[_, odd]] = await store.observe(
            [ChainBatch(tags[0], [ObserveItem("x1", "x", "a"), ObserveItem("x2", "x", "evil")],
                        eligible=True)]
        )
        assert odd.held
        res = await store.feedback(tags[0], "x", "x2", "approve")
        assert res.applied and res.learned == 1
        assert await store.reset(tags[1]) == 6
        assert await store.edge_counts(tags[1]) == {}
    finally:
        await client.aclose()


async def test_cross_slot_call_fails(redis_cluster: RedisClusterServer, keys: Keys) -> None:
    client = RedisCluster.from_url(redis_cluster.url)
    try:
        store = EngineStore(client, keys, EngineParams())
        keys_a, args = store.observe_call(ChainBatch("alpha", _items("r", ["a"])), learn=True,
                                          now_ms=1)
        keys_b = keys.chain_keys("beta").as_list()
        assert client.keyslot(keys_a[0]) != client.keyslot(keys_b[0])
        mixed = keys_b[:1] + keys_a[1:]
        with pytest.raises((ResponseError, RedisClusterException)) as info:
            await store.scripts["observe"](keys=mixed, args=args)
        assert "slot" in str(info.value).lower()
    finally:
        await client.aclose()
