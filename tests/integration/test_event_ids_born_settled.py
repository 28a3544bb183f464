"""A project created by this release starts its event-id bindings hash settled
(``provisioning.start_event_ids`` → ``event_id_buckets.born_settled``: ``"#c"`` = 0), on a real
redis-server: its first claim already answers that the layouts before are done with, they are
not read, and the callers send the short form from the second call on; the first binding still
sets up the salt, the slots and the expiry; a project without the mark (one from a release
before) still reads them for a window and a margin, so their bindings keep their owners.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from models.events import IngestEvent, parse_event
from models.idempotency import event_fingerprint
from ratchet.platform.provisioning import create_project
from ratchet.sandbox.servers import RedisServer
from ratchet.store.admission import AdmissionStore
from ratchet.store.event_id_buckets import (
    BUCKET_S,
    PER_SLOT,
    SALT_PROPOSAL,
    bucket_width,
    claim_call,
    id_digest,
    live_buckets,
)
from ratchet.store.idempotency import EventIds
from ratchet.store.keys import Keys, event_field
from ratchet.store.redis import RedisClient
from ratchet.store.scripts import scripts_for

pytestmark = pytest.mark.asyncio

WINDOW = 86_400


def _event(project: str, agent: str = "a1", event_id: str | None = None) -> IngestEvent:
    return parse_event({"event_id": event_id or str(uuid.uuid4()), "agent_id": agent,
                        "run_id": "r1", "service": "crm", "action": "read", "payload": {}},
                       project)


async def _bound_before(client: RedisClient, keys: Keys, project: str, now: float
                        ) -> tuple[IngestEvent, IngestEvent]:
    """Two ids bound the ways releases before bound them: a key per id (hex fingerprint) and a
    field of the current time bucket (12 bytes of it)."""
    by_key, by_field = _event(project), _event(project)
    await client.set(keys.event_fingerprint(project, by_key.event_id), event_fingerprint(by_key),
                     ex=WINDOW)
    await client.hset(keys.event_id_bucket(project, int(now // BUCKET_S)),
                      event_field(by_field.event_id), bytes.fromhex(event_fingerprint(by_field)[:24]))
    return by_key, by_field


async def _claim(client: RedisClient, keys: Keys, project: str, events: list[IngestEvent],
                 now: float) -> list[int]:
    """The claim script's whole answer for ``events`` sent in the long form (with the layouts
    before), as a caller that has not heard from the project yet sends it."""
    k, a = claim_call(keys, project, [(e.event_id, event_fingerprint(e)) for e in events],
                      WINDOW, now, legacy=True)
    out: list[Any] = await scripts_for(client)["event_ids_claim"](keys=k, args=a)
    return [int(x) for x in out]


async def test_a_new_project_starts_with_its_bindings_hash_marked(
    redis_client: RedisClient, keys: Keys
) -> None:
    project, _ = await create_project(redis_client, keys, "fresh")
    bindings = keys.event_ids(project)
    assert await redis_client.hgetall(bindings) == {b"#c": b"0"}
    assert await redis_client.ttl(bindings) == -1  # no expiry until the first binding sets one


async def test_a_new_projects_first_claim_is_settled_and_reads_nothing_before(
    redis_client: RedisClient, keys: Keys
) -> None:
    """Bindings of the layouts before cannot exist in a project created by this release; planted
    there anyway, they show the script does not read them (a reused id is new to it) and says
    so in its first answer."""
    project, _ = await create_project(redis_client, keys, "fresh")
    now = time.time()
    by_key, by_field = await _bound_before(redis_client, keys, project, now)
    reuse = [_event(project, "a2", by_key.event_id), _event(project, "a2", by_field.event_id)]
    assert await _claim(redis_client, keys, project, reuse, now) == [1, 1, 0]


async def test_a_project_without_the_mark_still_reads_the_layouts_before(
    redis_client: RedisClient, keys: Keys
) -> None:
    """A project of a release before (no bindings hash yet): both kinds of binding keep their
    owner — reuse is refused, a retry is one — and the reads go on (last answer 1)."""
    project, _ = await create_project(redis_client, keys, "from a release before")
    await redis_client.delete(keys.event_ids(project))  # as that release left it: no hash
    now = time.time()
    by_key, by_field = await _bound_before(redis_client, keys, project, now)
    reuse = [_event(project, "a2", by_key.event_id), _event(project, "a2", by_field.event_id)]
    assert await _claim(redis_client, keys, project, [*reuse, by_key, by_field, _event(project)],
                        now) == [0, 0, 2, 2, 1, 1]
    ids = EventIds(redis_client, keys, window_s=WINDOW)
    assert await ids.claim(reuse, now=now) == [False, False]
    assert ids._settled.legacy(project)  # the caller keeps sending the layouts before
    assert await redis_client.hget(keys.event_ids(project), "#c") == str(int(now)).encode()


async def test_the_first_claim_in_a_marked_hash_sets_up_salt_slots_and_expiry(
    redis_client: RedisClient, keys: Keys
) -> None:
    project, _ = await create_project(redis_client, keys, "fresh")
    bindings = keys.event_ids(project)
    now = float(int(time.time()))
    e = _event(project)
    assert await _claim(redis_client, keys, project, [e], now) == [1, 0]
    assert await redis_client.hgetall(bindings) == {
        b"0": (id_digest(e.event_id) + bytes.fromhex(event_fingerprint(e)[:16])
               + int(now).to_bytes(4, "big")),
        b"#": b"0:0:1", b"#s": SALT_PROPOSAL, b"#c": b"0"}
    assert WINDOW <= await redis_client.ttl(bindings) <= WINDOW + 3600
    # the slots split as the hash fills and every binding stays found
    events = [_event(project, f"a{i % 5}") for i in range(600)]
    for lo in range(0, len(events), 100):
        assert await _claim(redis_client, keys, project, events[lo:lo + 100], now) == \
            [1] * 100 + [0]
    k, s, n = (int(x) for x in (await redis_client.hget(bindings, "#")).split(b":"))
    assert n == len(events) + 1 and 2 ** k + s >= len(events) // PER_SLOT
    others = [_event(project, "z", x.event_id) for x in events[::7]]
    assert await _claim(redis_client, keys, project, [e, *events[::7], *others], now) == \
        [2] + [2] * len(others) + [0] * len(others) + [0]
    assert await redis_client.hget(bindings, "#c") == b"0"


async def test_callers_send_the_short_form_after_a_new_projects_first_answer() -> None:
    """What the gateway sends, as Redis saw it (its slow log, every command logged): the batch
    path's and the admission round trip's first call for a new project carries the keys of the
    layouts before (a caller cannot know yet); every later call the project's hash alone."""
    with RedisServer() as server:
        client = aioredis.Redis.from_url(server.url)
        try:
            keys = Keys("fresh")
            project, _ = await create_project(client, keys, "fresh")
            claim = scripts_for(client)["event_ids_claim"]
            await client.script_load(claim.script)  # one EVALSHA per call in the log
            await client.config_set("slowlog-log-slower-than", 0)
            await client.config_set("slowlog-max-len", 1000)
            ids = EventIds(client, keys, window_s=WINDOW)
            store = AdmissionStore(client, keys, client, window_s=WINDOW)
            sent: list[int] = []
            for _ in range(2):
                events = [_event(project) for _ in range(3)]
                await client.slowlog_reset()
                assert await ids.claim(events) == [True] * 3
                sent += await _keys_per_claim(client)
            for _ in range(2):
                claims = [(str(uuid.uuid4()), "1" * 32) for _ in range(3)]
                await client.slowlog_reset()
                reads = await store.round_trip(failures_key=None, key_sha=None,
                                               project_id=project, claims=claims)
                assert reads.claims == [1] * 3
                sent += await _keys_per_claim(client)
            long_form = 1 + len(live_buckets(time.time(), WINDOW, bucket_width(WINDOW))) + 3
            assert sent == [long_form, 1, long_form, 1]
        finally:
            await client.aclose()


async def _keys_per_claim(client: RedisClient) -> list[int]:
    """The number of keys of each claim script call in the slow log (EVALSHA sha numkeys ...)."""
    sha = scripts_for(client)["event_ids_claim"].sha
    out = []
    for entry in await client.slowlog_get(100):
        words = entry["command"].split(b" ")
        if words[0].upper() in (b"EVALSHA", b"EVAL") and words[1] == sha.encode():
            out.append(int(words[2]))
    return out
