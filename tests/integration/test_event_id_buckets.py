"""Event-id bindings (ratchet.store.event_id_buckets: one hash per project, records packed into
slots that split as it fills, lua/includes/id_slots.lua) on a real redis-server and a real
3-master Redis Cluster: the window and its edges, clock skew, retries and conflicts within one
call, release, bindings of the layouts before (one key per id; time buckets of a field per id),
the compact stored form, splits and the dropping of expired records.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster

from models.errors import StoreError
from models.events import IngestEvent, parse_event
from models.idempotency import event_fingerprint
from ratchet.sandbox.servers import RedisClusterServer
from ratchet.store.admission import AdmissionStore
from ratchet.store.event_id_buckets import (
    BUCKET_S,
    PER_SLOT,
    SALT_PROPOSAL,
    Settled,
    claim_answers,
    claim_call,
    id_digest,
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
    assert len(out) == len(events) + 1 and int(out[-1]) in (0, 1)  # + whether legacy reads go on
    return [int(x) for x in out[:-1]]


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


async def test_a_binding_is_one_compact_record_and_the_hash_outlives_the_window(
    redis_client: RedisClient, keys: Keys
) -> None:
    now = time.time()
    e = _event()
    await EventIds(redis_client, keys, window_s=WINDOW).claim([e], now=now)
    ttl = await redis_client.ttl(keys.event_ids(PROJECT))
    assert WINDOW <= ttl <= WINDOW + 3600
    # compact: a 24-byte record (the id's 12-byte digest, 8 bytes of the fingerprint, the
    # second it was bound) in slot "0" of a hash with one slot ("#": k, split pointer,
    # records; "#s": the salt of its slot addresses, this process's proposal as the first;
    # "#c": the second this layout first bound here); no per-id key, no time bucket
    assert await redis_client.hgetall(keys.event_ids(PROJECT)) == {
        b"0": (id_digest(e.event_id) + bytes.fromhex(event_fingerprint(e)[:16])
               + int(now).to_bytes(4, "big")),
        b"#": b"0:0:1", b"#s": SALT_PROPOSAL, b"#c": str(int(now)).encode()}
    assert await redis_client.exists(keys.event_id_bucket(PROJECT, int(now // BUCKET_S))) == 0
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
    slots = await _slots(redis_client, keys.event_ids(PROJECT))
    assert sum(len(v) for v in slots.values()) == 2_500 * 24


async def _slots(client: RedisClient, bucket: str) -> dict[bytes, bytes]:
    """The bucket's slot fields (all but "#" and the salt "#s")."""
    return {f: v for f, v in (await client.hgetall(bucket)).items() if not f.startswith(b"#")}


async def test_slots_split_as_a_bucket_fills_and_every_binding_stays_found(
    redis_client: RedisClient, keys: Keys
) -> None:
    """Linear hashing: ≈ PER_SLOT records per slot however many ids, each id still found in
    the slot its digest names after the splits (retries and conflicts answered), none lost."""
    now = time.time()
    events = [_event(f"a{i % 7}") for i in range(6_000)]
    for lo in range(0, len(events), 200):
        assert await _codes(redis_client, keys, events[lo:lo + 200], now) == [1] * 200
    bindings = keys.event_ids(PROJECT)
    slots = await _slots(redis_client, bindings)
    k, s, n = (int(x) for x in (await redis_client.hget(bindings, "#")).split(b":"))
    # a slot no id hashed to holds no field (random ids: a freshly split slot expects ≈ 8, so
    # one in a few hundred runs leaves one empty)
    assert n == 6_000 and 2 ** k + s - 2 <= len(slots) <= 2 ** k + s
    assert 6_000 / PER_SLOT <= 2 ** k + s <= 6_000 / PER_SLOT + 1
    records = sorted(v[i:i + 20] for v in slots.values() for i in range(0, len(v), 24))
    assert records == sorted(id_digest(e.event_id) + bytes.fromhex(event_fingerprint(e)[:16])
                             for e in events)
    salt = await redis_client.hget(bindings, "#s")
    for field, value in slots.items():  # every record sits in the slot its address names
        for i in range(0, len(value), 24):
            address = int.from_bytes(hashlib.sha1(salt + value[i:i + 12]).digest()[:4], "big")
            slot = address % 2 ** k
            assert field == b"%d" % (slot if slot >= s else address % 2 ** (k + 1))
    again = [_event("zz", e.event_id) if i % 3 else e for i, e in enumerate(events)]
    for lo in range(0, len(again), 500):
        assert await _codes(redis_client, keys, again[lo:lo + 500], now) == [
            0 if i % 3 else 2 for i in range(lo, lo + 500)]


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
    # answered from the old key, not bound again
    assert await redis_client.exists(keys.event_ids(PROJECT)) == 0
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


async def test_bindings_of_the_field_per_id_layout_are_honoured_and_released(
    redis_client: RedisClient, keys: Keys
) -> None:
    """A rolling upgrade from the release with time buckets of a field per id (its compact id →
    12 bytes of the fingerprint): those ids keep their owner, and a release still frees them
    (compare and delete); new ids go to the bindings hash only."""
    now = time.time()
    bucket = keys.event_id_bucket(PROJECT, int(now // BUCKET_S))
    old, other_old, freed = _event(), _event(), _event()
    await redis_client.hset(bucket, mapping={
        event_field(e.event_id): bytes.fromhex(event_fingerprint(e)[:24])
        for e in (old, other_old, freed)})
    new = _event()
    assert await _codes(redis_client, keys, [old, _event("a2", other_old.event_id), new],
                        now) == [2, 0, 1]
    assert await _codes(redis_client, keys, [new, _event("a2", old.event_id)], now) == [2, 0]
    assert not await redis_client.hexists(bucket, event_field(new.event_id))
    release = scripts_for(redis_client)["event_ids_release"]
    k, a = release_call(keys, PROJECT, [(freed.event_id, event_fingerprint(freed))], WINDOW, now)
    assert int(await release(keys=k, args=a)) == 1
    assert not await redis_client.hexists(bucket, event_field(freed.event_id))
    assert await _codes(redis_client, keys, [_event("a2", freed.event_id)], now) == [1]
    assert await _codes(redis_client, keys, [_event("a3", old.event_id)], now,
                        legacy=False) == [1]


async def test_release_in_a_split_bucket_frees_only_those_ids(
    redis_client: RedisClient, keys: Keys
) -> None:
    now = time.time()
    events = [_event() for _ in range(1_000)]
    assert await _codes(redis_client, keys, events, now) == [1] * 1_000
    freed = events[::4]
    release = scripts_for(redis_client)["event_ids_release"]
    k, a = release_call(keys, PROJECT, [(e.event_id, event_fingerprint(e)) for e in freed],
                        WINDOW, now)
    assert int(await release(keys=k, args=a)) == len(freed)
    assert (await redis_client.hget(keys.event_ids(PROJECT), "#")).endswith(b":750")
    others = [_event("a2", e.event_id) for e in events]
    assert await _codes(redis_client, keys, others, now) == [
        1 if i % 4 == 0 else 0 for i in range(1_000)]


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
    assert 0 < await redis_client.ttl(keys.event_ids(PROJECT)) <= 120 + 121


async def test_expired_bindings_leave_when_their_slot_is_written(
    redis_client: RedisClient, keys: Keys
) -> None:
    """Memory is not kept past the window: a slot written after its records' window drops
    them (the count "#" follows), and they are never answered meanwhile."""
    now = time.time()
    first = [_event() for _ in range(400)]
    assert await _codes(redis_client, keys, first, now) == [1] * 400
    later = now + WINDOW + 1
    assert await _codes(redis_client, keys, [_event("b", e.event_id) for e in first[:10]],
                        later) == [1] * 10
    fresh = [_event() for _ in range(2_000)]
    for lo in range(0, 2_000, 200):
        assert await _codes(redis_client, keys, fresh[lo:lo + 200], later) == [1] * 200
    bindings = keys.event_ids(PROJECT)
    slots = await _slots(redis_client, bindings)
    stamps = [int.from_bytes(v[i + 20:i + 24], "big") for v in slots.values()
              for i in range(0, len(v), 24)]
    n = int((await redis_client.hget(bindings, "#")).split(b":")[2])
    assert n == len(stamps) and 2_010 <= n < 2_010 + 400
    assert stamps.count(int(now)) < 400 // 2  # most expired records are gone already
    assert await _codes(redis_client, keys, [_event("c", e.event_id) for e in first[10:]],
                        later) == [1] * 390


async def test_slot_addresses_follow_the_stored_salt_not_the_caller(
    redis_client: RedisClient, keys: Keys
) -> None:
    """The first binding stores the proposed salt; later calls proposing another keep it, so
    every gateway finds every record, and ids ground to collide on their plain digest's first
    bytes (what an agent could aim at without the salt) spread over the slots."""
    now = time.time()
    bindings = keys.event_ids(PROJECT)
    ids_script = scripts_for(redis_client)["event_ids_claim"]
    aimed = []
    i = 0
    while len(aimed) < 600:  # ids whose plain digests all name slot 0 of up to 2^6 slots
        event_id = f"ground-{i}"
        i += 1
        if id_digest(event_id)[3] % 64 == 0:
            aimed.append(_event("a1", event_id))
    first, second = b"A" * 16, b"B" * 16
    for lo, salt in ((0, first), (300, second)):
        batch = aimed[lo:lo + 300]
        script_keys, args = claim_call(keys, PROJECT, [(e.event_id, event_fingerprint(e))
                                                      for e in batch], WINDOW, now)
        args[5] = salt
        assert await ids_script(keys=script_keys, args=args) == [1] * 300 + [1]
    assert await redis_client.hget(bindings, "#s") == first
    slots = await _slots(redis_client, bindings)
    assert len(slots) >= 600 / PER_SLOT
    assert max(len(v) // 24 for v in slots.values()) <= 4 * PER_SLOT  # not all in one slot
    # every record is found again, whichever salt a later caller proposes
    script_keys, args = claim_call(keys, PROJECT, [(e.event_id, event_fingerprint(e))
                                                  for e in aimed], WINDOW, now)
    args[5] = second
    assert await ids_script(keys=script_keys, args=args) == [2] * 600 + [1]


async def test_layouts_before_are_read_for_one_window_then_no_more(
    redis_client: RedisClient, keys: Keys
) -> None:
    """The hash remembers when this layout first bound in it ("#c"); for a window and a margin
    (1 h) after that a key of the layout before still answers, and the script says the reads go
    on; later no binding of a release before can be live, so the script ignores them even when
    asked, says so, and the callers stop sending their keys (half the arguments per event)."""
    t0 = float(int(time.time()))
    ids = EventIds(redis_client, keys, window_s=WINDOW)
    assert await ids.claim([_event()], now=t0) == [True]
    assert await redis_client.hget(keys.event_ids(PROJECT), "#c") == str(int(t0)).encode()
    old = _event()
    await redis_client.set(keys.event_fingerprint(PROJECT, old.event_id), event_fingerprint(old),
                           ex=WINDOW)
    reuse = _event("a2", old.event_id)
    late = t0 + WINDOW + 3600
    assert await _codes(redis_client, keys, [reuse], late) == [0]  # still read at the edge
    assert ids._settled.legacy(PROJECT)
    k, a = claim_call(keys, PROJECT, [(reuse.event_id, event_fingerprint(reuse))], WINDOW,
                      late + 1)
    out = await scripts_for(redis_client)["event_ids_claim"](keys=k, args=a)
    assert [int(x) for x in out] == [1, 0]  # not read any more, though asked; reads are over
    # the callers learn it from that answer and send two arguments per event from then on
    assert await ids.claim([_event("a3", old.event_id)], now=late + 2) == [False]  # bound above
    assert not ids._settled.legacy(PROJECT)
    store = AdmissionStore(redis_client, keys, redis_client, window_s=WINDOW)  # the clock's now
    first = await store.round_trip(failures_key=None, key_sha=None, project_id=PROJECT,
                                   claims=[(str(uuid.uuid4()), "1" * 32)])
    assert first.claims == [1] and store._settled.legacy(PROJECT)
    await redis_client.hset(keys.event_ids(PROJECT), "#c", int(time.time()) - WINDOW - 3601)
    first = await store.round_trip(failures_key=None, key_sha=None, project_id=PROJECT,
                                   claims=[(str(uuid.uuid4()), "1" * 32)])
    assert first.claims == [1] and not store._settled.legacy(PROJECT)
    keys_sent, args_sent = claim_call(keys, PROJECT, [("x", "2" * 32)], WINDOW, late,
                                      legacy=False)
    assert keys_sent == [keys.event_ids(PROJECT)] and len(args_sent) == 6 + 2


async def test_a_claim_answer_of_another_length_is_a_store_error() -> None:
    settled = Settled()
    assert claim_answers([1, 2, 0, 1], 3, settled, "p") == [1, 2, 0] and settled.legacy("p")
    assert claim_answers([1, 0], 1, settled, "p") == [1] and not settled.legacy("p")
    with pytest.raises(StoreError, match="answered 3 values for 3 events"):
        claim_answers([1, 2, 0], 3)
