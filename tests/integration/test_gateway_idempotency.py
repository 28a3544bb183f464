"""Replay attacks on the real gateway: Idempotency-Key retries, races and reuse — by the key
that sent the request and by others —, and event ids reused with another body. Kafka is read back
after every attack: what may not be published is not.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp
import pytest

from models.envelope import decode_feedback, decode_ingest
from models.events import parse_event
from models.idempotency import StoredAnswer, key_digest
from ratchet.platform.provisioning import create_agent, hash_api_key
from ratchet.sandbox.client import Answer, RatchetClient
from ratchet.store.idempotency import Begin, BeginCode, EventIds, IdempotencyStore
from tests.integration.gateway_support import (
    FakeWorker,
    Gateway,
    Tenant,
    event,
    make_tenant,
    read_topic,
    wait_for,
)

pytestmark = pytest.mark.kafka

REPLAYED = "Idempotent-Replayed"


async def ingested(gw: Gateway, expect: int | None = None) -> list[str]:
    """Event ids in every envelope on the ingest topic (``expect`` counts envelopes: one per
    agent per request)."""
    records = await read_topic(gw.settings.kafka_bootstrap or "", gw.settings.topic_ingest,
                               expect=expect, idle_s=0.5)
    return [ev.event_id for r in records for ev in decode_ingest(r.value or b"").events]


def replayed(answer: Answer) -> bool:
    return answer.headers.get(REPLAYED) == "true"


def signed_request(t: Tenant, ev: dict[str, Any], idempotency_key: str, *,
                   api_key: str | None = None, ts: int | None = None
                   ) -> tuple[bytes, dict[str, str]]:
    """Body and headers of one signed ``POST /v1/events`` of ``t``'s agent, to send as often as
    a test likes: what an SDK's retry resends (the same bytes, the same headers)."""
    body = t.client.complete(ev)
    sig, stamp = t.client.signature(body, ts)
    return json.dumps(body).encode(), {
        "Authorization": f"Bearer {api_key or t.api_key}", "Content-Type": "application/json",
        "X-Ratchet-Signature": sig, "X-Ratchet-Timestamp": str(stamp),
        "Idempotency-Key": idempotency_key}


async def post(gw: Gateway, path: str, body: bytes, headers: dict[str, str]) -> Answer:
    async with aiohttp.ClientSession() as http, http.post(
            gw.url + path, data=body, headers=headers) as resp:
        return Answer(resp.status, await resp.json(), resp.headers.get("X-Trace-Id", ""),
                      dict(resp.headers))


def record(gw: Gateway, t: Tenant, idempotency_key: str, api_key: str | None = None) -> str:
    """The Redis record of ``idempotency_key`` sent with ``api_key`` (default: ``t``'s own)."""
    key_id = hash_api_key(api_key or t.api_key)[:12]
    return gw.keys.idempotency(t.project_id, key_id, key_digest(idempotency_key))


async def new_key(gw: Gateway, admin_key: str, **grant: Any) -> str:
    """A new API key of the admin key's project (``POST /v1/keys``)."""
    async with aiohttp.ClientSession() as http, http.post(
            gw.url + "/v1/keys", json=grant,
            headers={"Authorization": f"Bearer {admin_key}"}) as resp:
        made = await resp.json()
        assert resp.status == 201, made
        return str(made["api_key"])


async def test_retry_with_the_same_key_replays_the_first_answer_and_publishes_nothing(
    gateway: Gateway, tenant: Tenant
) -> None:
    key = f"k-{uuid.uuid4()}"
    ev = event()
    body, headers = signed_request(tenant, ev, key)
    first = await post(gateway, "/v1/events", body, headers)
    assert first.status == 202 and not replayed(first)
    for _ in range(3):  # the very request again, signature headers included, as SDKs resend it
        again = await post(gateway, "/v1/events", body, headers)
        assert again.status == 202 and replayed(again)
        assert again.body == first.body  # including the first request's trace id
        assert again.trace_id != first.trace_id  # the replay is a request of its own

    items = [tenant.client.signed(event()) for _ in range(3)]
    batch_key = f"b-{uuid.uuid4()}"
    first_batch = await tenant.client.post_signed(items, idempotency_key=batch_key)
    assert first_batch.status == 200 and first_batch.body["accepted"] == 3
    again_batch = await tenant.client.post_signed(items, idempotency_key=batch_key)
    assert again_batch.status == 200 and replayed(again_batch)
    assert again_batch.body == first_batch.body

    ids = await ingested(gateway, expect=2)
    assert sorted(ids) == sorted([ev["event_id"], *(i["event_id"] for i in items)])

    ttl = await gateway.redis.ttl(record(gateway, tenant, key))
    assert 0 < ttl <= gateway.settings.idempotency_ttl_s


async def test_simultaneous_requests_with_one_key_publish_once(
    gateway: Gateway, tenant: Tenant
) -> None:
    # no worker answers, so the first request waits its full wait_ms while the others arrive
    key = f"race-{uuid.uuid4()}"
    ev = event()
    body, headers = signed_request(tenant, ev, key)
    answers = await asyncio.gather(
        *(post(gateway, "/v1/events?wait_ms=800", body, headers) for _ in range(8))
    )
    statuses = sorted(a.status for a in answers)
    assert statuses == [202] + [409] * 7, statuses
    for busy in (a for a in answers if a.status == 409):
        assert busy.body["field"] == "Idempotency-Key" and "in progress" in busy.body["message"]
        assert busy.headers.get("Retry-After") == "1"
    after = await post(gateway, "/v1/events?wait_ms=800", body, headers)
    assert after.status == 202 and replayed(after)
    assert await ingested(gateway, expect=1) == [ev["event_id"]]


async def test_same_key_for_a_different_request_is_422(gateway: Gateway, tenant: Tenant) -> None:
    key = f"k-{uuid.uuid4()}"
    ev = event()
    assert (await tenant.client.send(ev, idempotency_key=key)).status == 202
    other = event()
    for answer in (
        await tenant.client.send(other, idempotency_key=key),  # another body
        await tenant.client.send(ev, wait_ms=100, idempotency_key=key),  # another query
        await tenant.client.post_signed([tenant.client.signed(other)], idempotency_key=key),
    ):
        assert answer.status == 422, answer.body
        assert answer.body["error"] == "unprocessable"
        assert answer.body["field"] == "Idempotency-Key"
        assert "different request" in answer.body["message"]
    assert await ingested(gateway) == [ev["event_id"]]


async def test_keys_are_scoped_per_project_and_malformed_keys_refused(
    gateway: Gateway, tenant: Tenant
) -> None:
    key = f"shared-{uuid.uuid4()}"
    mine, theirs = event(), event()
    assert (await tenant.client.send(mine, idempotency_key=key)).status == 202
    other = await make_tenant(gateway)
    try:
        answer = await other.client.send(theirs, idempotency_key=key)
        assert answer.status == 202 and not replayed(answer)
        assert answer.body["event_id"] == theirs["event_id"]
    finally:
        await other.client.close()
    for bad in ("has space", "x" * 256, ""):
        answer = await tenant.client._call(
            "POST", "/v1/events", json=event(), headers={"Idempotency-Key": bad})
        assert answer.status == 400 and answer.body["field"] == "Idempotency-Key", bad
    assert sorted(await ingested(gateway, expect=2)) == sorted([mine["event_id"],
                                                                 theirs["event_id"]])


async def test_an_answer_without_effect_is_not_kept(gateway: Gateway, tenant: Tenant) -> None:
    key = f"k-{uuid.uuid4()}"
    bad = event(payload="not an object")
    for _ in range(2):  # the 400 released the key: the retry ran again, nothing was replayed
        answer = await tenant.client.send(bad, idempotency_key=key)
        assert answer.status == 400 and not replayed(answer)
    ghost = event(agent_id="ghost")
    assert (await tenant.client.send(ghost, idempotency_key=f"g-{key}")).status == 401
    assert await gateway.redis.exists(record(gateway, tenant, f"g-{key}")) == 0
    assert await ingested(gateway) == []


async def test_approval_retry_replays_and_publishes_one_decision(
    gateway: Gateway, tenant: Tenant
) -> None:
    async with FakeWorker(gateway.settings, gateway.redis):
        paused = event(payload={"decide": "pause"})
        assert (await tenant.client.send(paused, wait_ms=3000)).status == 200
    key = f"approve-{uuid.uuid4()}"
    first = await tenant.client.decide(paused["event_id"], "approve", "ok", idempotency_key=key)
    assert first.status == 200 and not replayed(first)
    again = await tenant.client.decide(paused["event_id"], "approve", "ok", idempotency_key=key)
    assert again.status == 200 and replayed(again) and again.body == first.body
    changed = await tenant.client.decide(paused["event_id"], "reject", "ok", idempotency_key=key)
    assert changed.status == 422
    plain = await tenant.client.decide(paused["event_id"], "approve", "ok")
    assert plain.status == 409  # without the key a second decision is a conflict
    records = await read_topic(gateway.settings.kafka_bootstrap or "",
                               gateway.settings.topic_feedback, expect=1)
    assert [decode_feedback(r.value or b"").event_id for r in records] == [paused["event_id"]]


async def test_a_stored_verdict_is_replayed_only_to_the_key_and_signature_that_got_it(
    gateway: Gateway, tenant: Tenant
) -> None:
    """Attack run F6: an ingest key bound to agent ``oracle`` resent bot1's exact request under
    bot1's Idempotency-Key with ``X-Ratchet-Timestamp: 1``, ``X-Ratchet-Signature: v2=00`` and
    got ``200 Idempotent-Replayed: true`` with bot1's verdict. Now a record belongs to the API
    key that sent it: another key's request runs as its own (the oracle key gets the 403 a
    direct request gets), and the same key with other signature headers is 422."""
    await create_agent(gateway.redis, gateway.keys, tenant.project_id, "oracle")
    bot_key = await new_key(gateway, tenant.api_key, role="ingest", agent_id=tenant.agent_id)
    oracle_key = await new_key(gateway, tenant.api_key, role="ingest", agent_id="oracle")
    other_admin = await new_key(gateway, tenant.api_key, role="admin")
    key = f"bot1-{uuid.uuid4()}"
    ev = event(payload={"decide": "flag"})
    body, headers = signed_request(tenant, ev, key, api_key=bot_key)
    path = "/v1/events?wait_ms=3000"
    async with FakeWorker(gateway.settings, gateway.redis):
        first = await post(gateway, path, body, headers)
        assert first.status == 200 and first.body["verdict"]["action"] == "flag", first.body
        # the legitimate retry: the same request, headers included
        again = await post(gateway, path, body, headers)
        assert again.status == 200 and replayed(again) and again.body == first.body

        forged = {**headers, "Authorization": f"Bearer {oracle_key}",
                  "X-Ratchet-Timestamp": "1", "X-Ratchet-Signature": "v2=00"}
        captured = {**headers, "Authorization": f"Bearer {oracle_key}"}  # bot1's own signature
        direct = {k: v for k, v in captured.items() if k != "Idempotency-Key"}
        refused = await post(gateway, path, body, direct)
        assert refused.status == 403 and refused.body["field"] == "agent_id", refused.body
        for attempt in (forged, captured):
            got = await post(gateway, path, body, attempt)
            assert got.status == 403 and not replayed(got), got.body
            assert got.body == refused.body  # what the key gets without the Idempotency-Key
        lookup = await post_get(gateway, f"/v1/verdicts/{ev['event_id']}", oracle_key)
        assert lookup.status == 404

        # bot1's own key with other signature headers: not the request that was answered
        resigned = tenant.client.signature(tenant.client.complete(ev),
                                           int(headers["X-Ratchet-Timestamp"]) - 1)
        for sig, stamp in (("v2=00", "1"), resigned):
            other = await post(gateway, path, body, {**headers, "X-Ratchet-Signature": sig,
                                                     "X-Ratchet-Timestamp": str(stamp)})
            assert other.status == 422 and not replayed(other), other.body
            assert other.body["field"] == "Idempotency-Key" and "verdict" not in other.body
            assert "X-Ratchet-Signature" in other.body["message"]
            assert "resend the request exactly" in other.body["message"]

        # another admin key of the project sending the very request: it runs as its own (the
        # same event again: accepted, counted once downstream by its event id), no replay
        own = await post(gateway, path, body, {**headers, "Authorization": f"Bearer {other_admin}"})
        assert own.status in (200, 202) and not replayed(own), own.body
        assert own.body["trace_id"] != first.body["trace_id"]
    assert await ingested(gateway, expect=2) == [ev["event_id"]] * 2


async def post_get(gw: Gateway, path: str, api_key: str) -> Answer:
    async with aiohttp.ClientSession() as http, http.get(
            gw.url + path, headers={"Authorization": f"Bearer {api_key}"}) as resp:
        return Answer(resp.status, await resp.json(), resp.headers.get("X-Trace-Id", ""),
                      dict(resp.headers))


async def test_a_request_in_progress_is_409_to_its_own_retries_only(
    gateway: Gateway, tenant: Tenant
) -> None:
    """While the first request runs (no worker: it waits its wait_ms), its retry is 409 as
    documented; the same key with other signature headers is 422 and another key's request
    runs as its own — neither learns that the first one is running."""
    await create_agent(gateway.redis, gateway.keys, tenant.project_id, "oracle")
    oracle_key = await new_key(gateway, tenant.api_key, role="ingest", agent_id="oracle")
    key = f"busy-{uuid.uuid4()}"
    ev = event()
    body, headers = signed_request(tenant, ev, key)
    path = "/v1/events?wait_ms=2500"
    running = asyncio.create_task(post(gateway, path, body, headers))

    async def reserved() -> bool:
        return bool(await gateway.redis.exists(record(gateway, tenant, key)))

    await wait_for(reserved)
    busy = await post(gateway, path, body, headers)
    assert busy.status == 409 and busy.headers.get("Retry-After") == "1", busy.body
    resigned = await post(gateway, path, body, {**headers, "X-Ratchet-Signature": "v2=00"})
    assert resigned.status == 422 and resigned.body["field"] == "Idempotency-Key", resigned.body
    other = await post(gateway, path, body, {**headers, "Authorization": f"Bearer {oracle_key}"})
    assert other.status == 403 and other.body["field"] == "agent_id", other.body
    assert not running.done()  # all of the above while the first request was still running
    first = await running
    assert first.status == 202
    after = await post(gateway, path, body, headers)
    assert after.status == 202 and replayed(after) and after.body == first.body
    assert await ingested(gateway, expect=1) == [ev["event_id"]]


async def test_batches_and_approvals_replay_only_to_the_key_that_sent_them(
    gateway: Gateway, tenant: Tenant
) -> None:
    await create_agent(gateway.redis, gateway.keys, tenant.project_id, "oracle")
    bot_key = await new_key(gateway, tenant.api_key, role="ingest", agent_id=tenant.agent_id)
    oracle_key = await new_key(gateway, tenant.api_key, role="ingest", agent_id="oracle")
    other_admin = await new_key(gateway, tenant.api_key, role="admin")
    items = [tenant.client.signed(event())]
    key = f"batch-{uuid.uuid4()}"
    body = json.dumps({"events": items}).encode()
    headers = {"Authorization": f"Bearer {bot_key}", "Content-Type": "application/json",
               "Idempotency-Key": key}
    first = await post(gateway, "/v1/events:batch", body, headers)
    assert first.status == 200 and first.body["accepted"] == 1, first.body
    again = await post(gateway, "/v1/events:batch", body, headers)
    assert again.status == 200 and replayed(again) and again.body == first.body
    theirs = await post(gateway, "/v1/events:batch", body,
                        {**headers, "Authorization": f"Bearer {oracle_key}"})
    assert theirs.status == 200 and not replayed(theirs), theirs.body
    assert theirs.body["accepted"] == 0
    assert theirs.body["results"][0]["error"]["error"] == "forbidden"
    assert await ingested(gateway, expect=1) == [items[0]["event_id"]]

    async with FakeWorker(gateway.settings, gateway.redis):
        paused = event(payload={"decide": "pause"})
        assert (await tenant.client.send(paused, wait_ms=3000)).status == 200
    approve = f"approve-{uuid.uuid4()}"
    decision = json.dumps({"decision": "approve", "reason": "ok"}).encode()
    path = f"/v1/approvals/{paused['event_id']}"
    admin_headers = {"Authorization": f"Bearer {tenant.api_key}",
                     "Content-Type": "application/json", "Idempotency-Key": approve}
    decided = await post(gateway, path, decision, admin_headers)
    assert decided.status == 200 and not replayed(decided), decided.body
    assert replayed(await post(gateway, path, decision, admin_headers))
    # another admin key: its own request — the event is decided already (no replay of the
    # first admin's answer, which names its trace)
    second = await post(gateway, path, decision,
                        {**admin_headers, "Authorization": f"Bearer {other_admin}"})
    assert second.status == 409 and not replayed(second), second.body
    assert "already approved or rejected" in second.body["message"]
    forbidden = await post(gateway, path, decision,
                           {**admin_headers, "Authorization": f"Bearer {bot_key}"})
    assert forbidden.status == 403 and not replayed(forbidden)
    records = await read_topic(gateway.settings.kafka_bootstrap or "",
                               gateway.settings.topic_feedback, expect=1)
    assert [decode_feedback(r.value or b"").event_id for r in records] == [paused["event_id"]]


async def test_reused_event_id_with_another_body_is_refused(
    gateway: Gateway, tenant: Tenant
) -> None:
    ev = event()
    assert (await tenant.client.send(ev)).status == 202
    changed = await tenant.client.send({**ev, "payload": {"id": 8}})
    assert changed.status == 409 and changed.body["field"] == "event_id"
    assert "different event" in changed.body["message"]
    moved = await tenant.client.send({**ev, "run_id": "run-2"})
    assert moved.status == 409
    retry = await tenant.client.send(ev)  # same body, signed again: an idempotent retry
    assert retry.status == 202

    fresh = event()
    batch = await tenant.client.send_batch([fresh, {**ev, "action": "contacts.delete"}])
    assert [r["status"] for r in batch.body["results"]] == ["accepted", "rejected"]
    err = batch.body["results"][1]["error"]
    assert err["error"] == "conflict" and err["field"] == "events[1].event_id"

    ids = await ingested(gateway, expect=3)
    assert sorted(ids) == sorted([ev["event_id"], ev["event_id"], fresh["event_id"]])
    envs = [e for r in await read_topic(gateway.settings.kafka_bootstrap or "",
                                        gateway.settings.topic_ingest, expect=3)
            for e in decode_ingest(r.value or b"").events if e.event_id == ev["event_id"]]
    assert all(e.payload == ev["payload"] and e.run_id == ev["run_id"] for e in envs)


async def test_racing_bodies_for_one_event_id_have_one_winner(
    gateway: Gateway, tenant: Tenant
) -> None:
    ev_id = str(uuid.uuid4())
    variants: list[dict[str, Any]] = [event(event_id=ev_id, payload={"n": i}) for i in range(10)]
    answers = await asyncio.gather(*(tenant.client.send(v) for v in variants))
    assert sorted(a.status for a in answers) == [202] + [409] * 9
    assert await ingested(gateway, expect=1) == [ev_id]


async def test_event_ids_are_scoped_per_project(gateway: Gateway, tenant: Tenant) -> None:
    """An id belongs to the first event accepted under it in its project: another agent of
    the project cannot reuse it (issue 10, finding 3); another project can."""
    ev = event()
    assert (await tenant.client.send(ev)).status == 202
    _, secret = await create_agent(gateway.redis, gateway.keys, tenant.project_id, "agent-2")
    async with RatchetClient(gateway.url, tenant.api_key, "agent-2", secret,
                             project_id=tenant.project_id) as second:
        reused = await second.send({**event(agent_id="agent-2"), "event_id": ev["event_id"],
                                    "payload": {"other": True}})
        assert reused.status == 409 and reused.body["field"] == "event_id", reused.body
    other = await make_tenant(gateway)
    try:
        assert (await other.client.send({**ev, "payload": {"x": 1}})).status == 202
    finally:
        await other.client.close()
    assert await ingested(gateway, expect=2) == [ev["event_id"]] * 2


async def begin(store: IdempotencyStore, key: str, fingerprint: str = "fp-1",
                headers: str = "") -> Begin:
    return await store.begin("p", "kid", key_digest(key), fingerprint, headers)


async def test_a_crashed_request_frees_its_key_when_the_lease_ends(gateway: Gateway) -> None:
    store = IdempotencyStore(gateway.redis, gateway.keys, ttl_s=60, lease_s=1)
    first = await begin(store, "k")
    assert first.code is BeginCode.RESERVED and first.reservation is not None
    assert (await begin(store, "k")).code is BeginCode.IN_PROGRESS
    await asyncio.sleep(1.2)  # the first request never finished (crashed gateway)
    second = await begin(store, "k")
    assert second.code is BeginCode.RESERVED and second.reservation is not None
    # the late first request cannot overwrite the new reservation
    await store.finish(first.reservation, StoredAnswer(202, b'{"late": true}'))
    assert (await begin(store, "k")).code is BeginCode.IN_PROGRESS
    await store.finish(second.reservation, StoredAnswer(202, b'{"ok": true}'))
    replay = await begin(store, "k")
    assert replay.code is BeginCode.REPLAY and replay.answer == StoredAnswer(202, b'{"ok": true}')


async def test_other_headers_are_told_before_the_state_of_the_first_request(
    gateway: Gateway
) -> None:
    """The script answers OTHER_HEADERS whether the first request still runs or finished (a
    request that is not the one answered learns nothing of its state), and another API key's
    use of the same Idempotency-Key is another record."""
    store = IdempotencyStore(gateway.redis, gateway.keys, ttl_s=60, lease_s=5)
    first = await begin(store, "h", headers="sig-a")
    assert first.code is BeginCode.RESERVED and first.reservation is not None
    assert (await begin(store, "h", headers="sig-b")).code is BeginCode.OTHER_HEADERS
    assert (await begin(store, "h", headers="sig-a")).code is BeginCode.IN_PROGRESS
    assert (await begin(store, "h", "fp-2", headers="sig-a")).code is BeginCode.MISMATCH
    await store.finish(first.reservation, StoredAnswer(200, b'{"verdict": "secret"}'))
    assert (await begin(store, "h", headers="sig-b")).code is BeginCode.OTHER_HEADERS
    assert (await begin(store, "h", headers="")).code is BeginCode.OTHER_HEADERS
    replay = await begin(store, "h", headers="sig-a")
    assert replay.code is BeginCode.REPLAY and replay.answer is not None
    other_key = await store.begin("p", "kid-2", key_digest("h"), "fp-1", "sig-b")
    assert other_key.code is BeginCode.RESERVED


async def test_a_live_request_keeps_its_key_past_the_lease(gateway: Gateway) -> None:
    """The holder renews its lease while it runs; when it stops renewing (dies), the key frees
    within one lease."""
    store = IdempotencyStore(gateway.redis, gateway.keys, ttl_s=60, lease_s=1)
    first = await begin(store, "live")
    assert first.reservation is not None
    async with store.holding(first.reservation):
        await asyncio.sleep(2.5)  # 2.5 leases: alive, renewed
        assert (await begin(store, "live")).code is BeginCode.IN_PROGRESS
    # renewal stopped without finishing (as if the gateway died): free within one lease
    await asyncio.sleep(1.2)
    assert (await begin(store, "live")).code is BeginCode.RESERVED


async def test_event_id_window_zero_turns_the_binding_off(gateway: Gateway) -> None:
    ev = parse_event(event(), "p")
    other = parse_event({**event(), "event_id": ev.event_id, "run_id": "run-9"}, "p")
    off = EventIds(gateway.redis, gateway.keys, window_s=0)
    assert await off.claim([ev]) == [True] and await off.claim([other]) == [True]
    on = EventIds(gateway.redis, gateway.keys, window_s=60)
    assert await on.claim([ev]) == [True] and await on.claim([ev]) == [True]
    assert await on.claim([other]) == [False]


async def test_a_retry_with_its_numbers_written_anew_is_the_same_event(
    gateway: Gateway, tenant: Tenant
) -> None:
    """``"limit": 1.0`` and ``"limit": 1`` have one RFC 8785 form, so one signature verifies
    both; the event-id binding now covers that form too, so a retry whose client re-serialised
    its numbers is accepted (the workers then answer it with the first verdict), single and in a
    batch — while another value under the same id is still 409."""
    ev = event(payload={"limit": 1, "rate": 100, "z": 0, "nested": [{"w": 2}]}, ts=1700000000)
    assert (await tenant.client.send(ev)).status == 202
    rewritten = {**ev, "payload": {"limit": 1.0, "rate": 1e2, "z": -0.0,
                                   "nested": [{"w": 2.0}]}, "ts": 1700000000.0}
    retry = await tenant.client.send(rewritten)  # the wire carries 1.0, 100.0, -0.0, 2.0
    assert retry.status == 202, retry.body
    batch = await tenant.client.send_batch([rewritten])
    assert batch.body["results"][0]["status"] == "accepted", batch.body
    other = await tenant.client.send({**ev, "payload": {**ev["payload"], "limit": 1.5}})
    assert other.status == 409 and other.body["field"] == "event_id"
    batch = await tenant.client.send_batch([{**ev, "payload": {**ev["payload"], "limit": 2}}])
    assert batch.body["results"][0]["error"]["field"] == "events[0].event_id"
    assert await ingested(gateway, expect=3) == [ev["event_id"]] * 3
