"""``/v1/webhooks`` and ``/v1/audit`` through the real gateway (Redis + Tansu)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from gateway.app import build_app
from gateway.routes_webhooks import WEBHOOK_RESOLVER
from ratchet.config.settings import Settings
from ratchet.platform.provisioning import hash_api_key
from ratchet.store.audit import AuditLog
from ratchet.store.keys import Keys
from tests.integration.gateway_support import (
    FakeWorker,
    Gateway,
    Tenant,
    event,
    make_tenant,
)
from tests.integration.webhook_helpers import ScriptedResolver

pytestmark = pytest.mark.kafka


@pytest.fixture
def resolver() -> ScriptedResolver:
    return ScriptedResolver(["93.184.216.34"])


@pytest.fixture
async def hgw(gw_settings: Settings, resolver: ScriptedResolver) -> AsyncIterator[Gateway]:
    app = build_app(gw_settings)
    app[WEBHOOK_RESOLVER] = resolver
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    assert gw_settings.redis_url
    redis = Redis.from_url(gw_settings.redis_url)
    try:
        yield Gateway(server, gw_settings, redis, Keys(gw_settings.key_prefix))
    finally:
        await redis.aclose()
        await server.close()


@pytest.fixture
async def tenants(hgw: Gateway) -> AsyncIterator[tuple[Tenant, Tenant]]:
    a, b = await make_tenant(hgw), await make_tenant(hgw)
    try:
        yield a, b
    finally:
        await a.client.close()
        await b.client.close()


async def call(gw: Gateway, t: Tenant, method: str, path: str,
               body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {t.api_key}"}
    async with aiohttp.ClientSession() as http, http.request(
        method, gw.url + path, json=body, headers=headers
    ) as resp:
        text = await resp.text()
        return resp.status, (await resp.json() if text else None)


async def test_create_list_delete_scoped_and_audited(
    hgw: Gateway, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    status, created = await call(hgw, a, "POST", "/v1/webhooks",
                                 {"url": "https://hooks.example.com/r", "actions": ["pause"]})
    assert status == 201, created
    assert created["secret"].startswith("whsec_") and created["actions"] == ["pause"]
    hook_id = created["id"]

    status, listed = await call(hgw, a, "GET", "/v1/webhooks")
    assert status == 200 and [h["id"] for h in listed["items"]] == [hook_id]
    assert "secret" not in listed["items"][0]  # shown once, never again
    # the other tenant neither sees nor deletes it
    assert (await call(hgw, b, "GET", "/v1/webhooks"))[1]["items"] == []
    status, body = await call(hgw, b, "DELETE", f"/v1/webhooks/{hook_id}")
    assert status == 404 and body["error"] == "not_found"

    status, _ = await call(hgw, a, "DELETE", f"/v1/webhooks/{hook_id}")
    assert status == 204
    assert (await call(hgw, a, "DELETE", f"/v1/webhooks/{hook_id}"))[0] == 404

    status, page = await call(hgw, a, "GET", "/v1/audit")
    assert status == 200
    actions = [(e["action"], e["target"], e["actor"]) for e in page["items"]]
    key_actor = f"apikey:{hash_api_key(a.api_key)[:12]}"
    assert actions == [("webhook.created", f"webhook:{hook_id}", key_actor),
                       ("webhook.deleted", f"webhook:{hook_id}", key_actor)]
    assert all(a.api_key not in str(e) for e in page["items"])
    # tenant b's audit log holds nothing of a's
    assert (await call(hgw, b, "GET", "/v1/audit"))[1]["items"] == []
    audit = AuditLog(hgw.redis, hgw.keys, hgw.settings)
    assert (await audit.verify(a.project_id)).ok


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/x", "http://[::1]/x", "http://10.0.0.8/x", "http://192.168.0.1/",
    "http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "http://100.64.1.1/",
    "http://0.0.0.0/", "http://224.0.0.1/", "http://[::ffff:127.0.0.1]/", "http://localhost/",
    # IPv6 transition forms that embed an internal IPv4 address (Python 3.11 calls them global)
    "http://[64:ff9b::7f00:1]/", "http://[64:ff9b::a9fe:a9fe]/", "http://[64:ff9b:1::a00:1]/",
    "http://[::127.0.0.1]/", "http://[::ffff:0:7f00:1]/", "http://[2002:a9fe:a9fe::1]/",
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "http://[3fff::1]/",
])
async def test_ssrf_literals_refused_at_registration(
    hgw: Gateway, tenants: tuple[Tenant, Tenant], url: str
) -> None:
    status, body = await call(hgw, tenants[0], "POST", "/v1/webhooks", {"url": url})
    assert status == 400 and body["field"] == "url", body
    assert (await call(hgw, tenants[0], "GET", "/v1/webhooks"))[1]["items"] == []


@pytest.mark.parametrize("answer", ["127.0.0.1", "10.2.3.4", "169.254.169.254", "fd00:ec2::254",
                                    "100.100.0.1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe",
                                    "::ffff:0:a00:1", "::127.0.0.1"])
async def test_names_resolving_to_internal_addresses_refused(
    hgw: Gateway, tenants: tuple[Tenant, Tenant], resolver: ScriptedResolver, answer: str
) -> None:
    resolver.answers = [answer]
    status, body = await call(hgw, tenants[0], "POST", "/v1/webhooks",
                              {"url": "https://innocent.example.com/hook"})
    assert status == 400 and body["field"] == "url" and "resolves to" in body["message"]
    assert resolver.calls == 1


async def test_bad_requests_and_limit(hgw: Gateway, tenants: tuple[Tenant, Tenant]) -> None:
    a = tenants[0]
    status, body = await call(hgw, a, "POST", "/v1/webhooks", {"url": "https://a.example",
                                                               "actions": ["allow"]})
    assert status == 400 and body["field"] == "actions"
    status, body = await call(hgw, a, "POST", "/v1/webhooks", ["https://a.example"])
    assert status == 400
    for i in range(hgw.settings.webhooks_per_project):
        assert (await call(hgw, a, "POST", "/v1/webhooks",
                           {"url": f"https://a.example/{i}"}))[0] == 201
    status, body = await call(hgw, a, "POST", "/v1/webhooks", {"url": "https://a.example/x"})
    assert status == 409 and "delete one" in body["message"]
    async with aiohttp.ClientSession() as http, http.get(hgw.url + "/v1/webhooks") as resp:
        assert resp.status == 401


async def test_audit_query_params(hgw: Gateway, tenants: tuple[Tenant, Tenant]) -> None:
    a = tenants[0]
    for i in range(3):
        await call(hgw, a, "POST", "/v1/webhooks", {"url": f"https://a.example/{i}"})
    status, page = await call(hgw, a, "GET", "/v1/audit?limit=2")
    assert status == 200 and [e["seq"] for e in page["items"]] == [1, 2]
    status, page = await call(hgw, a, "GET", f"/v1/audit?cursor={page['next_cursor']}")
    assert [e["seq"] for e in page["items"]] == [3] and page["next_cursor"] is None
    status, page = await call(hgw, a, "GET", "/v1/audit?from=2999-01-01T00:00:00Z")
    assert status == 200 and page["items"] == []
    status, page = await call(hgw, a, "GET", "/v1/audit?to=2000-01-01")
    assert status == 200 and page["items"] == []
    for bad, field in [("from=yesterday", "from"), ("cursor=xyz", "cursor"),
                       ("limit=0", "limit"), ("from=2030-01-02&to=2030-01-01", "from")]:
        status, body = await call(hgw, a, "GET", f"/v1/audit?{bad}")
        assert status == 400 and body["field"] == field, bad


async def test_approvals_are_audited(hgw: Gateway, tenants: tuple[Tenant, Tenant]) -> None:
    a = tenants[0]
    async with FakeWorker(hgw.settings, hgw.redis):
        paused = [event(payload={"decide": "pause"}) for _ in range(2)]
        for ev in paused:
            assert (await a.client.send(ev, wait_ms=3000)).status == 200
        assert (await call(hgw, a, "POST", f"/v1/approvals/{paused[0]['event_id']}",
                           {"decision": "approve", "reason": "expected"}))[0] == 200
        rejected = await call(hgw, a, "POST", f"/v1/approvals/{paused[1]['event_id']}",
                              {"decision": "reject"})
        assert rejected[0] == 200, rejected
        # a refused decision (already decided) writes nothing
        assert (await call(hgw, a, "POST", f"/v1/approvals/{paused[1]['event_id']}",
                           {"decision": "approve"}))[0] == 409
    _status, page = await call(hgw, a, "GET", "/v1/audit")
    got = [(e["action"], e["target"], e["details"].get("reason")) for e in page["items"]]
    assert got == [("approval.approved", f"event:{paused[0]['event_id']}", "expected"),
                   ("approval.rejected", f"event:{paused[1]['event_id']}", "")]
