"""The gateway's access log: one JSON line per request, with the project, never a credential.

The gateway runs in-process with the access logger ``ratchet gateway`` installs; a real gateway
child process is checked too (its log file must hold parseable JSON access lines).
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from gateway.access_log import ACCESS_LOGGER, AccessLogger
from gateway.app import build_app
from ratchet.config.settings import Settings
from ratchet.platform.provisioning import create_project
from ratchet.sandbox.process import gateway_process, wait_http_ready, worker_env
from ratchet.sandbox.servers import free_port
from ratchet.store.keys import Keys
from ratchet.telemetry.logs import JsonLineFormatter

pytestmark = pytest.mark.kafka


@pytest.fixture
def access_lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonLineFormatter())
    logger = logging.getLogger(ACCESS_LOGGER)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _parse(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


async def test_access_lines_name_project_status_trace_and_hide_credentials(
    gw_settings: Settings, access_lines: io.StringIO
) -> None:
    server = TestServer(build_app(gw_settings), host="127.0.0.1")
    await server.start_server(access_log_class=AccessLogger,
                              access_log=logging.getLogger(ACCESS_LOGGER))
    assert gw_settings.redis_url
    redis = Redis.from_url(gw_settings.redis_url)
    try:
        project_id, api_key = await create_project(redis, Keys(gw_settings.key_prefix), "acme")
        base = str(server.make_url("")).rstrip("/")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/v1/whoami",
                                headers={"Authorization": f"Bearer {api_key}"}) as r:
                assert r.status == 200
                trace_ok = r.headers["X-Trace-Id"]
            # a credential in the query (a parameter the route does not take: 400) is not
            # written to the access line either
            async with http.get(f"{base}/v1/whoami?token={api_key}&x=1",
                                headers={"Authorization": f"Bearer {api_key}"}) as r:
                assert r.status == 400
            async with http.get(f"{base}/v1/whoami",
                                headers={"Authorization": "Bearer rk_wrong_key_secret"}) as r:
                assert r.status == 401
            async with http.get(f"{base}/no/such/route") as r:
                assert r.status == 404
    finally:
        await redis.aclose()
        await server.close()

    text = access_lines.getvalue()
    assert api_key not in text and "rk_wrong_key_secret" not in text and "Bearer" not in text
    lines = _parse(access_lines)
    assert [(x["method"], x["path"], x["status"]) for x in lines] == [
        ("GET", "/v1/whoami", 200), ("GET", "/v1/whoami", 400), ("GET", "/v1/whoami", 401),
        ("GET", "/no/such/route", 404),
    ]
    ok, _, denied, missing = lines
    assert ok["project"] == project_id and ok["trace_id"] == trace_ok
    assert ok["route"] == "/v1/whoami" and ok["logger"] == ACCESS_LOGGER
    assert ok["duration_ms"] > 0 and ok["bytes"] > 0
    assert denied["project"] == "" and len(denied["trace_id"]) >= 8
    assert missing["route"] == "unmatched"


async def test_a_gateway_process_writes_json_access_lines(gw_settings: Settings) -> None:
    port = free_port()
    env = worker_env(
        redis_url=gw_settings.redis_url or "", kafka_bootstrap=gw_settings.kafka_bootstrap or "",
        key_prefix=gw_settings.key_prefix, gateway_port=port, log_format="json",
        topic_ingest=gw_settings.topic_ingest, topic_verdicts=gw_settings.topic_verdicts,
        topic_feedback=gw_settings.topic_feedback, topic_audit=gw_settings.topic_audit,
    )
    child = gateway_process(env).start()
    try:
        await wait_http_ready(f"http://127.0.0.1:{port}/healthz", child, 60)
        async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{port}/v1/whoami", headers={"Authorization": "Bearer rk_nope"}
        ) as r:
            assert r.status == 401
    finally:
        child.stop(keep_log=True)
    log = child.log()
    try:
        records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        access = [r for r in records if r.get("logger") == ACCESS_LOGGER]
        assert any(r["path"] == "/v1/whoami" and r["status"] == 401 for r in access), log
        assert "rk_nope" not in log
    finally:
        os.unlink(child.log_path)
