"""Shape and content attacks on the real gateway: oversized metadata, deep or wide payloads,
invalid UTF-8, numbers no double can carry, markup and control characters meant for a human's
screen. Every refusal is a 400 naming the field and the limit, and nothing reaches Kafka.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from models.envelope import decode_feedback, decode_ingest
from ratchet.platform.provisioning import create_agent, create_project
from ratchet.sandbox.client import RatchetClient
from tests.integration.gateway_support import (
    FakeWorker,
    Gateway,
    Tenant,
    event,
    make_tenant,
    read_topic,
    start_gateway,
)

pytestmark = pytest.mark.kafka


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post_raw(http: aiohttp.ClientSession, url: str, tenant: Tenant, data: bytes,
                   path: str = "/v1/events") -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {tenant.api_key}", "Content-Type": "application/json"}
    async with http.post(url + path, data=data, headers=headers) as resp:
        return resp.status, await resp.json()


async def nothing_published(gw: Gateway) -> None:
    assert await read_topic(gw.settings.kafka_bootstrap or "", gw.settings.topic_ingest,
                            idle_s=0.5) == []


def nested(depth: int) -> dict[str, Any]:
    """A payload of exactly ``depth`` levels: ``{"k": {"k": ... {}}}``."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


async def test_shape_limits_name_the_field_and_the_limit(gateway: Gateway, tenant: Tenant) -> None:
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"metadata": {f"k{i}": i for i in range(51)}}, "metadata", "50 keys"),
        ({"metadata": {"a": {"b": {"c": {"d": 1}}}}}, "metadata", "3 levels"),
        ({"metadata": {"big": "x" * 10_300}}, "metadata", "10240 bytes"),
        ({"payload": nested(17)}, "payload", "16 levels"),
        ({"payload": {f"k{i}": {"v": 1} for i in range(2600)}}, "payload", "5000 keys"),
        ({"payload": {"n": int("9" * 300)}}, "payload.n", "1e15"),
        ({"payload": {"a": [0, {"b": -(10**16)}]}}, "payload.a[1].b", "1e15"),
        ({"metadata": {"n": 2e15}}, "metadata.n", "1e15"),
        ({"cost": 10**20}, "cost", "1e15"),
    ]
    for over, field, limit in cases:
        answer = await tenant.client.send(event(**over))
        assert answer.status == 400, (field, answer.body)
        assert answer.body["field"] == field and limit in answer.body["message"], answer.body
    ok = await tenant.client.send(event(payload=nested(16), metadata={"a": {"b": {"c": 1}}}))
    assert ok.status == 202, ok.body
    records = await read_topic(gateway.settings.kafka_bootstrap or "",
                               gateway.settings.topic_ingest, expect=1)
    assert len(records) == 1  # only the event within the limits


async def test_hostile_nesting_is_400_not_500(
    http: aiohttp.ClientSession, gateway: Gateway, tenant: Tenant
) -> None:
    head = orjson.dumps(event(payload={}))[:-len(b'"payload":{}}')]
    for depth, words in ((900, "16 levels"), (5000, "not valid JSON")):
        # 900 levels parse (orjson allows 1024) and once overflowed the recursive depth check
        data = head + b'"payload":' + b'{"k":' * depth + b"{}" + b"}" * depth + b"}"
        status, body = await post_raw(http, gateway.url, tenant, data)
        assert status == 400 and words in body["message"], (depth, body)
        status, body = await post_raw(http, gateway.url, tenant,
                                      b'{"events": [' + data + b"]}", "/v1/events:batch")
        if depth < 1000:  # the batch parses: the event is refused on its own
            assert status == 200, body
            assert body["results"][0]["error"]["field"] == "events[0].payload"
        else:
            assert status == 400 and words in body["message"], body
    await nothing_published(gateway)


async def test_limits_follow_the_settings(gateway: Gateway) -> None:
    settings = gateway.settings.replace(max_metadata_keys=3, max_payload_depth=2,
                                        max_metadata_bytes=100)
    server = await start_gateway(settings)
    try:
        strict = Gateway(server, settings, gateway.redis, gateway.keys)
        t = await make_tenant(strict)
        try:
            for over, field, limit in [
                ({"metadata": {"a": 1, "b": 2, "c": 3, "d": 4}}, "metadata", "3 keys"),
                ({"payload": {"a": {"b": {}}}}, "payload", "2 levels"),
                ({"metadata": {"a": "x" * 100}}, "metadata", "100 bytes"),
            ]:
                answer = await t.client.send(event(**over))
                assert answer.status == 400 and answer.body["field"] == field, answer.body
                assert limit in answer.body["message"]
            assert (await t.client.send(event(payload={"a": {}}))).status == 202
        finally:
            await t.client.close()
    finally:
        await server.close()


async def test_bodies_that_are_not_clean_json_are_400(
    http: aiohttp.ClientSession, gateway: Gateway, tenant: Tenant
) -> None:
    good = orjson.dumps(event())
    cases: list[tuple[bytes, str]] = [
        (good.replace(b'"crm"', b'"cr\xffm"'), "UTF-8"),
        (good.replace(b'"crm"', b'"cr\xc3"'), "UTF-8"),  # truncated sequence
        (good.replace(b'"crm"', b'"\\ud800"'), "surrogate"),  # lone surrogate escape
        (good.replace(b'{"id":7', b'{"id":1e400'), "finite"),
        (good.replace(b'{"id":7', b'{"id":-1e400'), "finite"),
        (good.replace(b'{"id":7', b'{"id":NaN'), "not valid JSON"),
        (good.replace(b'{"id":7', b'{"id":Infinity'), "not valid JSON"),
        (good.replace(b'{"id":7', b'{"id":-Infinity'), "not valid JSON"),
    ]
    for data, words in cases:
        assert data != good
        status, body = await post_raw(http, gateway.url, tenant, data)
        assert status == 400 and body["error"] == "invalid_request", (data, body)
        assert words in body["message"], body
    # the same inside a batch: the body is not JSON, so the whole request is refused
    batch = b'{"events": [' + good.replace(b'{"id":7', b'{"id":1e999') + b"]}"
    status, body = await post_raw(http, gateway.url, tenant, batch, "/v1/events:batch")
    assert status == 400 and "finite" in body["message"]
    await nothing_published(gateway)


async def test_partial_batch_answers_every_event(gateway: Gateway, tenant: Tenant) -> None:
    good, good2 = event(), event()
    answer = await tenant.client.send_batch([
        good,
        event(metadata={f"k{i}": i for i in range(60)}),
        event(payload={"n": 1e300}),
        good2,
        event(payload=nested(40)),
    ])
    assert answer.status == 200
    results = answer.body["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected", "rejected", "accepted",
                                              "rejected"]
    assert [r["error"]["field"] for r in results if r["status"] == "rejected"] == [
        "events[1].metadata", "events[2].payload.n", "events[4].payload"]
    records = await read_topic(gateway.settings.kafka_bootstrap or "",
                               gateway.settings.topic_ingest, expect=1)
    assert [e.event_id for r in records for e in decode_ingest(r.value or b"").events] == [
        good["event_id"], good2["event_id"]]


async def test_markup_and_control_characters_never_come_back(
    http: aiohttp.ClientSession, gateway: Gateway, tenant: Tenant
) -> None:
    xss = "<img src=x onerror=alert(1)>"
    refused: list[tuple[dict[str, Any], str, str]] = [
        ({"agent_id": "<script>alert(1)</script>"}, "agent_id", "HTML"),
        ({"service": "crm\u202egnp.exe"}, "service", "invisible"),
        ({"action": "read\u200b"}, "action", "invisible"),
        ({"run_id": "r\x85"}, "run_id", "control"),
        ({"event_id": f"e-{xss}"}, "event_id", "HTML"),
        ({"priority": xss}, "priority", "priority"),
    ]
    for over, field, words in refused:
        status, body = await post_raw(http, gateway.url, tenant, orjson.dumps(event(**over)))
        assert status == 400 and body["field"] == field and words in body["message"], body
        assert "<" not in body["message"] and "\u202e" not in body["message"], body

    batch = await tenant.client.send_batch([
        {**event(), "event_id": f"<b>x</b>\x07{xss}", "payload": "no"},
        event(payload={xss: 1e16}),
    ])
    bad_id, bad_key = batch.body["results"]
    assert bad_id["event_id"] == "x" and bad_id["status"] == "rejected"
    assert bad_key["error"]["field"] == "events[1].payload."  # the hostile key is cleaned out

    async with http.get(gateway.url + "/v1/verdicts/%3Cscript%3E", headers={
            "Authorization": f"Bearer {tenant.api_key}"}) as resp:
        body = await resp.json()
        assert resp.status == 400 and body["field"] == "event_id" and "<" not in body["message"]
    async with http.get(gateway.url + "/v1/approvals?limit=%3Cb%3E9", headers={
            "Authorization": f"Bearer {tenant.api_key}"}) as resp:
        body = await resp.json()
        assert resp.status == 400 and body["field"] == "limit" and "<" not in body["message"]
    await nothing_published(gateway)


async def test_approval_reasons_are_stored_clean(gateway: Gateway, tenant: Tenant) -> None:
    async with FakeWorker(gateway.settings, gateway.redis):
        paused = event(payload={"decide": "pause"})
        assert (await tenant.client.send(paused, wait_ms=3000)).status == 200
    reason = "ok <script>steal()</script>\x1b[31m\nby\u202eme"
    answer = await tenant.client.decide(paused["event_id"], "approve", reason)
    assert answer.status == 200, answer.body
    looked = await tenant.client.verdict(paused["event_id"])
    assert looked.body["approval"]["reason"] == "ok steal()[31m byme"
    [record] = await read_topic(gateway.settings.kafka_bootstrap or "",
                                gateway.settings.topic_feedback, expect=1)
    assert decode_feedback(record.value or b"").reason == "ok steal()[31m byme"


async def test_hostile_query_parameters_are_400(gateway: Gateway, tenant: Tenant) -> None:
    for cursor in ("nan:x", "inf:x", "-inf:y", "1e999:z"):  # "nan" was a Redis error → 500
        answer = await tenant.client.approvals(cursor=cursor)
        assert answer.status == 400 and answer.body["field"] == "cursor", (cursor, answer.body)
    # an empty value is not an integer (it used to mean "the default"; found by the fuzzer)
    for path, name in (("/v1/approvals?limit=", "limit"), ("/v1/events?wait_ms=", "wait_ms")):
        method = "GET" if name == "limit" else "POST"
        answer = await tenant.client._call(method, path, json=event())
        assert answer.status == 400 and answer.body["field"] == name, answer.body
    await nothing_published(gateway)


async def test_a_huge_array_is_400_before_the_signature_is_checked(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    """The red team's event: a properly signed ``{"q": [0] * 1_900_000}`` (3.8 MB, under the
    body limit) was accepted and stalled the shared worker. Now it is a 400 naming the field and
    the value cap; so is the same array in an unknown field (signed, so canonicalised, but never
    used) and in metadata; nothing is published. (A high_volume project: each 3.6 MB body takes
    its size's 225 tokens before it is read, more than the lowest tier's bucket.)"""
    tenant = await make_tenant(gateway, tier="high_volume")
    huge = [0] * 1_200_000  # 3.6 MB as the test client writes JSON ("0, " per element)
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"payload": {"q": huge}}, "payload", "more than 10000 values"),
        ({"junk": huge}, "junk", "more than 10000 JSON values"),
        ({"metadata": {"m": huge}}, "metadata", "more than 10240 values"),
    ]
    for over, field, limit in cases:
        answer = await tenant.client.send(event(**over))
        assert answer.status == 400, answer.body
        assert answer.body["field"] == field and limit in answer.body["message"], answer.body
    # unsigned: still the 400, not the 401 — the cap runs before the signature is computed
    status, body = await post_raw(http, gateway.url, tenant,
                                  orjson.dumps(event(payload={"q": huge})))
    assert status == 400 and body["field"] == "payload", body
    # in a batch the item is rejected on its own
    answer = await tenant.client.send_batch([event(payload={"q": huge[:20_000]})])
    assert answer.status == 200 and answer.body["accepted"] == 0
    assert answer.body["results"][0]["error"]["field"] == "events[0].payload"
    await tenant.client.close()
    await nothing_published(gateway)


async def test_a_batch_has_one_value_budget(gateway: Gateway) -> None:
    """25 events of 9,001 values each — every one under the per-event cap — are 225,025
    values: the 23rd overdraws the 200,000-value budget of the request, and it and the ones
    after it are rejected naming ``events[i]``; the first 22 are published. (A high_volume
    project: at 10 rate-limit tokens per such event the lowest tier would refuse the batch.)"""
    project_id, api_key = await create_project(gateway.redis, gateway.keys, "big", "high_volume")
    _, secret = await create_agent(gateway.redis, gateway.keys, project_id, "agent-1")
    events = [event(payload={"q": [0] * 9_000}) for _ in range(25)]
    async with RatchetClient(gateway.url, api_key, "agent-1", secret,
                             project_id=project_id) as client:
        answer = await client.send_batch(events)
    assert answer.status == 200, answer.body
    results = answer.body["results"]
    assert [r["status"] for r in results] == ["accepted"] * 22 + ["rejected"] * 3
    assert results[22]["error"]["field"] == "events[22]"
    assert "more than 200000 JSON values" in results[22]["error"]["message"]
    records = await read_topic(gateway.settings.kafka_bootstrap or "",
                               gateway.settings.topic_ingest, expect=1)
    assert [e.event_id for r in records for e in decode_ingest(r.value or b"").events] == [
        e["event_id"] for e in events[:22]]


async def test_duplicate_keys_are_400_naming_the_key(
    http: aiohttp.ClientSession, gateway: Gateway, tenant: Tenant
) -> None:
    """A body with ``"service": "crm"`` and then ``"service": "pastebin"`` was accepted on the
    pastebin chain (orjson keeps the last; a proxy or log reader keeping the first sees crm).
    Now any object with a key twice — the event, its payload, a batch item — is a 400 naming the
    key, whatever the signature; nothing is published."""
    ev = event(service="crm")
    sig, ts = tenant.client.signature(tenant.client.complete({**ev, "service": "pastebin"}))
    raw = orjson.dumps(ev).replace(b'"service":"crm"', b'"service":"crm","service":"pastebin"')
    headers = {"Authorization": f"Bearer {tenant.api_key}", "Content-Type": "application/json",
               "X-Ratchet-Signature": sig, "X-Ratchet-Timestamp": str(ts)}
    async with http.post(gateway.url + "/v1/events", data=raw, headers=headers) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["field"] == "service" and "'service' appears twice" in body["message"], body
    nested_dup = orjson.dumps(event()).replace(b'"payload":{', b'"payload":{"id":1,')
    status, body = await post_raw(http, gateway.url, tenant, nested_dup)
    assert status == 400 and body["field"] == "payload.id", body
    batch = b'{"events": [' + orjson.dumps(tenant.client.signed(event())) + b"," + nested_dup + b"]}"
    status, body = await post_raw(http, gateway.url, tenant, batch, "/v1/events:batch")
    assert status == 400 and body["field"] == "events[1].payload.id", body
    await nothing_published(gateway)
