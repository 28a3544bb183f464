"""``GET/PUT /v1/policy`` on the in-process gateway, and engines picking up a replaced policy."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from models.events import parse_event
from ratchet.engine.engine import Engine
from ratchet.store.policies import DEFAULT_TOML, StoredPolicies
from tests.integration.gateway_support import (
    Gateway,
    Tenant,
    make_tenant,
)

pytestmark = pytest.mark.kafka

EXAMPLE = (Path(__file__).resolve().parents[2] / "docs" / "policy.example.toml").read_text()
STRICT = "[guardrails.pii]\naction = 'reject'\n"


async def _call(
    gw: Gateway, method: str, key: str | None, *, body: str | bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, Any, dict[str, str]]:
    h = dict(headers or {})
    if key is not None:
        h["Authorization"] = f"Bearer {key}"
    async with aiohttp.ClientSession() as http, http.request(
        method, gw.url + "/v1/policy", data=body, headers=h
    ) as resp:
        text = await resp.text()
        parsed = await resp.json(content_type=None) if resp.content_type.endswith("json") else None
        return resp.status, resp.content_type, parsed if parsed is not None else text, dict(
            resp.headers
        )


async def _put(gw: Gateway, key: str, text: str) -> tuple[int, Any]:
    status, _, body, _ = await _call(
        gw, "PUT", key, body=text.encode(), headers={"Content-Type": "application/toml"}
    )
    return status, body


async def test_get_put_and_invalid_policy_keeps_the_old(gateway: Gateway, tenant: Tenant) -> None:
    status, ctype, text, headers = await _call(gateway, "GET", tenant.api_key)
    assert (status, ctype, text) == (200, "application/toml", DEFAULT_TOML)
    assert headers["X-Ratchet-Policy-Version"] == "0"

    status, body = await _put(gateway, tenant.api_key, EXAMPLE)
    assert status == 200 and body["version"] == 1 and body["source"] == "stored"
    assert body["policy"]["guardrails"]["pii"]["detector_actions"] == {"secret": "pause"}
    assert body["updated_by"].startswith("apikey:")

    status, ctype, text, _ = await _call(gateway, "GET", tenant.api_key)
    assert (status, ctype, text) == (200, "application/toml", EXAMPLE)
    status, ctype, doc, _ = await _call(
        gateway, "GET", tenant.api_key, headers={"Accept": "application/json"}
    )
    assert status == 200 and ctype == "application/json"
    assert doc["toml"] == EXAMPLE and doc["version"] == 1 and doc["hash"] == body["hash"]

    bad = EXAMPLE.replace("per_run = { window_s = 60, limit = 300 }",
                          "per_run = { window_s = 60, limit = -1 }")
    assert bad != EXAMPLE
    status, err = await _put(gateway, tenant.api_key, bad)
    assert status == 400 and err["field"] == "guardrails.velocity.per_run.limit", err
    status, err = await _put(gateway, tenant.api_key, "[guardrails.velocity]\nlimt = 3\n")
    assert status == 400 and err["field"] == "guardrails.velocity.limt"
    assert "allowed: action, enabled, per_agent, per_run" in err["message"]
    status, err = await _put(gateway, tenant.api_key, "[guardrails\nnot toml")
    assert status == 400 and "TOML" in err["message"]
    # an action for a detector that is not enabled would never apply: refused, not ignored
    status, err = await _put(gateway, tenant.api_key,
                             '[guardrails.pii.detector_actions]\nemail = "reject"\n')
    assert status == 400 and err["field"] == "guardrails.pii.detector_actions.email", err
    assert "the email detector is not enabled" in err["message"]
    assert '"email" to guardrails.pii.detectors' in err["message"]
    status, _, text, headers = await _call(gateway, "GET", tenant.api_key)
    assert text == EXAMPLE and headers["X-Ratchet-Policy-Version"] == "1"  # old one in force

    # audited: one policy.replaced entry for the one replacement, none for the refused ones
    async with aiohttp.ClientSession() as http, http.get(
        gateway.url + "/v1/audit", headers={"Authorization": f"Bearer {tenant.api_key}"}
    ) as resp:
        rows = (await resp.json())["items"]
    replaced = [r for r in rows if r["action"] == "policy.replaced"]
    assert len(replaced) == 1 and replaced[0]["target"] == "policy"
    assert replaced[0]["details"]["version"] == 1 and replaced[0]["details"]["hash"] == body["hash"]
    assert replaced[0]["actor"] == body["updated_by"]


async def test_json_body_scoping_auth_and_size(gateway: Gateway, tenant: Tenant) -> None:
    status, _, body, _ = await _call(
        gateway, "PUT", tenant.api_key, body=b'{"toml": "[guardrails.cost]\\nper_run_limit = 3.0\\n"}',
        headers={"Content-Type": "application/json"},
    )
    assert status == 200 and body["policy"]["guardrails"]["cost"]["per_run_limit"] == 3.0
    other = await make_tenant(gateway)
    try:
        status, _, text, _ = await _call(gateway, "GET", other.api_key)
        assert status == 200 and text == DEFAULT_TOML  # another project's policy is not shared
    finally:
        await other.client.close()
    status, _, err, _ = await _call(gateway, "GET", None)
    assert status == 401 and err["error"] == "unauthorized"
    status, _, err, _ = await _call(gateway, "PUT", "rk_wrong", body=b"version = 1\n")
    assert status == 401
    huge = "# " + "x" * (gateway.settings.max_policy_bytes + 10) + "\nversion = 1\n"
    status, err = await _put(gateway, tenant.api_key, huge)
    assert status == 413 and err["error"] == "payload_too_large"
    status, err = await _put(gateway, tenant.api_key, "   \n")
    assert status == 400


class Tick:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_engine_picks_up_a_replaced_policy(gateway: Gateway, tenant: Tenant) -> None:
    tick = Tick()
    source = StoredPolicies(gateway.redis, gateway.keys, refresh_s=2.0, clock=tick)
    engine = Engine.create(gateway.redis, keys=gateway.keys, policies=source)

    def ev() -> Any:
        return parse_event({"event_id": uuid.uuid4().hex, "agent_id": "a", "run_id": "r",
                            "service": "mail", "action": "send",
                            "payload": {"key": "AKIAIOSFODNN7EXAMPLE"}}, tenant.project_id)

    [v] = await engine.decide([ev()])
    assert v.action == "flag"  # the default policy: PII (a secret) flags
    assert (await _put(gateway, tenant.api_key, STRICT))[0] == 200
    tick.now += 1.0
    [v] = await engine.decide([ev()])
    assert v.action == "flag"  # cached for up to refresh_s
    tick.now += 1.0
    [v] = await engine.decide([ev()])
    assert v.action == "reject"  # version moved: re-read and applied
    assert (await _put(gateway, tenant.api_key, "[guardrails.pii]\nenabled = false\n"))[0] == 200
    tick.now += 2.0
    [v] = await engine.decide([ev()])
    assert v.action == "allow" and not [r for r in v.reasons if r.source != "markov"]


@pytest.mark.parametrize("path", ["/v1/policy", "/v1/policy/engine"])
@pytest.mark.parametrize(("text", "says", "field"), [
    ("[engine]\nwindow = " + "[" * 1000 + "]" * 1000 + "\n", "nests arrays or inline tables",
     "engine.window"),
    ("[engine]\nwindow = " + "7" * 5000 + "\n", "integer of more than 4,300 digits", None),
    ("[engine]\nwindow = 0x" + "f" * 4000 + "\n", "integer wider than 64 bits", "engine.window"),
], ids=["nested-1000-deep", "5000-digit-integer", "4000-hex-digits"])
async def test_toml_the_parser_cannot_take_is_a_400(
    gateway: Gateway, tenant: Tenant, path: str, text: str, says: str, field: str | None
) -> None:
    """Round 11 of the outside attack runs: a 2 KB engine override nested 1,000 deep, and a
    TOML integer of over 4,300 digits on either route, answered 500 (each logging a 198 KB
    traceback). Now a 400 saying what was wrong, and the old document stays."""
    async with aiohttp.ClientSession() as http, http.put(
        gateway.url + path, data=text.encode(),
        headers={"Authorization": f"Bearer {tenant.api_key}", "Content-Type": "application/toml"},
    ) as resp:
        body = await resp.json()
        assert resp.status == 400, body
    assert says in body["message"], body
    assert body["field"] == field, body
