"""A chain's slot migrates to another master while the engine writes to it (Redis Cluster).

A 3-master cluster of its own. The engine's observe script runs batch after batch on six
chains (one Lua call per chain and batch, as a worker does); meanwhile the slot of the first
chain is moved by hand, the way ``redis-cli --cluster reshard`` does it: ``SETSLOT IMPORTING`` /
``MIGRATING``, the keys one at a time with ``MIGRATE`` (so for a while some of the chain's keys
are on the old master and some on the new one: its scripts get ``ASK`` or ``TRYAGAIN``), then
``SETSLOT NODE`` (``MOVED`` for clients that still route to the old master). A batch that fails
with the cluster's "retry" answer is sent again with the same event ids, as a worker does.

Then every chain's stored counts equal the reference model's (each script ran whole, on one
node, once: nothing lost, nothing counted twice), and the slot is served by its new master.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from redis.crc import key_slot

from models.errors import UnavailableError
from models.params import EngineParams
from models.reference import ReferenceChain
from ratchet.sandbox.servers import RedisClusterServer, RedisServer
from ratchet.store.chains import ChainBatch, EngineStore, ObserveItem
from ratchet.store.keys import Keys
from ratchet.store.redis import connect

pytestmark = [pytest.mark.asyncio, pytest.mark.cluster, pytest.mark.slow,
              pytest.mark.timeout(180)]

TAGS = [f"reshard{i}" for i in range(6)]
ROUNDS = 120


def _items(run: str, nodes: list[str]) -> list[ObserveItem]:
    return [ObserveItem(f"{run}-{i}", run, n, end_of_run=i == len(nodes) - 1)
            for i, n in enumerate(nodes)]


async def _node_id(node: RedisServer) -> str:
    plain = connect(node.url)
    try:
        raw = await plain.execute_command("CLUSTER MYID")
        return raw.decode() if isinstance(raw, bytes) else str(raw)
    finally:
        await plain.aclose()


async def _migrate_slot(cluster: RedisClusterServer, slot: int, source: RedisServer,
                        target: RedisServer, started: asyncio.Event) -> int:
    """Move ``slot`` from ``source`` to ``target`` one key at a time; returns keys moved."""
    src, dst = connect(source.url), connect(target.url)
    moved = 0
    try:
        src_id, dst_id = await _node_id(source), await _node_id(target)
        await started.wait()
        await dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
        await src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
        while True:
            keys = await src.execute_command("CLUSTER GETKEYSINSLOT", slot, 1)
            if not keys:
                break
            await src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000,
                                      "KEYS", *keys)
            moved += len(keys)
            await asyncio.sleep(0.1)  # the chain's keys stay split between the two for a while
        # the new owner first, then every other node (as redis-cli does)
        for node in sorted(cluster.nodes, key=lambda n: n is not target):
            plain = connect(node.url)
            try:
                await plain.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
            finally:
                await plain.aclose()
    finally:
        await src.aclose()
        await dst.aclose()
    return moved


async def test_slot_migrates_under_writes(keys: Keys) -> None:
    with RedisClusterServer(masters=3) as cluster:
        client = connect(cluster.url, cluster=True)
        try:
            await client.initialize()
            params = EngineParams(min_runs_soft=20, min_runs_locked=40)
            store = EngineStore(client, keys, params)
            refs = {t: ReferenceChain(params, eligible_chain=True) for t in TAGS}
            slot = key_slot(keys.chain_keys(TAGS[0]).meta.encode())
            source_port = int(client.get_node_from_key(keys.chain_keys(TAGS[0]).meta).port)
            source = next(n for n in cluster.nodes if n.port == source_port)
            target = next(n for n in cluster.nodes if n.port != source_port)
            started = asyncio.Event()
            migration = asyncio.create_task(_migrate_slot(cluster, slot, source, target,
                                                          started))
            retried: Counter[str] = Counter()
            for r in range(ROUNDS):
                if r == 5:
                    started.set()
                batches = [ChainBatch(t, _items(f"r{r}", ["a", "b", "c"] if r % 2 else ["a", "b"]),
                                      eligible=True) for t in TAGS]
                for attempt in range(50):
                    try:
                        await store.observe(batches)
                        break
                    except UnavailableError as exc:  # TRYAGAIN exhausted, ...: send it again
                        retried[type(exc.__cause__).__name__] += 1
                        await asyncio.sleep(0.05)
                else:
                    raise AssertionError(f"round {r} failed 50 times")
                for t in TAGS:
                    for item in batches[0].items:
                        refs[t].observe(item.event_id, item.run_id, item.node,
                                        end_of_run=item.end_of_run)
                if migration.done() and r > 10:
                    break
            moved = await migration
            assert moved > 0
            # one more round after the migration: the client follows MOVED to the new owner
            batches = [ChainBatch(t, _items("after", ["a", "b"]), eligible=True) for t in TAGS]
            await store.observe(batches)
            for t in TAGS:
                for item in batches[0].items:
                    refs[t].observe(item.event_id, item.run_id, item.node,
                                    end_of_run=item.end_of_run)
            for t in TAGS:
                assert await store.edge_counts(t) == refs[t].edges, t
            owner = connect(target.url)
            try:  # the chain now lives on the new master
                assert await owner.exists(keys.chain_keys(TAGS[0]).meta) == 1
            finally:
                await owner.aclose()
            print(f"\nresharding: slot {slot} moved {moved} keys :{source.port} → "
                  f"{target.port} during {r + 1} rounds; batches sent again: {dict(retried)}")
        finally:
            await client.aclose()
