"""Dependencies down: quick, clear 503s (never a hang); health, metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest

from gateway.metrics import GATEWAY_ERRORS
from gateway.openapi import build_openapi
from ratchet.config.settings import Settings
from ratchet.kafka.topics import ensure_topics
from ratchet.sandbox.servers import RedisServer, TansuServer, free_port
from ratchet.store.redis import connect
from tests.integration.gateway_support import (
    Gateway,
    Tenant,
    event,
    make_tenant,
    own_gateway,
    start_gateway,
)

pytestmark = pytest.mark.kafka

DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


async def _get(url: str) -> tuple[int, dict[str, object], float]:
    start = time.monotonic()
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.json(), time.monotonic() - start


async def test_health_and_ready(gateway: Gateway) -> None:
    status, body, _ = await _get(gateway.url + "/healthz")
    assert (status, body) == (200, {"status": "ok"})
    status, body, _ = await _get(gateway.url + "/readyz")
    assert status == 200 and body == {"status": "ready", "checks": {"kafka": "ok", "redis": "ok"}}


async def test_redis_unreachable_is_503_fast(gw_settings: Settings) -> None:
    settings = gw_settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0",
                                   redis_timeout_s=0.5)
    server = await start_gateway(settings)
    try:
        url = str(server.make_url("")).rstrip("/")
        status, body, took = await _get(url + "/readyz")
        assert status == 503 and took < 2.0
        checks = body["checks"]
        assert isinstance(checks, dict)
        assert checks["kafka"] == "ok" and checks["redis"].startswith("down")
        async with aiohttp.ClientSession() as http:
            start = time.monotonic()
            async with http.get(url + "/v1/whoami",
                                headers={"Authorization": "Bearer rk_x"}) as resp:
                assert resp.status == 503 and time.monotonic() - start < 2.0
                assert (await resp.json())["error"] == "unavailable"
                assert resp.headers["X-Trace-Id"]
                assert resp.headers["Retry-After"] == "1"
        assert (await _get(url + "/healthz"))[0] == 200
    finally:
        await server.close()


#: A script that keeps Redis busy for ``ARGV[1]`` seconds (the server's clock).
_SPIN = ("local t = tonumber(redis.call('TIME')[1]) "
         "while tonumber(redis.call('TIME')[1]) < t + tonumber(ARGV[1]) do end return 1")


async def test_redis_busy_with_a_long_script_is_503_with_retry_after(
    gw_settings: Settings,
) -> None:
    """Redis answers BUSY to everyone while a script runs past its busy-reply threshold (a
    tenant's pathological batch, an operator's script): the gateway answers 503 with
    Retry-After, as for Redis down, not a 500; and recovers when the script ends."""
    with RedisServer(extra_args=("--busy-reply-threshold", "100")) as redis_server:
        async with own_gateway(gw_settings.replace(redis_url=redis_server.url)) as gw:
            tenant = await make_tenant(gw)
            spinner = connect(redis_server.url, timeout_s=30.0)
            try:
                async with aiohttp.ClientSession() as http:
                    headers = {"Authorization": f"Bearer {tenant.api_key}"}
                    async with http.get(gw.url + "/v1/whoami", headers=headers) as resp:
                        assert resp.status == 200
                    spin = asyncio.create_task(spinner.eval(_SPIN, 0, 3))
                    await asyncio.sleep(0.6)  # past the 100 ms threshold: BUSY for everyone
                    async with http.get(gw.url + "/v1/whoami", headers=headers) as resp:
                        body = await resp.json()
                        assert (resp.status, body["error"]) == (503, "unavailable"), body
                        assert resp.headers["Retry-After"] == "1"
                    assert await spin == 1
                    async with http.get(gw.url + "/v1/whoami", headers=headers) as resp:
                        assert resp.status == 200
            finally:
                await tenant.client.close()
                await spinner.aclose()


def _redis_failures() -> float:
    return GATEWAY_ERRORS.labels("redis_unavailable")._value.get()


async def test_every_503_for_redis_is_counted_once(gw_settings: Settings) -> None:
    """``ratchet_gateway_errors_total{kind="redis_unavailable"}`` counts each request Redis
    failed, whichever floor translated the failure (a store's 503, the rate limiter's, the
    middleware's): three refused requests, three counts (an audit saw 2 for 3)."""
    with RedisServer(extra_args=("--busy-reply-threshold", "100")) as redis_server:
        async with own_gateway(gw_settings.replace(redis_url=redis_server.url)) as gw:
            tenant = await make_tenant(gw)
            spinner = connect(redis_server.url, timeout_s=30.0)
            try:
                assert (await tenant.client.whoami()).status == 200
                spin = asyncio.create_task(spinner.eval(_SPIN, 0, 3))
                await asyncio.sleep(0.6)  # BUSY for everyone (the reply listener only reads)
                before = _redis_failures()
                answers = [await tenant.client.whoami(),
                           await tenant.client.send(event()),
                           await tenant.client.engine_override(),
                           await tenant.client.approvals()]
                counted = _redis_failures() - before
                assert [a.status for a in answers] == [503] * 4, [a.body for a in answers]
                assert counted == 4
                assert await spin == 1
            finally:
                await tenant.client.close()
                await spinner.aclose()


async def test_kafka_down_is_503_fast(gw_settings: Settings) -> None:
    with TansuServer() as broker:
        settings = gw_settings.replace(kafka_bootstrap=broker.bootstrap, kafka_send_timeout_s=1.0)
        await ensure_topics(broker.bootstrap, [settings.topic_ingest, settings.topic_verdicts,
                                               settings.topic_feedback], 1)
        server = await start_gateway(settings)
        try:
            url = str(server.make_url("")).rstrip("/")
            gw = Gateway(server, settings, *_redis_keys(settings))
            try:
                t = await make_tenant(gw)
                assert (await t.client.send(event())).status == 202
                broker.stop()
                status, body, took = await _get(url + "/readyz")
                assert status == 503 and took < 3.0
                checks = body["checks"]
                assert isinstance(checks, dict)
                assert checks["redis"] == "ok" and checks["kafka"].startswith("down")
                start = time.monotonic()
                answer = await t.client.send(event())
                assert answer.status == 503 and time.monotonic() - start < 3.0
                assert answer.body["error"] == "unavailable"
                assert "Kafka" in answer.body["message"]
                assert answer.headers.get("Retry-After") == "1"
                batch = await t.client.send_batch([event(), event()])
                assert batch.status == 503
                await t.client.close()
            finally:
                await gw.redis.aclose()
        finally:
            start = time.monotonic()
            await server.close()
            assert time.monotonic() - start < 15


def _redis_keys(settings: Settings) -> tuple[object, object]:
    from redis.asyncio import Redis

    from ratchet.store.keys import Keys

    assert settings.redis_url
    return Redis.from_url(settings.redis_url), Keys(settings.key_prefix)


async def test_metrics(gateway: Gateway, tenant: Tenant) -> None:
    await tenant.client.send(event())
    await tenant.client.verdict("unknown")
    async with aiohttp.ClientSession() as http, http.get(gateway.url + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    assert 'ratchet_http_requests_total{method="POST",route="/v1/events",status="202"}' in text
    assert 'route="/v1/verdicts/{event_id}"' in text
    assert 'ratchet_ingest_events_total{outcome="accepted"}' in text
    assert "ratchet_http_request_duration_seconds_bucket" in text
    assert tenant.api_key not in text and "/v1/verdicts/unknown" not in text


async def test_openapi_matches_docs_and_routes(gateway: Gateway) -> None:
    status, served, _ = await _get(gateway.url + "/openapi.json")
    assert status == 200 and served["openapi"] == "3.1.0"
    assert served == build_openapi(gateway.settings)
    assert json.loads(DOCS.read_text()) == build_openapi(Settings()), (
        "docs/openapi.json is stale: python -m gateway.openapi > docs/openapi.json"
    )
    app = gateway.server.app
    assert app is not None
    documented = {(path, method.upper()) for path, ops in build_openapi()["paths"].items()
                  for method in ops}
    served_routes = {(r.resource.canonical, r.method) for r in app.router.routes()
                     if r.resource is not None and r.method != "HEAD"}
    assert served_routes == documented


async def test_unknown_route_and_method_are_json(gateway: Gateway) -> None:
    status, body, _ = await _get(gateway.url + "/nope")
    assert status == 404 and body["error"] == "not_found"
    async with aiohttp.ClientSession() as http, http.delete(gateway.url + "/v1/events") as resp:
        assert resp.status == 405 and (await resp.json())["error"] == "method_not_allowed"


