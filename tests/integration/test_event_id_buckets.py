"""Event-id bindings in time buckets (ratchet.store.event_id_buckets) on a real redis-server and a
real 3-master Redis Cluster: bucket boundaries, the window, retries and conflicts within one call,
release after a rollover, bindings of the layout before buckets (one key per id), and the compact
stored form.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster

from models.events import IngestEvent, parse_event
from models.idempotency import event_fingerprint
from ratchet.sandbox.servers import RedisClusterServer
from ratchet.store.admission import AdmissionStore
from ratchet.store.event_id_buckets import (
    BUCKET_S,
    claim_call,
    live_buckets,
    release_call,
)
from ratchet.store.idempotency import EventIds
from ratchet.store.keys import Keys, event_field
from ratchet.store.redis import RedisClient
from ratchet.store.scripts import scripts_for

pytestmark = pytest.mark.asyncio

WINDOW = 86_400
PROJECT = "prj"


def _event(agent: str = "a1", event_id: str | None = None, run: str = "r1") -> IngestEvent:
    return parse_event({"event_id": event_id or str(uuid.uuid4()), "agent_id": agent,
                        "run_id": run, "service": "crm", "action": "read", "payload": {}},
                       PROJECT)


def _next_boundary() -> float:
    """The start of the next bucket (in the future, so keys written 'at' it are alive now)."""
    return (int(time.time() // BUCKET_S) + 1) * BUCKET_S


async def _codes(client: RedisClient, keys: Keys, events: list[IngestEvent], now: float,
                 *, legacy: bool = True) -> list[int]:
    """The claim script's raw answers (1 new, 2 retry, 0 conflict)."""
    k, a = claim_call(keys, PROJECT, [(e.event_id, event_fingerprint(e)) for e in events],
                      WINDOW, now, legacy=legacy)
    out: list[Any] = await scripts_for(client)["event_ids_claim"](keys=k, args=a)
    return [int(x) for x in out]


async def test_an_id_claimed_just_before_a_rollover_stays_bound_after(
    redis_client: RedisClient, keys: Keys
) -> None:
    ids = EventIds(redis_client, keys, window_s=WINDOW)
    edge = _next_boundary()
    e = _event()
    assert await ids.claim([e], now=edge - 0.5) == [True]
    # the next bucket: the id is in the previous one, still a retry for the same body ...
    assert await _codes(redis_client, keys, [e], edge + 0.5) == [2]
    # ... and a conflict for another agent's event under it
    assert await ids.claim([_event("a2", e.event_id)], now=edge + 0.5) == [False]
    # one second before its window ends (buckets later): still bound
    assert await _codes(redis_client, keys, [_event("a2", e.event_id)],
                        edge - 0.5 + WINDOW - 1) == [0]
    # once its bucket is out of the window, the id is free again (a new binding)
    assert await _codes(redis_client, keys, [_event("a2", e.event_id)],
                        edge + WINDOW + 1) == [1]


async def test_a_bucket_is_kept_one_window_after_its_end(
    redis_client: RedisClient, keys: Keys
) -> None:
    now = time.time()
    e = _event()
    await EventIds(redis_client, keys, window_s=WINDOW).claim([e], now=now)
    bucket = keys.event_id_bucket(PROJECT, int(now // BUCKET_S))
    ttl = await redis_client.ttl(bucket)
    assert WINDOW <= ttl <= WINDOW + BUCKET_S
    # compact: the id's 17-byte field, 12 bytes of the fingerprint; no per-id key
    assert await redis_client.hgetall(bucket) == {
        event_field(e.event_id): bytes.fromhex(event_fingerprint(e)[:24])}
    assert len(event_field(e.event_id)) == 17
    assert await redis_client.exists(keys.event_fingerprint(PROJECT, e.event_id)) == 0


async def test_clock_skew_a_gateway_ahead_writes_the_next_bucket_others_read_it(
    redis_client: RedisClient, keys: Keys
) -> None:
    edge = _next_boundary()
    e = _event()
    assert await _codes(redis_client, keys, [e], edge + 1) == [1]  # its clock: past the edge
    assert await _codes(redis_client, keys, [_event("a2", e.event_id)], edge - 1) == [0]


async def test_retries_and_conflicts_within_one_call(redis_client: RedisClient, keys: Keys) -> None:
    now = time.time()
    e, f = _event(), _event()
    other = _event("a2", e.event_id)
    assert await _codes(redis_client, keys, [e, e, other, f], now) == [1, 2, 0, 1]
    assert await _codes(redis_client, keys, [f, other, e], now) == [2, 0, 2]


async def test_non_uuid_ids_and_a_batch_larger_than_one_unpack(
    redis_client: RedisClient, keys: Keys
) -> None:
    now = time.time()
    events = [_event(event_id=f"ev-{i}") for i in range(2_500)]
    assert await _codes(redis_client, keys, events, now) == [1] * 2_500
    again = [_event("a2", e.event_id) if i % 2 else e for i, e in enumerate(events)]
    assert await _codes(redis_client, keys, again, now) == [2, 0] * 1_250
    bucket = keys.event_id_bucket(PROJECT, int(now // BUCKET_S))
    assert await redis_client.hlen(bucket) == 2_500
    assert await redis_client.hexists(bucket, b"e:ev-7")


async def test_release_after_a_rollover_frees_only_what_the_request_bound(
    redis_client: RedisClient, keys: Keys
) -> None:
    edge = _next_boundary()
    mine, kept = _event(), _event()
    assert await _codes(redis_client, keys, [mine, kept], edge - 0.5) == [1, 1]
    release = scripts_for(redis_client)["event_ids_release"]
    # another body under the same id does not unbind it (compare and delete)
    k, a = release_call(keys, PROJECT, [(mine.event_id, event_fingerprint(_event("a2")))],
                        WINDOW, edge + 0.5)
    assert int(await release(keys=k, args=a)) == 0
    k, a = release_call(keys, PROJECT, [(mine.event_id, event_fingerprint(mine))],
                        WINDOW, edge + 0.5)
    assert int(await release(keys=k, args=a)) == 1
    assert await _codes(redis_client, keys, [_event("a2", mine.event_id), kept],
                        edge + 1) == [1, 2]


async def test_bindings_of_the_layout_before_buckets_are_honoured(
    redis_client: RedisClient, keys: Keys
) -> None:
    """A rolling upgrade: ids bound by the previous release (a key per id holding the hex
    fingerprint, as its ``SET key fp NX GET EX window`` left it) keep their owner."""
    old, other_old = _event(), _event()
    for e in (old, other_old):
        await redis_client.set(keys.event_fingerprint(PROJECT, e.event_id),
                               event_fingerprint(e), ex=WINDOW)
    now = time.time()
    assert await _codes(redis_client, keys, [old, _event("a2", other_old.event_id)],
                        now) == [2, 0]
    # answered from the old key, not bound again in a bucket
    assert await redis_client.hlen(keys.event_id_bucket(PROJECT, int(now // BUCKET_S))) == 0
    ids = EventIds(redis_client, keys, window_s=WINDOW)
    assert await ids.claim([old, _event("a3", old.event_id)]) == [True, False]
    # the admission round trip reads them too
    store = AdmissionStore(redis_client, keys, redis_client, window_s=WINDOW)
    reads = await store.round_trip(
        failures_key=None, key_sha=None, project_id=PROJECT,
        claims=[(old.event_id, event_fingerprint(old)),
                (old.event_id, event_fingerprint(_event("a3", old.event_id)))])
    assert reads.claims == [2, 0]
    # without the legacy read (a later release) the old keys are not consulted
    assert await _codes(redis_client, keys, [_event("a4", old.event_id)], now,
                        legacy=False) == [1]


async def test_admission_round_trip_and_release_use_the_buckets(
    redis_client: RedisClient, keys: Keys
) -> None:
    store = AdmissionStore(redis_client, keys, redis_client, window_s=WINDOW)
    e = _event()
    claim = [(e.event_id, event_fingerprint(e))]
    reads = await store.round_trip(failures_key=None, key_sha=None, project_id=PROJECT,
                                   claims=claim)
    assert reads.claims == [1]
    again = await store.round_trip(failures_key=None, key_sha=None, project_id=PROJECT,
                                   claims=claim)
    assert again.claims == [2]
    await store.release(PROJECT, claim)
    intruder = [(e.event_id, event_fingerprint(_event("a2", e.event_id)))]
    after = await store.round_trip(failures_key=None, key_sha=None, project_id=PROJECT,
                                   claims=intruder)
    assert after.claims == [1]  # released: the id was free again


@pytest.mark.cluster
async def test_buckets_on_a_cluster(redis_cluster: RedisClusterServer, keys: Keys) -> None:
    client = RedisCluster.from_url(redis_cluster.url)
    await client.initialize()
    try:
        edge = _next_boundary()
        slots = {client.keyslot(k) for k in
                 claim_call(keys, PROJECT, [(str(uuid.uuid4()), "0" * 32) for _ in range(5)],
                            WINDOW, edge)[0]}
        assert len(slots) == 1  # every bucket and old key of a project: one slot
        assert len(live_buckets(edge, WINDOW)) == WINDOW // BUCKET_S + 2
        ids = EventIds(client, keys, window_s=WINDOW)
        first = [_event(f"a{i}") for i in range(6)]
        assert await ids.claim(first, now=edge - 0.5) == [True] * 6
        await client.set(keys.event_fingerprint(PROJECT, "old-id"), "f" * 32, ex=60)
        later = [*first[:3], *(_event("x", e.event_id) for e in first[3:]),
                 _event("z", "old-id")]
        assert await ids.claim(later, now=edge + 0.5) == [True] * 3 + [False] * 4
        store = AdmissionStore(client, keys, client, window_s=WINDOW)
        reads = await store.round_trip(
            failures_key=None, key_sha=None, project_id=PROJECT,
            claims=[(e.event_id, event_fingerprint(e)) for e in first[:2]])
        assert reads.claims == [2, 2]
    finally:
        await client.aclose()


async def test_a_window_shorter_than_a_bucket_keeps_bindings_at_most_two_windows(
    redis_client: RedisClient, keys: Keys
) -> None:
    ids = EventIds(redis_client, keys, window_s=60)
    now = time.time()
    e = _event()
    assert await ids.claim([e], now=now) == [True]
    assert await ids.claim([_event("a2", e.event_id)], now=now + 59) == [False]
    assert await ids.claim([_event("a2", e.event_id)], now=now + 121) == [True]
    bucket = keys.event_id_bucket(PROJECT, int(now // 60))
    assert 0 < await redis_client.ttl(bucket) <= 120
