"""Provisioning, API keys and event signatures at the gateway (real Redis and Tansu)."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import pytest

from gateway.app import build_app
from models.errors import ConfigError, ConflictError, NotFoundError, ValidationError
from models.signing import sign, sign_v1
from ratchet.config.settings import Settings
from ratchet.platform.provisioning import (
    agent_secret,
    create_agent,
    create_project,
    hash_api_key,
    project_for_api_key,
)
from tests.integration.gateway_support import (
    Gateway,
    Tenant,
    event,
    make_tenant,
    own_gateway,
)

pytestmark = pytest.mark.kafka


async def test_project_key_is_stored_only_as_sha256(gateway: Gateway) -> None:
    project_id, api_key = await create_project(gateway.redis, gateway.keys, "acme")
    assert api_key.startswith("rk_") and len(api_key) > 40
    assert await project_for_api_key(gateway.redis, gateway.keys, api_key) == project_id
    assert await project_for_api_key(gateway.redis, gateway.keys, api_key + "x") is None
    dump = b""
    async for key in gateway.redis.scan_iter(match=f"{gateway.keys.prefix}:*"):
        dump += key
        if await gateway.redis.type(key) == b"string":
            dump += await gateway.redis.get(key) or b""
        elif await gateway.redis.type(key) == b"hash":
            for v in (await gateway.redis.hgetall(key)).values():
                dump += v
    assert api_key.encode() not in dump
    assert hash_api_key(api_key).encode() in dump


async def test_agents(gateway: Gateway) -> None:
    project_id, _ = await create_project(gateway.redis, gateway.keys, "acme")
    agent_id, secret = await create_agent(gateway.redis, gateway.keys, project_id)
    assert agent_id.startswith("agt_") and secret.startswith("as_")
    assert await agent_secret(gateway.redis, gateway.keys, project_id, agent_id) == secret
    named, _ = await create_agent(gateway.redis, gateway.keys, project_id, "billing-bot")
    assert named == "billing-bot"
    with pytest.raises(ConflictError):
        await create_agent(gateway.redis, gateway.keys, project_id, "billing-bot")
    with pytest.raises(NotFoundError):
        await create_agent(gateway.redis, gateway.keys, "prj_nope", "x")
    with pytest.raises(ValidationError):
        await create_agent(gateway.redis, gateway.keys, project_id, "bad id with spaces")


async def test_api_key_good_bad_missing(gateway: Gateway, tenant: Tenant) -> None:
    assert (await tenant.client.whoami()).body["project_id"] == tenant.project_id
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer rk_wrong"}, {"Authorization": "Basic x"},
                        {"Authorization": f"Bearer {'x' * 1000}"}):
            async with http.get(gateway.url + "/v1/whoami", headers=headers) as resp:
                assert resp.status == 401
                body = await resp.json()
                assert body["error"] == "unauthorized" and set(body) == {"error", "field",
                                                                         "message"}
                assert resp.headers["X-Trace-Id"]
                assert "rk_wrong" not in await resp.text()


def _signed_headers(t: Tenant, ev: dict[str, object], *, secret: str | None = None,
                    ts: int | None = None, agent: str | None = None) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    sig = sign(secret or t.secret, t.project_id, {**ev, "agent_id": agent} if agent else ev, ts)
    return {"Authorization": f"Bearer {t.api_key}", "X-Ratchet-Signature": sig,
            "X-Ratchet-Timestamp": str(ts)}


async def _post(gateway: Gateway, ev: dict[str, object], headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as http, \
            http.post(gateway.url + "/v1/events", json=ev, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_signatures(gateway: Gateway, tenant: Tenant) -> None:
    other = await make_tenant(gateway, "agent-2")  # another project, its own agent
    await other.client.close()
    _, second_secret = await create_agent(gateway.redis, gateway.keys, tenant.project_id, "agent-3")
    ev = event()
    assert (await _post(gateway, ev, _signed_headers(tenant, ev)))[0] == 202

    ev = event()
    status, body = await _post(gateway, ev, _signed_headers(tenant, ev, ts=int(time.time()) - 301))
    assert status == 401 and "stale signature" in body["message"]

    cases = {
        "bad": {**_signed_headers(tenant, ev), "X-Ratchet-Signature": "v2=" + "0" * 64},
        "other project's agent secret": _signed_headers(tenant, ev, secret=other.secret),
        "same project, other agent's secret": _signed_headers(tenant, ev, secret=second_secret),
        "tampered payload": _signed_headers(tenant, {**ev, "payload": {"id": 8}}),
        "missing": {"Authorization": f"Bearer {tenant.api_key}"},
    }
    for name, headers in cases.items():
        status, body = await _post(gateway, ev, headers)
        assert status == 401, name
        assert body["error"] == "unauthorized", name
        assert tenant.secret not in str(body)

    # a timestamp that is not Unix seconds is malformed input, not a failed signature
    for bad in ("soon", "²", "1.5", "9" * 13):
        status, body = await _post(gateway, ev, {**_signed_headers(tenant, ev),
                                                 "X-Ratchet-Timestamp": bad})
        assert status == 400 and body["field"] == "X-Ratchet-Timestamp", (bad, body)

    ghost = event(agent_id="ghost")
    status, body = await _post(gateway, ghost, _signed_headers(tenant, ghost))
    assert status == 401 and "unknown agent" in body["message"]
    # an agent of another project is unknown here
    theirs = event(agent_id="agent-2")
    status, body = await _post(gateway, theirs, _signed_headers(tenant, theirs, secret=other.secret))
    assert status == 401 and "unknown agent" in body["message"]


# --- signature v2 covers every field (issue 10, finding 4) --------------------------------------
SIGNED_EXTRAS: dict[str, object] = {"priority": "low", "cost": 0.5, "ts": 1700000000.5,
                                    "end_of_run": False, "metadata": {"step": 1}}
CHANGES: dict[str, object] = {"run_id": "run-other", "priority": "critical", "cost": 0.0,
                              "ts": 1700000999.0, "end_of_run": True,
                              "metadata": {"step": 2}, "payload": {"id": 8, "q": "é"}}


@pytest.mark.parametrize("field", sorted(CHANGES))
async def test_changing_any_field_of_a_signed_event_is_401(gateway: Gateway, tenant: Tenant,
                                                           field: str) -> None:
    ev = event(**SIGNED_EXTRAS)
    headers = _signed_headers(tenant, ev)
    status, body = await _post(gateway, {**ev, field: CHANGES[field]}, headers)
    assert status == 401 and "bad signature" in body["message"], (field, status, body)
    # the captured, unchanged event is still good: only the change was refused
    assert (await _post(gateway, ev, headers))[0] == 202


async def test_changing_any_field_of_a_signed_batch_item_is_refused(gateway: Gateway,
                                                                    tenant: Tenant) -> None:
    good = tenant.client.signed(event(**SIGNED_EXTRAS))
    items = [good] + [{**tenant.client.signed(event(**SIGNED_EXTRAS)), field: value}
                      for field, value in sorted(CHANGES.items())]
    # dropping an optional field that was signed is a change too
    dropped = tenant.client.signed(event(**SIGNED_EXTRAS))
    del dropped["priority"]
    items.append(dropped)
    answer = await tenant.client.post_signed(items)
    assert answer.status == 200, answer.body
    results = answer.body["results"]
    assert results[0]["status"] == "accepted"
    for r in results[1:]:
        assert r["status"] == "rejected" and r["error"]["error"] == "unauthorized", r
    assert answer.body["accepted"] == 1


async def test_signature_binds_the_keys_project(gateway: Gateway, tenant: Tenant) -> None:
    other = await make_tenant(gateway, "agent-1")  # same agent id and secret name, other project
    await other.client.close()
    ev = event()
    headers = _signed_headers(tenant, ev)
    # the same signed request sent with another project's key does not verify there
    status, _ = await _post(gateway, ev, {**headers,
                                          "Authorization": f"Bearer {other.api_key}"})
    assert status == 401
    # a project_id claimed in the body is not what is signed (nor used): the key's project is
    status, _ = await _post(gateway, {**ev, "project_id": other.project_id}, headers)
    assert status == 202


async def test_portable_numbers_and_non_bmp_keys_are_accepted(gateway: Gateway,
                                                              tenant: Tenant) -> None:
    """What a JavaScript client sends for the issue-13 payloads verifies (RFC 8785 both sides)."""
    for payload_text in ('{"rate":0.00005}', '{"rate":1e-7}', '{"\\ud83d\\ude00":1,"\\uff61":2}',
                         '{"amount":12.5,"zero":-0.0,"name":"caf\\u00e9 \\u2615"}'):
        ev = event()
        ts = int(time.time())
        # signed over the canonical form of the parsed values, sent as other JSON text
        ev["payload"] = json.loads(payload_text)
        sig = sign(tenant.secret, tenant.project_id, ev, ts)
        raw = (f'{{"event_id":"{ev["event_id"]}","agent_id":"agent-1","run_id":"run-1",'
               f'"service":"crm","action":"contacts.read","payload":{payload_text}}}')
        headers = {"Authorization": f"Bearer {tenant.api_key}", "X-Ratchet-Signature": sig,
                   "X-Ratchet-Timestamp": str(ts), "Content-Type": "application/json"}
        async with aiohttp.ClientSession() as http, http.post(
                gateway.url + "/v1/events", data=raw.encode(), headers=headers) as resp:
            assert resp.status == 202, (payload_text, await resp.text())


async def test_v1_signatures_only_while_the_setting_allows(gw_settings: Settings) -> None:
    def v1_headers(t: Tenant, ev: dict[str, Any]) -> dict[str, str]:
        ts = int(time.time())
        sig = sign_v1(t.secret, t.project_id, t.agent_id, ev["service"], ev["action"],
                      ev["payload"], ev["event_id"], ts)
        return {"Authorization": f"Bearer {t.api_key}", "X-Ratchet-Signature": sig,
                "X-Ratchet-Timestamp": str(ts)}

    for until, expected in (("", 401), ("2999-01-01", 202), ("2020-01-01", 401)):
        async with own_gateway(gw_settings.replace(signature_v1_until=until)) as gw:
            t = await make_tenant(gw)
            await t.client.close()
            ev = event()
            status, body = await _post(gw, ev, v1_headers(t, ev))
            assert status == expected, (until, body)
            if expected == 401:
                assert "v1 signatures are no longer accepted" in body["message"]
    with pytest.raises(ConfigError, match="RATCHET_SIGNATURE_V1_UNTIL"):
        build_app(gw_settings.replace(signature_v1_until="soon"))
