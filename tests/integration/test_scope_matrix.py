"""Scope × route matrix: every route of the gateway against every kind of key (issue 10).

The expectation below is written independently of ``models.scopes.ROUTE_ROLES`` (the table the
gateway enforces): ``AGENT`` routes are for any key, ``ADMIN`` routes for admin keys only,
``PUBLIC`` routes need none. Every route the app serves needs a row here
(``test_matrix_lists_every_route`` fails on an unlisted one), and for every route each kind of
key is tried against a real gateway: an allowed key gets past authentication (never 401/403), a
refused one gets 403 ``forbidden`` and changes nothing in Redis or the audit log, and no key at
all is 401 on every route that takes one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from gateway.app import build_app
from models.scopes import ADMIN, INGEST
from ratchet.config.settings import Settings
from ratchet.platform.api_keys import create_key
from tests.integration.gateway_support import (
    Gateway,
    make_tenant,
)

pytestmark = pytest.mark.kafka

AGENT, ADMIN_ONLY, PUBLIC = "agent", "admin", "public"

EXPECT: dict[tuple[str, str], str] = {
    ("POST", "/v1/events"): AGENT,
    ("POST", "/v1/events:batch"): AGENT,
    ("GET", "/v1/verdicts/{event_id}"): AGENT,
    ("GET", "/v1/whoami"): AGENT,
    ("GET", "/v1/approvals"): ADMIN_ONLY,
    ("GET", "/v1/decisions:stream"): ADMIN_ONLY,
    ("POST", "/v1/approvals/{event_id}"): ADMIN_ONLY,
    ("POST", "/v1/agents"): ADMIN_ONLY,
    ("GET", "/v1/agents"): ADMIN_ONLY,
    ("GET", "/v1/agents/{agent_id}"): ADMIN_ONLY,
    ("POST", "/v1/agents/{agent_id}/secret:rotate"): ADMIN_ONLY,
    ("POST", "/v1/projects/current/keys:rotate"): ADMIN_ONLY,
    ("GET", "/v1/keys"): ADMIN_ONLY,
    ("POST", "/v1/keys"): ADMIN_ONLY,
    ("POST", "/v1/keys/{key_id}:rotate"): ADMIN_ONLY,
    ("DELETE", "/v1/keys/{key_id}"): ADMIN_ONLY,
    ("GET", "/v1/policy"): ADMIN_ONLY,
    ("PUT", "/v1/policy"): ADMIN_ONLY,
    ("GET", "/v1/policy/engine"): ADMIN_ONLY,
    ("PUT", "/v1/policy/engine"): ADMIN_ONLY,
    ("DELETE", "/v1/policy/engine"): ADMIN_ONLY,
    ("GET", "/v1/audit"): ADMIN_ONLY,
    ("POST", "/v1/webhooks"): ADMIN_ONLY,
    ("GET", "/v1/webhooks"): ADMIN_ONLY,
    ("DELETE", "/v1/webhooks/{webhook_id}"): ADMIN_ONLY,
    ("POST", "/v1/signup/tokens"): PUBLIC,
    ("POST", "/v1/signup"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
}

#: Kinds of key: (role, bound to the project's agent?, the project's own key?).
KINDS = {
    "ingest-agent": (INGEST, True, False),
    "ingest-project": (INGEST, False, False),
    "admin-scoped": (ADMIN, False, False),
    "admin-project-key": (ADMIN, False, True),
}


def _served_routes(settings: Settings) -> set[tuple[str, str]]:
    app = build_app(settings)
    return {(r.method, r.resource.canonical) for r in app.router.routes()
            if r.resource is not None and r.method != "HEAD"}


def test_matrix_lists_every_route() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0", kafka_bootstrap="127.0.0.1:1")
    served = _served_routes(settings)
    assert served - set(EXPECT) == set(), f"routes without a scope row: {sorted(served - set(EXPECT))}"
    assert set(EXPECT) - served == set(), f"rows for routes not served: {set(EXPECT) - served}"


@dataclass
class Reply:
    status: int
    body: Any


async def call(gw: Gateway, method: str, route: str, key: str | None) -> Reply:
    path = route
    for name in ("event_id", "agent_id", "webhook_id"):
        path = path.replace("{" + name + "}", "agent-1" if name == "agent_id" else "x1")
    path = path.replace("{key_id}", "0123456789ab")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as http, http.request(
        method, gw.url + path, json={}, headers=headers
    ) as resp:
        body = await resp.json() if resp.content_type == "application/json" else None
        return Reply(resp.status, body)


async def _snapshot(gw: Gateway) -> dict[bytes, Any]:
    """Every key of this gateway's namespace with its value (rate-limit buckets excluded: an
    allowed call may take a token; a refused one never gets that far)."""
    out: dict[bytes, Any] = {}
    async for name in gw.redis.scan_iter(match=f"{gw.keys.prefix}:*"):
        kind = await gw.redis.type(name)
        if kind == b"string":
            out[name] = await gw.redis.get(name)
        elif kind == b"hash":
            out[name] = await gw.redis.hgetall(name)
        elif kind == b"zset":
            out[name] = await gw.redis.zrange(name, 0, -1, withscores=True)
        elif kind == b"set":
            out[name] = await gw.redis.smembers(name)
        else:
            out[name] = kind
    return out


@pytest.mark.parametrize("route", sorted(EXPECT), ids=lambda r: f"{r[0]} {r[1]}")
async def test_route_by_key_kind(gateway: Gateway, route: tuple[str, str]) -> None:
    method, path = route
    expected = EXPECT[route]
    if expected == PUBLIC:
        assert (await call(gateway, method, path, None)).status not in (401, 403)
        return
    assert (await call(gateway, method, path, None)).status == 401
    for kind, (role, bound, primary) in KINDS.items():
        t = await make_tenant(gateway)  # a fresh project per kind: rotations cannot interfere
        await t.client.close()
        key = t.api_key
        if not primary:
            _, key = await create_key(gateway.redis, gateway.keys, t.project_id, role,
                                      t.agent_id if bound else None)
        allowed = expected == AGENT or role == ADMIN
        before = await _snapshot(gateway)
        got = await call(gateway, method, path, key)
        if allowed:
            assert got.status not in (401, 403), (kind, got.status, got.body)
        else:
            assert got.status == 403, (kind, got.status, got.body)
            assert got.body["error"] == "forbidden" and role in got.body["message"]
            assert await _snapshot(gateway) == before, f"{kind}: a refused call changed state"


def test_openapi_states_the_roles_of_every_route() -> None:
    from gateway.openapi import build_openapi

    paths = build_openapi()["paths"]
    for (method, route), expected in EXPECT.items():
        if route in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            continue  # not part of the API document
        op = paths[route][method.lower()]
        if expected == PUBLIC:
            assert "x-ratchet-roles" not in op and "security" not in op, route
            continue
        roles = ["admin"] if expected == ADMIN_ONLY else ["admin", "ingest"]
        assert op["x-ratchet-roles"] == roles and "403" in op["responses"], route
