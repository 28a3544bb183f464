"""What a client sends is either used or refused, never silently dropped or echoed raw.

Found by an outside audit of the HTTP API (Dec 5): a typo'd body field (``"reasn"``) was read as
"not given" — a decision recorded for good without its reason, an agent registered under a
generated id —, a query parameter given twice used its first value, ids from the path were
quoted in 404s with their markup, an agent id ending in a newline was registered and then
refused on every event.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from models.verdict import Edge, Verdict
from ratchet.platform.provisioning import create_agent
from ratchet.sandbox.client import RatchetClient
from ratchet.store.verdicts import VerdictStore
from tests.integration.gateway_support import Gateway, Tenant, event, read_topic

pytestmark = pytest.mark.kafka


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _call(http: aiohttp.ClientSession, gateway: Gateway, tenant: Tenant, method: str,
                path: str, *, json: Any = None,
                headers: list[tuple[str, str]] | None = None) -> tuple[int, Any]:
    hdrs = [("Authorization", f"Bearer {tenant.api_key}"), *(headers or [])]
    async with http.request(method, gateway.url + path, json=json, headers=hdrs) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_unknown_body_fields_are_refused_and_nothing_is_written(
        http: aiohttp.ClientSession, gateway: Gateway, tenant: Tenant) -> None:
    # an agent under a typo'd field: refused, no agent created
    status, body = await _call(http, gateway, tenant, "POST", "/v1/agents",
                               json={"agentid": "typo-agent"})
    assert status == 400 and body["field"] == "agentid", body
    assert "did you mean 'agent_id'" in body["message"], body
    status, body = await _call(http, gateway, tenant, "GET", "/v1/agents")
    assert [a["agent_id"] for a in body["items"]] == [tenant.agent_id]

    # a batch with a stray top-level field: refused whole, nothing published
    items = [tenant.client.signed(event())]
    status, body = await _call(http, gateway, tenant, "POST", "/v1/events:batch",
                               json={"events": items, "extra": 1})
    assert status == 400 and body["field"] == "extra", body
    assert await read_topic(gateway.settings.kafka_bootstrap or "",
                            gateway.settings.topic_ingest, idle_s=0.5) == []

    # a policy and an engine override with a stray field: refused, the stored one unchanged
    for path, good in (("/v1/policy", {"toml": ""}), ("/v1/policy/engine", {"engine": {}})):
        status, body = await _call(http, gateway, tenant, "PUT", path, json={**good, "extra": 1})
        assert status == 400 and body["field"] == "extra" and "unknown field" in body["message"]
    status, body = await _call(http, gateway, tenant, "GET", "/v1/policy/engine")
    assert status == 200 and body["source"] != "project", body


async def test_a_decision_with_a_typo_is_refused_and_stays_paused(
        http: aiohttp.ClientSession, gateway: Gateway, tenant: Tenant) -> None:
    store = VerdictStore(gateway.redis, gateway.keys)
    verdict = Verdict("e-paused-1", tenant.agent_id, "r", "c", "locked", True, 9.0, 3.0,
                      Edge("x", "y", 0, 0, 0), "pause", (), time.time(),
                      project_id=tenant.project_id)
    await store.save_many([verdict], 600)
    path = f"/v1/approvals/{verdict.event_id}"
    status, body = await _call(http, gateway, tenant, "POST", path,
                               json={"decision": "approve", "reasn": "looked fine"})
    assert status == 400 and body["field"] == "reasn", body
    assert "did you mean 'reason'" in body["message"]
    status, body = await _call(http, gateway, tenant, "GET", "/v1/approvals")
    assert [v["event_id"] for v in body["items"]] == [verdict.event_id]  # still waiting
    status, body = await _call(http, gateway, tenant, "POST", path,
                               json={"decision": "approve", "reason": "looked fine"})
    assert status == 200 and body["status"] == "recorded", body


async def test_a_parameter_or_header_given_twice_is_refused(
        http: aiohttp.ClientSession, gateway: Gateway, tenant: Tenant) -> None:
    for path in ("/v1/approvals?limit=1&limit=x", "/v1/approvals?limit=1&limit=2",
                 "/v1/audit?limit=1&limit=2", "/v1/verdicts/e-1?explain=1&explain=0"):
        status, body = await _call(http, gateway, tenant, "GET", path)
        assert status == 400 and "more than once" in body["message"], (path, body)
    ev = tenant.client.complete(event())
    sig, ts = tenant.client.signature(ev)
    status, body = await _call(http, gateway, tenant, "POST", "/v1/events", json=ev, headers=[
        ("X-Ratchet-Signature", sig), ("X-Ratchet-Timestamp", "1"),
        ("X-Ratchet-Timestamp", str(ts))])
    assert status == 400 and body["field"] == "X-Ratchet-Timestamp", body
    status, body = await _call(http, gateway, tenant, "GET", "/v1/verdicts/e-1?explain=")
    assert status == 400 and body["field"] == "explain", body


async def test_ids_from_the_path_are_quoted_clean(
        http: aiohttp.ClientSession, gateway: Gateway, tenant: Tenant) -> None:
    for method, path in (("GET", "/v1/agents/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E"),
                         ("POST", "/v1/agents/%3Cb%3Ex%3C%2Fb%3E/secret:rotate"),
                         ("DELETE", "/v1/keys/%3Cb%3Ex%3C%2Fb%3E"),
                         ("DELETE", "/v1/webhooks/a%01%1B%5B31m%3Cb%3E%E2%80%AE")):
        status, body = await _call(http, gateway, tenant, method, path)
        assert status in (400, 404), (path, status, body)
        text = body["message"] + str(body.get("field") or "")
        assert not any(c in text for c in "<>\x01\x1b\u202e"), (path, body)


async def test_a_bound_key_names_the_batch_item_it_refuses(
        http: aiohttp.ClientSession, gateway: Gateway, tenant: Tenant) -> None:
    _, b_secret = await create_agent(gateway.redis, gateway.keys, tenant.project_id, "agent-b")
    status, created = await _call(http, gateway, tenant, "POST", "/v1/keys",
                                  json={"role": "ingest", "agent_id": tenant.agent_id})
    assert status == 201, created
    bound = Tenant(tenant.project_id, created["api_key"], tenant.agent_id, tenant.secret,
                   tenant.client)
    async with RatchetClient(gateway.url, tenant.api_key, "agent-b", b_secret,
                             project_id=tenant.project_id) as b_client:
        items = [tenant.client.signed(event()), b_client.signed(event(agent_id="agent-b"))]
    status, body = await _call(http, gateway, bound, "POST", "/v1/events:batch",
                               json={"events": items})
    assert status == 200, body
    assert body["results"][1]["error"]["field"] == "events[1].agent_id", body


async def test_webhook_actions_are_listed_once_and_agent_ids_end_clean(
        http: aiohttp.ClientSession, gateway: Gateway, tenant: Tenant) -> None:
    status, body = await _call(http, gateway, tenant, "POST", "/v1/webhooks", json={
        "url": "https://example.com/hook", "actions": ["flag", "flag"]})
    assert status == 400 and body["field"] == "actions", body
    status, body = await _call(http, gateway, tenant, "POST", "/v1/agents",
                               json={"agent_id": "nl-agent\n"})
    assert status == 400 and body["field"] == "agent_id", body


async def test_an_approvals_cursor_must_be_one_the_api_wrote(
        http: aiohttp.ClientSession, gateway: Gateway, tenant: Tenant) -> None:
    for cursor in ("1_0:x", "%D9%A1:x", "%20%201:x", "1:x%0A", "1:x", "1.0:", "nan:x"):
        status, body = await _call(http, gateway, tenant, "GET",
                                   f"/v1/approvals?cursor={cursor}")
        assert status == 400 and body["field"] == "cursor", (cursor, body)
    status, body = await _call(http, gateway, tenant, "GET", "/v1/approvals?cursor=1.0:x")
    assert status == 200, body


async def test_two_trace_ids_get_a_new_one_not_a_refusal(
        http: aiohttp.ClientSession, gateway: Gateway, tenant: Tenant) -> None:
    hdrs = [("Authorization", f"Bearer {tenant.api_key}"), ("X-Trace-Id", "client-trace-01"),
            ("X-Trace-Id", "proxy-trace-0002")]
    async with http.get(gateway.url + "/v1/approvals", headers=hdrs) as resp:
        assert resp.status == 200
        assert resp.headers["X-Trace-Id"] not in ("client-trace-01", "proxy-trace-0002")
    async with http.get(gateway.url + "/v1/approvals", headers=hdrs[:2]) as resp:
        assert resp.status == 200 and resp.headers["X-Trace-Id"] == "client-trace-01"
