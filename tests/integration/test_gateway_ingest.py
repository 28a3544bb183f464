"""Bad input is refused before Kafka; accepted events reach ``ingest`` in one envelope per agent."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.app import build_app
from models.envelope import TRACE_HEADER, agent_key, decode_ingest
from models.errors import ConfigError
from ratchet.config.settings import Settings
from ratchet.platform.provisioning import create_agent
from ratchet.sandbox.client import RatchetClient
from streams.worker import decode_ingest_trusted
from tests.integration.gateway_support import (
    Gateway,
    Tenant,
    event,
    own_gateway,
    read_topic,
)

pytestmark = pytest.mark.kafka


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _raw(http: aiohttp.ClientSession, gateway: Gateway, tenant: Tenant, path: str,
               data: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    hdrs = {"Authorization": f"Bearer {tenant.api_key}", "Content-Type": "application/json"}
    hdrs.update(headers or {})
    async with http.post(gateway.url + path, data=data, headers=hdrs) as resp:
        assert resp.headers.get("X-Trace-Id")
        return resp.status, await resp.json()


async def test_bad_input_is_400_naming_the_field(
    http: aiohttp.ClientSession, gateway: Gateway, tenant: Tenant
) -> None:
    import orjson

    cases: list[tuple[str, bytes, str | None]] = [
        ("/v1/events", b"{not json", None),
        ("/v1/events", b"", None),
        ("/v1/events", b"[1, 2]", None),
        ("/v1/events", orjson.dumps({**event(), "payload": "x"}), "payload"),
        ("/v1/events", orjson.dumps({**event(), "priority": "urgent"}), "priority"),
        ("/v1/events", orjson.dumps({**event(), "cost": "1"}), "cost"),
        ("/v1/events", orjson.dumps({k: v for k, v in event().items() if k != "run_id"}),
         "run_id"),
        ("/v1/events", orjson.dumps({**event(), "service": "a\nb"}), "service"),
        ("/v1/events?wait_ms=abc", orjson.dumps(event()), "wait_ms"),
        ("/v1/events?wait_ms=999999", orjson.dumps(event()), "wait_ms"),
        ("/v1/events:batch", b'{"events": {}}', "events"),
        ("/v1/events:batch", b'{"events": []}', "events"),
        ("/v1/events:batch", b'[]', None),
        ("/v1/events:batch", orjson.dumps({"events": [event()] * 1001}), "events"),
        # a query parameter the route does not take is refused, not ignored
        ("/v1/events?wait=2000", orjson.dumps(event()), "wait"),
        ("/v1/events:batch?wait_ms=1", orjson.dumps({"events": [event()]}), "wait_ms"),
    ]
    for path, data, field in cases:
        status, body = await _raw(http, gateway, tenant, path, data)
        assert status == 400, (path, data[:60])
        assert body["error"] == "invalid_request" and body["field"] == field, body
        assert body["message"]
    assert await read_topic(gateway.settings.kafka_bootstrap or "", gateway.settings.topic_ingest,
                            idle_s=0.5) == []


async def test_unknown_query_parameters_are_400_naming_what_the_route_takes(
    http: aiohttp.ClientSession, gateway: Gateway, tenant: Tenant
) -> None:
    """A typo must not widen an answer: ``?form=`` for ``?from=`` would list the whole audit
    log. The names come from the OpenAPI document; HEAD is checked as GET."""
    auth = {"Authorization": f"Bearer {tenant.api_key}"}
    for method, path, name, takes in [
        ("GET", "/v1/audit?form=2026-01-01T00:00:00Z", "form", "cursor, from, limit, to"),
        ("GET", "/v1/verdicts/e-1?wait_ms=0&explian=1", "explian", "explain, wait_ms"),
        ("GET", "/v1/approvals?limit=5&offset=5", "offset", "agent_id, cursor, limit"),
        ("GET", "/v1/whoami?x=1", "x", "none"),
        ("HEAD", "/v1/whoami?x=1", "", ""),
    ]:
        async with http.request(method, gateway.url + path, headers=auth) as resp:
            assert resp.status == 400, (method, path, resp.status)
            if method == "HEAD":
                continue
            body = await resp.json()
            assert body["error"] == "invalid_request" and body["field"] == name, body
            assert body["message"].endswith(f"takes: {takes}"), body
    async with http.get(gateway.url + "/v1/audit?from=0&limit=5", headers=auth) as resp:
        assert resp.status == 200  # the names it takes still work


async def test_body_over_limit_is_413(
    http: aiohttp.ClientSession, gateway: Gateway, tenant: Tenant
) -> None:
    limit = gateway.settings.max_body_bytes
    big = b'{"events": [' + b" " * limit + b"]}"
    status, body = await _raw(http, gateway, tenant, "/v1/events:batch", big)
    assert status == 413 and body["error"] == "payload_too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: enforced while reading
        yield b'{"payload": "'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    hdrs = {"Authorization": f"Bearer {tenant.api_key}"}
    async with http.post(gateway.url + "/v1/events", data=chunks(), headers=hdrs) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"] == "payload_too_large"
    assert await read_topic(gateway.settings.kafka_bootstrap or "", gateway.settings.topic_ingest,
                            idle_s=0.5) == []


async def test_partially_bad_batch_publishes_only_good_events_one_envelope_per_agent(
    gateway: Gateway, tenant: Tenant
) -> None:
    _, b_secret = await create_agent(gateway.redis, gateway.keys, tenant.project_id, "agent-b")
    b_client = RatchetClient(gateway.url, tenant.api_key, "agent-b", b_secret,
                             project_id=tenant.project_id)
    await b_client.close()
    a1, a2, b1, a3 = (event(), event(), event(agent_id="agent-b"), event(end_of_run=True))
    bad_type = event(payload=[1])
    ghost = event(agent_id="ghost")
    items = [tenant.client.signed(e) for e in (a1, bad_type, a2, ghost, a3)]
    items.insert(3, b_client.signed(b1))
    items.insert(3, {**tenant.client.signed(event()), "signature": "v2=" + "0" * 64})
    items.append({**tenant.client.signed(event()), "timestamp": 1})  # stale
    items.append(items[0])  # duplicate event id within the batch
    answer = await tenant.client._call("POST", "/v1/events:batch", json={"events": items},
                                       headers={"X-Trace-Id": "trace-batch-0001"})
    assert answer.status == 200 and answer.trace_id == "trace-batch-0001"
    results = answer.body["results"]
    assert [r["status"] for r in results] == [
        "accepted", "rejected", "accepted", "rejected", "accepted", "rejected", "accepted",
        "rejected", "rejected",
    ]
    assert answer.body["accepted"] == 4 and answer.body["rejected"] == 5
    assert results[1]["error"]["field"] == "events[1].payload"
    assert results[3]["error"]["error"] == "unauthorized"
    assert "unknown agent" in results[5]["error"]["message"]
    assert "stale" in results[7]["error"]["message"]
    assert results[8]["error"]["field"] == "events[8].event_id"
    assert [r["index"] for r in results] == list(range(9))

    records = await read_topic(gateway.settings.kafka_bootstrap or "",
                               gateway.settings.topic_ingest, expect=2)
    assert len(records) == 2
    by_key = {r.key: r for r in records}
    assert set(by_key) == {agent_key(tenant.project_id, "agent-1"),
                           agent_key(tenant.project_id, "agent-b")}
    for rec in records:
        assert dict(rec.headers)[TRACE_HEADER] == b"trace-batch-0001"
    env_a = decode_ingest(by_key[agent_key(tenant.project_id, "agent-1")].value or b"")
    env_b = decode_ingest(by_key[agent_key(tenant.project_id, "agent-b")].value or b"")
    assert [e.event_id for e in env_a.events] == [a1["event_id"], a2["event_id"], a3["event_id"]]
    assert [e.event_id for e in env_b.events] == [b1["event_id"]]
    assert env_a.trace_id == "trace-batch-0001" and env_a.project_id == tenant.project_id
    assert env_a.events[2].end_of_run and not env_a.wait
    assert env_a.events[0].payload == {"id": 7, "q": "é"}


async def test_single_event_carries_trace_id(gateway: Gateway, tenant: Tenant) -> None:
    ev = event()
    answer = await tenant.client.send(ev)
    assert answer.status == 202 and answer.body["event_id"] == ev["event_id"]
    trace = answer.trace_id
    assert trace and answer.body["trace_id"] == trace
    weird = await tenant.client._call("GET", "/v1/whoami", headers={"X-Trace-Id": "bad id!"})
    assert weird.trace_id != "bad id!" and len(weird.trace_id) == 32
    [rec] = await read_topic(gateway.settings.kafka_bootstrap or "",
                             gateway.settings.topic_ingest, expect=1)
    assert dict(rec.headers)[TRACE_HEADER] == trace.encode()
    assert decode_ingest(rec.value or b"").trace_id == trace


async def test_ingest_wire_versions_for_a_rolling_upgrade(
    gw_settings: Settings, gateway: Gateway, tenant: Tenant
) -> None:
    """The default gateway writes the compact envelope; one with RATCHET_INGEST_WIRE_VERSION=1
    writes JSON as before; the worker's decoder reads both into the same events."""
    old = dataclasses.replace(gw_settings, ingest_wire_version=1,
                              topic_ingest=gw_settings.topic_ingest + "-v1")
    bodies = []
    async with own_gateway(old) as gw_old:
        old_client = RatchetClient(gw_old.url, tenant.api_key, tenant.agent_id, tenant.secret,
                                   project_id=tenant.project_id)
        try:
            for gw, client in ((gateway, tenant.client), (gw_old, old_client)):
                items = [client.signed(event(payload={"n": i, "x": 1.5, "s": "é"}))
                         for i in range(3)]
                answer = await client._call("POST", "/v1/events:batch", json={"events": items})
                assert answer.status == 200 and answer.body["accepted"] == 3
                [rec] = await read_topic(gw.settings.kafka_bootstrap or "",
                                         gw.settings.topic_ingest, expect=1)
                bodies.append((rec.value or b"", [it["event_id"] for it in items]))
        finally:
            await old_client.close()
    (compact, _), (json_body, _) = bodies
    assert compact[:1] != b"{" and json_body[:1] == b"{"
    assert len(compact) < len(json_body)
    for body, ids in bodies:
        env = decode_ingest_trusted(body)
        assert env == decode_ingest(body)
        assert [e.event_id for e in env.events] == ids
        assert [e.payload for e in env.events] == [{"n": i, "x": 1.5, "s": "é"} for i in range(3)]


def test_an_unknown_ingest_wire_version_refuses_to_start(gw_settings: Settings) -> None:
    with pytest.raises(ConfigError, match="RATCHET_INGEST_WIRE_VERSION=3"):
        build_app(dataclasses.replace(gw_settings, ingest_wire_version=3))
