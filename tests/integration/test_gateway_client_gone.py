"""Round 10 of the outside attack runs: a client that closed its connection mid-body left
"redis unavailable" warnings and a 503 in the access log of the real gateway process (its
ConnectionResetError read as a dependency's failure), so any client could fake an outage in the
logs. It is the client's failure now."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.pipeline_support import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(90)]


async def test_a_client_gone_mid_body_is_not_logged_as_redis_down(stack: Stack) -> None:
    host, port = stack.client.base_url.removeprefix("http://").split(":")
    for method, route in (("PUT", "/v1/policy"), ("POST", "/v1/events:batch"),
                          ("POST", "/v1/events")):
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"{method} {route} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                     f"{stack.client._api_key}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: 1000\r\n\r\n{{\"a\": ".encode())
        await writer.drain()
        await asyncio.sleep(1.5)
        writer.close()
    await asyncio.sleep(1.5)
    logs = stack.gateway.log()
    assert "redis unavailable" not in logs, logs[-3000:]
