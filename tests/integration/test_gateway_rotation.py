"""API key and agent secret rotation attacked through the real gateway and Redis
(docs/design.md §5).

The old credential fails at once, the new one is shown once, guessing is cut off per client IP,
and no key or secret ever reaches a log line.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest

from ratchet.config.settings import Settings
from ratchet.platform.provisioning import agent_secret, project_for_api_key
from ratchet.sandbox.client import RatchetClient
from tests.integration.gateway_support import (
    Gateway,
    Tenant,
    event,
    make_tenant,
    own_gateway,
)

pytestmark = pytest.mark.kafka

ROTATE_KEY = "/v1/projects/current/keys:rotate"


async def _call(gw: Gateway, method: str, path: str, key: str | None, body: Any = None,
                source_ip: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    connector = aiohttp.TCPConnector(local_addr=(source_ip, 0)) if source_ip else None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession(connector=connector) as http, http.request(
        method, gw.url + path, json=body, headers=headers
    ) as resp:
        return resp.status, await resp.json(), dict(resp.headers)


async def test_key_rotation_revokes_the_old_key_at_once(gateway: Gateway, tenant: Tenant) -> None:
    old = tenant.api_key
    status, body, headers = await _call(gateway, "POST", ROTATE_KEY, old)
    assert status == 200 and body["project_id"] == tenant.project_id
    new = body["api_key"]
    assert new.startswith("rk_") and new != old and "X-RateLimit-Limit" in headers
    # the very next request with the old key fails, on every route
    assert (await _call(gateway, "GET", "/v1/whoami", old))[0] == 401
    assert (await tenant.client.send(event())).status == 401
    assert (await _call(gateway, "POST", ROTATE_KEY, old))[0] == 401
    assert await project_for_api_key(gateway.redis, gateway.keys, old) is None
    # the new one works, and events signed by the agent still verify
    async with RatchetClient(gateway.url, new, tenant.agent_id, tenant.secret,
                             project_id=tenant.project_id) as client:
        assert (await client.whoami()).body["key_id"] == body["key_id"]
        assert (await client.send(event())).status == 202


async def test_concurrent_rotations_with_one_key_yield_one_new_key(
    gateway: Gateway, tenant: Tenant
) -> None:
    results = await asyncio.gather(*[
        _call(gateway, "POST", ROTATE_KEY, tenant.api_key) for _ in range(10)
    ])
    winners = [body["api_key"] for status, body, _ in results if status == 200]
    assert len(winners) == 1
    assert {status for status, _, _ in results} <= {200, 401, 409}
    assert await project_for_api_key(gateway.redis, gateway.keys, winners[0]) == tenant.project_id


async def test_secret_rotation_revokes_the_old_secret_at_once(
    gateway: Gateway, tenant: Tenant
) -> None:
    path = f"/v1/agents/{tenant.agent_id}/secret:rotate"
    status, body, _ = await _call(gateway, "POST", path, tenant.api_key)
    assert status == 200 and body["agent_id"] == tenant.agent_id
    new = body["agent_secret"]
    assert new.startswith("as_") and new != tenant.secret
    stale = await tenant.client.send(event())  # still signs with the old secret
    assert stale.status == 401 and stale.body["error"] == "unauthorized"
    assert await agent_secret(gateway.redis, gateway.keys, tenant.project_id,
                              tenant.agent_id) == new
    async with RatchetClient(gateway.url, tenant.api_key, tenant.agent_id, new,
                             project_id=tenant.project_id) as client:
        assert (await client.send(event())).status == 202
    # rotation never creates an agent
    status, _, _ = await _call(gateway, "POST", "/v1/agents/ghost/secret:rotate", tenant.api_key)
    assert status == 404
    assert not await gateway.redis.exists(gateway.keys.agent(tenant.project_id, "ghost"))


async def test_failed_authentication_is_cut_off_per_address(gw_settings: Settings) -> None:
    settings = gw_settings.replace(auth_failure_limit=5, auth_failure_window_s=600)
    async with own_gateway(settings) as gw:
        await _guessing_from_one_address(gw)


async def _guessing_from_one_address(gw: Gateway) -> None:
    t = await make_tenant(gw)
    try:
        for i in range(5):
            status, _, _ = await _call(gw, "POST", ROTATE_KEY, f"rk_guess{i}")
            assert status == 401
        status, body, headers = await _call(gw, "POST", ROTATE_KEY, "rk_guess9")
        assert status == 429 and "failed authentications" in body["message"]
        assert 590 <= int(headers["Retry-After"]) <= 600
        # while blocked, every guess is refused on this address, on every route (not counted:
        # the lockout does not grow) ...
        for path in (ROTATE_KEY, f"/v1/agents/{t.agent_id}/secret:rotate", "/v1/agents"):
            assert (await _call(gw, "POST", path, "rk_guess10"))[0] == 429, path
        assert await project_for_api_key(gw.redis, gw.keys, t.api_key) == t.project_id
        # ... while the right key is served on it (a client's stale key must not lock out the
        # other clients behind a shared address: round 9)
        status, body, _ = await _call(gw, "POST", ROTATE_KEY, t.api_key)
        assert status == 200, body
        assert await project_for_api_key(gw.redis, gw.keys, body["api_key"]) == t.project_id
        # the old key is a wrong key now: a guess, refused as such on this address
        assert (await _call(gw, "POST", "/v1/agents", t.api_key))[0] == 429
        # and another address is unaffected
        assert (await _call(gw, "POST", f"/v1/agents/{t.agent_id}/secret:rotate",
                            body["api_key"], source_ip="127.0.0.2"))[0] == 200
    finally:
        await t.client.close()


async def test_keys_and_secrets_never_reach_the_logs(
    gateway: Gateway, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = [tenant.api_key, tenant.secret]
    _, body, _ = await _call(gateway, "POST", ROTATE_KEY, tenant.api_key)
    secrets.append(body["api_key"])
    _, rotated, _ = await _call(gateway, "POST", f"/v1/agents/{tenant.agent_id}/secret:rotate",
                                body["api_key"])
    secrets.append(rotated["agent_secret"])
    _, created, _ = await _call(gateway, "POST", "/v1/agents", body["api_key"],
                                {"agent_id": "bot-2"})
    secrets.append(created["agent_secret"])
    await tenant.client.send(event())  # old key and old secret: 401
    for key in (tenant.api_key, tenant.api_key + "x", "rk_" + "A" * 43):
        await _call(gateway, "POST", ROTATE_KEY, key)
        await _call(gateway, "GET", "/v1/whoami", key)
    _, token, _ = await _call(gateway, "POST", "/v1/signup/tokens", None)
    secrets.append(token["token"])
    _, signup, _ = await _call(gateway, "POST", "/v1/signup", None, {"token": token["token"]})
    secrets += [signup["api_key"], signup["agent_secret"]]
    await _call(gateway, "POST", "/v1/signup", None, {"token": token["token"]})  # reused: 401
    assert caplog.records, "the flow should have logged something (capture works)"
    logged = "\n".join(
        f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records
    )
    for secret in secrets:
        assert secret not in logged
        assert secret[3:20] not in logged


async def test_rotation_cli(
    redis_url: str, redis_mode: str, redis_client: Any, key_prefix: str
) -> None:
    """``ratchet projects rotate-key`` / ``agents rotate-secret`` / ``projects set-tier``."""
    from ratchet.platform.provisioning import create_agent, create_project
    from ratchet.store.keys import Keys
    from tests.integration.cli_support import field, ratchet_cli

    env = {"RATCHET_REDIS_URL": redis_url, "RATCHET_KEY_PREFIX": key_prefix,
           "RATCHET_REDIS_CLUSTER": "1" if redis_mode == "cluster" else "0"}
    redis, keys = redis_client, Keys(key_prefix)
    try:
        project_id, old_key = await create_project(redis, keys, "acme")
        _, old_secret = await create_agent(redis, keys, project_id, "bot-1")
        done = await asyncio.to_thread(ratchet_cli, ["projects", "rotate-key", "--project", project_id],
                                       env)
        assert done.returncode == 0, done.stderr
        new_key = field(done.stdout, "api_key")
        assert await project_for_api_key(redis, keys, old_key) is None
        assert await project_for_api_key(redis, keys, new_key) == project_id

        done = await asyncio.to_thread(
            ratchet_cli, ["agents", "rotate-secret", "--project", project_id, "--agent-id", "bot-1"], env)
        assert done.returncode == 0, done.stderr
        new_secret = field(done.stdout, "agent_secret")
        assert new_secret != old_secret
        assert await agent_secret(redis, keys, project_id, "bot-1") == new_secret

        done = await asyncio.to_thread(
            ratchet_cli, ["projects", "set-tier", "--project", project_id, "--tier", "high_volume"], env)
        assert done.returncode == 0, done.stderr
        assert await redis.hget(keys.project(project_id), "tier") == b"high_volume"
        bad = await asyncio.to_thread(
            ratchet_cli, ["projects", "set-tier", "--project", project_id, "--tier", "gold"], env)
        assert bad.returncode == 2 and "unknown tier" in bad.stderr
        ghost = await asyncio.to_thread(
            ratchet_cli, ["agents", "rotate-secret", "--project", project_id, "--agent-id", "nope"], env)
        assert ghost.returncode == 2 and "no agent" in ghost.stderr
    finally:
        await redis.aclose()


async def test_rotations_and_signup_are_audited(gateway: Gateway, tenant: Tenant) -> None:
    old_id = (await _call(gateway, "GET", "/v1/whoami", tenant.api_key))[1]["key_id"]
    _, rotated, _ = await _call(gateway, "POST", ROTATE_KEY, tenant.api_key)
    new_key = rotated["api_key"]
    _, secret, _ = await _call(gateway, "POST", f"/v1/agents/{tenant.agent_id}/secret:rotate",
                               new_key)
    await _call(gateway, "POST", "/v1/agents", new_key, {"agent_id": "bot-9"})
    _, log, _ = await _call(gateway, "GET", "/v1/audit", new_key)
    by_action = {e["action"]: e for e in log["items"]}
    key_entry = by_action["key.rotated"]
    assert key_entry["actor"] == f"apikey:{old_id}"
    assert key_entry["target"] == f"apikey:{rotated['key_id']}"
    assert key_entry["details"] == {"revoked": old_id}
    assert by_action["secret.rotated"]["target"] == f"agent:{tenant.agent_id}"
    assert by_action["agent.created"]["actor"] == f"apikey:{rotated['key_id']}"
    text = str(log)
    assert tenant.api_key not in text and new_key not in text
    assert secret["agent_secret"] not in text and tenant.secret not in text

    _, token, _ = await _call(gateway, "POST", "/v1/signup/tokens", None)
    _, done, _ = await _call(gateway, "POST", "/v1/signup", None, {"token": token["token"]})
    _, theirs, _ = await _call(gateway, "GET", "/v1/audit", done["api_key"])
    assert [e["action"] for e in theirs["items"]] == ["project.created", "agent.created"]
    assert {e["actor"] for e in theirs["items"]} == {f"signup:{done['org_id']}"}
    assert done["api_key"] not in str(theirs) and done["agent_secret"] not in str(theirs)
