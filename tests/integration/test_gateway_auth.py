"""Provisioning, API keys and event signatures at the gateway (real Redis and Tansu)."""

from __future__ import annotations

import time

import aiohttp
import pytest

from models.errors import ConflictError, NotFoundError, ValidationError
from models.signing import sign
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
    sig = sign(secret or t.secret, t.project_id, agent or str(ev["agent_id"]), str(ev["service"]),
               str(ev["action"]), ev["payload"], str(ev["event_id"]), ts)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {t.api_key}", "X-Ratchet-Signature": sig,
            "X-Ratchet-Timestamp": str(ts)}


async def _post(gateway: Gateway, ev: dict[str, object], headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as http:
        async with http.post(gateway.url + "/v1/events", json=ev, headers=headers) as resp:
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
        "bad": {**_signed_headers(tenant, ev), "X-Ratchet-Signature": "v1=" + "0" * 64},
        "other project's agent secret": _signed_headers(tenant, ev, secret=other.secret),
        "same project, other agent's secret": _signed_headers(tenant, ev, secret=second_secret),
        "tampered payload": _signed_headers(tenant, {**ev, "payload": {"id": 8}}),
        "missing": {"Authorization": f"Bearer {tenant.api_key}"},
        "bad timestamp": {**_signed_headers(tenant, ev), "X-Ratchet-Timestamp": "soon"},
    }
    for name, headers in cases.items():
        status, body = await _post(gateway, ev, headers)
        assert status == 401, name
        assert body["error"] == "unauthorized", name
        assert tenant.secret not in str(body)

    ghost = event(agent_id="ghost")
    status, body = await _post(gateway, ghost, _signed_headers(tenant, ghost))
    assert status == 401 and "unknown agent" in body["message"]
    # an agent of another project is unknown here
    theirs = event(agent_id="agent-2")
    status, body = await _post(gateway, theirs, _signed_headers(tenant, theirs, secret=other.secret))
    assert status == 401 and "unknown agent" in body["message"]
