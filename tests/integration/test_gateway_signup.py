"""Self-serve signup attacked through the real gateway and Redis (docs/design.md §5).

Per-IP limits (5/hour, 10/24 h), the global daily cap, a spoofed ``X-Forwarded-For``, the kill
switch, concurrent redemption of one token, and Redis down (fails closed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

import aiohttp
import pytest
from multidict import CIMultiDict
from redis.asyncio import Redis

from models.errors import RateLimitedError
from ratchet.config.settings import Settings
from ratchet.platform.provisioning import hash_api_key, project_for_api_key
from ratchet.platform.signup import SignupRequest, issue_token
from ratchet.sandbox.client import RatchetClient
from ratchet.sandbox.servers import free_port
from ratchet.store.keys import Keys
from ratchet.store.scripts import scripts_for
from tests.integration.gateway_support import (
    Gateway,
    event,
    own_gateway,
    start_gateway,
)

pytestmark = pytest.mark.kafka


async def _post(url: str, body: Any = None, headers: Mapping[str, str] | None = None,
                source_ip: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    connector = aiohttp.TCPConnector(local_addr=(source_ip, 0)) if source_ip else None
    async with aiohttp.ClientSession(connector=connector) as http, http.post(
        url, json=body, headers=headers or {}
    ) as resp:
        return resp.status, await resp.json(), dict(resp.headers)


async def _dump(redis: Redis, keys: Keys) -> bytes:
    out = b""
    async for key in redis.scan_iter(match=f"{keys.prefix}:*"):
        out += key
        kind = await redis.type(key)
        if kind == b"string":
            out += await redis.get(key) or b""
        elif kind == b"hash":
            fields = cast(dict[bytes, bytes], await redis.hgetall(key))
            out += b"".join(k + v for k, v in fields.items())
    return out


async def test_signup_provisions_everything_once(gateway: Gateway) -> None:
    status, issued, headers = await _post(gateway.url + "/v1/signup/tokens",
                                          {"email": "ops@example.com", "org_name": "Acme"})
    assert status == 201 and issued["token"].startswith("st_")
    assert headers["X-RateLimit-Limit"] == "5" and headers["X-RateLimit-Remaining"] == "4"
    token = issued["token"]
    assert token.encode() not in await _dump(gateway.redis, gateway.keys)  # SHA-256 only

    status, done, _ = await _post(gateway.url + "/v1/signup",
                                  {"token": token, "agent_id": "bot-1"})
    assert status == 201, done
    assert done["org_name"] == "Acme" and done["tier"] == "free" and done["agent_id"] == "bot-1"
    assert await project_for_api_key(gateway.redis, gateway.keys, done["api_key"]) == \
        done["project_id"]
    org = await gateway.redis.hgetall(gateway.keys.org(done["org_id"]))
    assert org[b"email"] == b"ops@example.com" and org[b"project_id"] == done["project_id"].encode()
    project = await gateway.redis.hgetall(gateway.keys.project(done["project_id"]))
    assert project[b"api_key_sha256"] == hash_api_key(done["api_key"]).encode()
    assert project[b"tier"] == b"free" and project[b"org_id"] == done["org_id"].encode()
    # its event-id bindings start settled: no reads of the layouts before (event_id_buckets)
    assert await gateway.redis.hgetall(gateway.keys.event_ids(done["project_id"])) == \
        {b"#c": b"0"}

    # the credentials work end to end: the key authenticates, the secret signs
    async with RatchetClient(gateway.url, done["api_key"], "bot-1", done["agent_secret"]) as c:
        assert (await c.whoami()).body["project_id"] == done["project_id"]
        assert (await c.send(event("bot-1"))).status == 202

    status, again, _ = await _post(gateway.url + "/v1/signup", {"token": token})
    assert status == 401 and "already redeemed" in again["message"]
    assert done["api_key"].encode() not in await _dump(gateway.redis, gateway.keys)


async def test_concurrent_redemption_creates_exactly_one_project(gw_settings: Settings) -> None:
    async with own_gateway(gw_settings.replace(auth_failure_limit=1000)) as gw:
        _, issued, _ = await _post(gw.url + "/v1/signup/tokens")
        before = await gw.redis.scard(gw.keys.projects())
        results = await asyncio.gather(*[
            _post(gw.url + "/v1/signup", {"token": issued["token"]}) for _ in range(25)
        ])
        statuses = sorted(status for status, _, _ in results)
        assert statuses == [201] + [401] * 24
        assert await gw.redis.scard(gw.keys.projects()) == before + 1
        # the losers took back their projects' event-id hashes too
        (winner,) = [body["project_id"] for status, body, _ in results if status == 201]
        assert [k async for k in gw.redis.scan_iter(match=f"{gw.keys.prefix}:{{e:*}}:ids")] == \
            [gw.keys.event_ids(winner).encode()]


async def test_per_ip_hourly_limit_ignores_spoofed_forwarded_for(gateway: Gateway) -> None:
    url = gateway.url + "/v1/signup/tokens"
    for i in range(5):
        status, _, _ = await _post(url, headers={"X-Forwarded-For": f"198.51.100.{i}"})
        assert status == 201
    status, body, headers = await _post(url, headers={"X-Forwarded-For": "203.0.113.77"})
    assert status == 429 and body["error"] == "rate_limited"
    assert "last hour" in body["message"]
    assert 3590 <= int(headers["Retry-After"]) <= 3600
    # another socket address is another client
    assert (await _post(url, source_ip="127.0.0.2"))[0] == 201


async def test_concurrent_token_requests_cannot_overshoot(gateway: Gateway) -> None:
    results = await asyncio.gather(*[
        _post(gateway.url + "/v1/signup/tokens") for _ in range(20)
    ])
    assert sorted(status for status, _, _ in results) == [201] * 5 + [429] * 15


async def test_trusted_proxy_forwarded_for_is_believed_when_configured(
    gw_settings: Settings,
) -> None:
    async with own_gateway(gw_settings.replace(trusted_proxies="127.0.0.1/32")) as gw:
        url = gw.url + "/v1/signup/tokens"
        for _ in range(5):
            assert (await _post(url, headers={"X-Forwarded-For": "198.51.100.1"}))[0] == 201
        assert (await _post(url, headers={"X-Forwarded-For": "198.51.100.1"}))[0] == 429
        # the client cannot escape by prepending: the right-most untrusted hop counts
        spoof = {"X-Forwarded-For": "10.9.9.9, 198.51.100.1"}
        assert (await _post(url, headers=spoof))[0] == 429
        # nor by sending a second header: the proxy's appended line is the last one
        two = CIMultiDict([("X-Forwarded-For", "10.9.9.9"), ("X-Forwarded-For", "198.51.100.1")])
        assert (await _post(url, headers=two))[0] == 429
        assert (await _post(url, headers={"X-Forwarded-For": "198.51.100.2"}))[0] == 201
        assert await gw.redis.exists(gw.keys.signup_ip("198.51.100.1"))


async def test_per_ip_daily_limit_and_global_cap(gw_settings: Settings) -> None:
    settings = gw_settings.replace(signup_per_ip_hour=100, signup_per_ip_day=3,
                                   signup_daily_cap=5)
    async with own_gateway(settings) as gw:
        url = gw.url + "/v1/signup/tokens"
        assert [(await _post(url))[0] for _ in range(4)] == [201, 201, 201, 429]
        status, body, _ = await _post(url)
        assert status == 429 and "24 hours" in body["message"]
        assert [(await _post(url, source_ip="127.0.0.3"))[0] for _ in range(3)] == [201, 201, 429]
        status, body, headers = await _post(url, source_ip="127.0.0.4")
        assert status == 429 and "daily signup capacity" in body["message"]
        assert 1 <= int(headers["Retry-After"]) <= 86_400


async def test_sliding_windows_over_time(redis_client: Redis, keys: Keys) -> None:
    """5/hour and 10/24 h are sliding: time travel through the script's clock argument."""
    settings = Settings()
    scripts = scripts_for(redis_client)
    t0 = 1_800_000_000.0

    async def ask(at: float) -> None:
        await issue_token(redis_client, keys, scripts, settings, "192.0.2.1",
                          SignupRequest(None, None), at)

    for i in range(5):
        await ask(t0 + i)
    with pytest.raises(RateLimitedError) as hour:
        await ask(t0 + 60)
    assert hour.value.retry_after_s == pytest.approx(3600 - 60, abs=1)
    for i in range(5):  # an hour later the first five have left the hourly window
        await ask(t0 + 3601 + i)
    with pytest.raises(RateLimitedError) as day:
        await ask(t0 + 7300)
    assert "24 hours" in str(day.value)
    assert day.value.retry_after_s == pytest.approx(86_400 - 7300, abs=1)
    await ask(t0 + 86_401)  # a day later the first one has left the daily window


async def test_kill_switch(gw_settings: Settings) -> None:
    switched = Settings.from_env({"RATCHET_SIGNUP_DISABLED": "1"})
    assert switched.signup_disabled
    async with own_gateway(gw_settings.replace(signup_disabled=switched.signup_disabled)) as gw:
        for path, body in (("/v1/signup/tokens", None), ("/v1/signup", {"token": "st_x"})):
            status, answer, headers = await _post(gw.url + path, body)
            assert status == 503 and "RATCHET_SIGNUP_DISABLED" in answer["message"]
            assert "Retry-After" not in headers  # switched off: retrying will not help
        assert not [k async for k in gw.redis.scan_iter(match=f"{gw.keys.prefix}:*")]


async def test_redis_down_fails_closed(gw_settings: Settings) -> None:
    settings = gw_settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0",
                                   redis_timeout_s=0.5)
    server = await start_gateway(settings)
    try:
        url = str(server.make_url("")).rstrip("/")
        status, body, headers = await _post(url + "/v1/signup/tokens")
        assert status == 503 and "token" not in body and body["error"] == "unavailable"
        assert headers["Retry-After"] == "1"  # Redis down: worth retrying soon
        status, body, _ = await _post(url + "/v1/signup", {"token": "st_abc"})
        assert status == 503 and "api_key" not in body
    finally:
        await server.close()


@pytest.mark.parametrize(("body", "field"), [
    ({"email": "not-an-address"}, "email"),
    ({"email": 7}, "email"),
    ({"org_name": "<script>"}, "org_name"),
    ({"org_name": "a\x00b"}, "org_name"),
    ([1], None),
])
async def test_bad_signup_requests_name_the_field(
    gateway: Gateway, body: Any, field: str | None
) -> None:
    status, answer, _ = await _post(gateway.url + "/v1/signup/tokens", body)
    assert status == 400 and answer["field"] == field
    assert not [k async for k in gateway.redis.scan_iter(match=f"{gateway.keys.prefix}:*")]


async def test_guessing_tokens_is_cut_off(gw_settings: Settings) -> None:
    async with own_gateway(gw_settings.replace(auth_failure_limit=3)) as gw:
        url = gw.url + "/v1/signup"
        statuses = [(await _post(url, {"token": f"st_guess{i}"}))[0] for i in range(5)]
        assert statuses == [401, 401, 401, 429, 429]
        _, issued, _ = await _post(gw.url + "/v1/signup/tokens")
        assert (await _post(url, {"token": issued["token"]}))[0] == 429  # blocked address
        assert (await _post(url, {"token": issued["token"]}, source_ip="127.0.0.5"))[0] == 201
