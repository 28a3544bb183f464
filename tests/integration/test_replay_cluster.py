"""Replay-protection scripts on a real 3-master Redis Cluster; a cross-slot call must fail.

One agent's event-id keys share a hash tag (one script call per agent of a request), and an
Idempotency-Key record is one key: both run on a cluster, and a claim script handed keys of two
agents is refused — the proof that the tags are what the script relies on.
"""

from __future__ import annotations

import uuid

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, ResponseError

from models.events import IngestEvent, parse_event
from models.idempotency import StoredAnswer, key_digest
from ratchet.sandbox.servers import RedisClusterServer
from ratchet.store.idempotency import BeginCode, EventIds, IdempotencyStore
from ratchet.store.keys import Keys
from ratchet.store.scripts import scripts_for

pytestmark = [pytest.mark.asyncio, pytest.mark.cluster]


def _event(agent: str, event_id: str | None = None, run: str = "r1") -> IngestEvent:
    return parse_event({"event_id": event_id or str(uuid.uuid4()), "agent_id": agent,
                        "run_id": run, "service": "crm", "action": "read", "payload": {}}, "p")


async def test_replay_scripts_run_on_cluster(redis_cluster: RedisClusterServer,
                                             keys: Keys) -> None:
    client = RedisCluster.from_url(redis_cluster.url)
    await client.initialize()
    try:
        ids = EventIds(client, keys, window_s=60)
        agents = [f"agent-{i}" for i in range(12)]
        projects = [f"prj-{i}" for i in range(12)]
        slots = {client.keyslot(keys.event_fingerprint(p, "e")) for p in projects}
        assert len(slots) == len(projects)  # spread over the cluster, one slot per project
        assert len({client.keyslot(keys.event_fingerprint("p", f"e{i}")) for i in range(9)}) == 1
        first = [_event(a) for a in agents for _ in range(3)]
        assert await ids.claim(first) == [True] * len(first)
        reused = [_event(e.agent_id, e.event_id, run="r2") for e in first[::3]]
        assert await ids.claim([*first[:2], *reused]) == [True, True] + [False] * len(reused)

        store = IdempotencyStore(client, keys, ttl_s=60, lease_s=5)
        begin = await store.begin("p", "kid", key_digest("k"), "fp")
        assert begin.code is BeginCode.RESERVED and begin.reservation is not None
        await store.finish(begin.reservation, StoredAnswer(202, b"{}"))
        assert (await store.begin("p", "kid", key_digest("k"), "fp")).code is BeginCode.REPLAY

        claim = scripts_for(client)["event_ids_claim"]
        two_projects = [keys.event_fingerprint(p, "e") for p in projects[:2]]
        with pytest.raises((RedisClusterException, ResponseError)):
            await claim(keys=two_projects, args=[60, "a", "b"])
    finally:
        await client.aclose()
