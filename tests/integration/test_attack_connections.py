"""Attacks on the gateway's connections and held requests (benchmarks/attack.py findings).

Real gateway (in-process aiohttp on a loopback port) against the real Redis and Tansu of
tests/conftest.py. Each test failed on the code before its mechanism (docs/security.md,
"Attack run"): aiohttp's own 400s echoed the request head as text/plain; a head or body sent a
byte at a time held its connection for an hour (aiohttp's keep-alive default); one address could
hold any number of connections; decision streams and long polls were unbounded per project; a
Redis that answered garbage made a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from ratchet.config.settings import Settings
from tests.integration.gateway_support import Gateway, Tenant, make_tenant, own_gateway

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

MARK = b"ZQXJECHO"


def _parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


async def _exchange(gw: Gateway, data: bytes, *, pause_after: int | None = None,
                    local: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` (the first ``pause_after`` bytes, a pause, then the rest); the answer."""
    assert gw.server.port is not None
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", gw.server.port, local_addr=(local, 0) if local else None)
    try:
        if pause_after is None:
            writer.write(data)
        else:
            writer.write(data[:pause_after])
            await writer.drain()
            await asyncio.sleep(0.3)  # the handler is running and reading the body
            writer.write(data[pause_after:])
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 15)
    finally:
        writer.close()
    return _parse(answer)


@contextlib.asynccontextmanager
async def _gateway(settings: Settings, **changes: object) -> AsyncIterator[tuple[Gateway,
                                                                                  Tenant]]:
    async with own_gateway(settings.replace(**changes)) as gw:
        tenant = await make_tenant(gw)
        try:
            yield gw, tenant
        finally:
            await tenant.client.close()


def _json_error(headers: dict[str, str], body: bytes) -> dict[str, object]:
    assert headers["content-type"].startswith("application/json"), headers
    parsed = orjson.loads(body)
    assert isinstance(parsed, dict) and {"error", "field", "message"} == parsed.keys()
    return parsed


# --- parser errors: our JSON, nothing echoed ------------------------------------------------

def _malformed(key: str) -> list[tuple[bytes, int, str, int | None]]:
    auth = f"Authorization: Bearer {key}\r\n".encode()
    return [
        (b"GET /" + MARK + b" HTTP/9.9 x\r\n\r\n", 400, "request line", None),
        (b"GET /v1/whoami HTTP/1.1\r\n" + auth + b"X-" + MARK + b"\x01: 1\r\n\r\n", 400,
         "characters HTTP does not allow", None),
        (b"GET /v1/whoami HTTP/1.1\r\n" + auth + b"X-Big: " + MARK + b"a" * 9000
         + b"\r\n\r\n", 431, "too long", None),
        (b"GET /v1/whoami HTTP/1.1\r\n" + auth + b"".join(
            b"X-%s-%d: 1\r\n" % (MARK, i) for i in range(300)) + b"\r\n", 431,
         "too many header lines", None),
        (b"G" + MARK + b"\x00T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "method", None),
        # bad chunked encoding in the same packet as the head (the parser refuses it) ...
        (b"POST /v1/events HTTP/1.1\r\nHost: x\r\n" + auth
         + b"Transfer-Encoding: chunked\r\n\r\nzz"
         + MARK + b"\r\n", 400, "chunked", None),
    ]


async def test_parser_errors_are_json_and_echo_nothing(gateway: Gateway, tenant: Tenant) -> None:
    for data, status, says, pause in _malformed(tenant.api_key):
        got, headers, body = await _exchange(gateway, data, pause_after=pause)
        assert got == status, (data[:60], got, body[:200])
        parsed = _json_error(headers, body)
        assert MARK not in body and MARK.lower() not in body.lower(), body
        assert tenant.api_key.encode() not in body
        assert says in str(parsed["message"]), parsed
        assert headers["server"] == "ratchet"  # (and the connection was closed: read() ended)


async def test_bad_chunked_body_after_the_head_is_400_not_500(
        gateway: Gateway, tenant: Tenant) -> None:
    """... and arriving after the handler started reading it (it used to be a 500)."""
    data = (b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + tenant.api_key.encode() + b"\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + b"zz" + MARK + b"\r\n")
    status, headers, body = await _exchange(gateway, data, pause_after=data.index(b"zz"))
    assert status == 400, body
    parsed = _json_error(headers, body)
    assert "chunked" in str(parsed["message"]) and MARK not in body


# --- slow heads, idle connections, slow bodies ----------------------------------------------

async def _closed_within(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         seconds: float, trickle: bytes = b"") -> tuple[float, bytes]:
    """Trickle a byte every 0.2 s until the server closes; (seconds it took, what it sent)."""
    start = time.monotonic()
    got = b""
    while time.monotonic() - start < seconds:
        if trickle:
            with contextlib.suppress(ConnectionError):
                writer.write(trickle)
        try:
            chunk = await asyncio.wait_for(reader.read(65536), 0.2)
        except TimeoutError:
            continue
        except ConnectionError:
            break
        if not chunk:
            break
        got += chunk
    return time.monotonic() - start, got


async def test_slow_heads_and_idle_connections_are_closed(gw_settings: Settings) -> None:
    async with _gateway(gw_settings, gateway_head_timeout_s=1.5) as (gw, tenant):
        assert gw.server.port is not None
        loris = await asyncio.open_connection("127.0.0.1", gw.server.port)
        loris[1].write(b"GET /v1/whoami HTTP/1.1\r\nHost: x\r\n")
        idle = await asyncio.open_connection("127.0.0.1", gw.server.port)
        took, _ = await _closed_within(*loris, 10, trickle=b"X")
        assert took < 4, f"a head sent a byte at a time held its connection {took:.1f} s"
        took_idle, _ = await _closed_within(*idle, 10)
        assert took_idle < 4
        for _, writer in (loris, idle):
            writer.close()
        # a client that keeps its connection busy is not cut off
        answer = await tenant.client.whoami()
        await asyncio.sleep(1.0)
        assert answer.status == 200 and (await tenant.client.whoami()).status == 200


async def test_slow_body_is_408_within_the_body_timeout(gw_settings: Settings) -> None:
    async with _gateway(gw_settings, gateway_body_timeout_s=1.0) as (gw, tenant):
        assert gw.server.port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.port)
        writer.write(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                     + tenant.api_key.encode() + b"\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 500\r\n\r\n{")
        took, got = await _closed_within(reader, writer, 20, trickle=b" ")
        writer.close()
        status, headers, body = _parse(got)
        assert status == 408, got[:300]
        assert "did not arrive within 1 s" in str(_json_error(headers, body)["message"])
        assert took < 1.0 + 10 + 3  # the body timeout, then aiohttp's bounded lingering read


# --- connections per address ----------------------------------------------------------------

async def test_connections_per_address_are_capped(gw_settings: Settings) -> None:
    async with _gateway(gw_settings, gateway_max_connections_per_ip=5) as (gw, _tenant):
        assert gw.server.port is not None
        held = [await asyncio.open_connection("127.0.0.1", gw.server.port) for _ in range(5)]
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.port)
        answer = await asyncio.wait_for(reader.read(), 5)  # answered and closed at once
        writer.close()
        status, headers, body = _parse(answer)
        assert status == 429 and headers["retry-after"] == "1"
        assert "too many open connections from this address (at most 5)" in str(
            _json_error(headers, body)["message"])
        # another address is another client
        status, _, _ = await _exchange(
            gw, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            local="127.0.0.2")
        assert status == 200
        # a closed connection frees its place
        held[0][1].close()
        await asyncio.sleep(0.3)
        status, _, _ = await _exchange(
            gw, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status == 200
        for _, w in held[1:]:
            w.close()


# --- held requests per project --------------------------------------------------------------

async def test_held_requests_are_capped_per_project(gw_settings: Settings) -> None:
    async with _gateway(gw_settings, max_held_requests_per_project=2) as (gw, tenant):
        other = await make_tenant(gw)
        headers = {"Authorization": f"Bearer {tenant.api_key}"}
        async with aiohttp.ClientSession() as http:
            streams = [await http.get(gw.url + "/v1/decisions:stream?timeout_s=20",
                                      headers=headers) for _ in range(2)]
            try:
                assert [s.status for s in streams] == [200, 200]
                async with http.get(gw.url + "/v1/decisions:stream?timeout_s=20",
                                    headers=headers) as third:
                    body = await third.json()
                    assert third.status == 429 and third.headers["Retry-After"] == "1"
                    assert "already holds 2 decision streams" in body["message"]
                # a long poll over the cap answers at once instead of waiting 3 s
                start = time.monotonic()
                async with http.get(gw.url + "/v1/verdicts/nope?wait_ms=3000",
                                    headers=headers) as poll:
                    assert poll.status == 404
                assert time.monotonic() - start < 1.5
                # another project is not affected: its long poll waits its full time
                start = time.monotonic()
                async with http.get(gw.url + "/v1/verdicts/nope?wait_ms=1000", headers={
                        "Authorization": f"Bearer {other.api_key}"}) as poll:
                    assert poll.status == 404
                assert time.monotonic() - start >= 0.9
            finally:
                for s in streams:
                    s.close()
            await asyncio.sleep(0.5)  # the streams notice their clients left
            async with http.get(gw.url + "/v1/decisions:stream?timeout_s=1",
                                headers=headers) as again:
                assert again.status == 200
        await other.client.close()


# --- a Redis that answers garbage is unavailability, not a bug ------------------------------

class GarbleProxy:
    """A TCP proxy in front of the real Redis; while ``garble`` is set it answers every command
    with bytes that are no Redis reply (as a broken proxy or another service on the port would)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.garble = False
        self.server: asyncio.Server | None = None

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    answer: asyncio.StreamWriter | None) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await src.read(65536):
                if answer is not None and self.garble:
                    answer.write(b"?not a redis reply\r\n")
                else:
                    dst.write(chunk)
        dst.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._pipe(reader, up_writer, writer),
                             self._pipe(up_reader, writer, None))

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_redis_protocol_error_is_503_with_retry_after(gw_settings: Settings) -> None:
    assert gw_settings.redis_url is not None
    proxy = GarbleProxy(int(gw_settings.redis_url.rsplit(":", 1)[1].split("/")[0]))
    port = await proxy.start()
    try:
        async with _gateway(gw_settings, redis_url=f"redis://127.0.0.1:{port}/0") as (_gw, t):
            assert (await t.client.whoami()).status == 200
            proxy.garble = True
            for answer in (await t.client.whoami(), await t.client.verdict("e1"),
                           await t.client.approvals()):
                assert answer.status == 503, answer.body
                assert answer.headers["Retry-After"] == "1"
                assert answer.body["error"] == "unavailable"
                assert "Redis is unavailable (InvalidResponse)" in answer.body["message"]
            proxy.garble = False
    finally:
        await proxy.stop()


# --- a burst of requests, and open streams, never exhaust the Redis pool --------------------

async def test_a_burst_waits_for_redis_connections_instead_of_failing(
        gw_settings: Settings) -> None:
    """redis-py's default pool refused a command at once when all its connections were busy
    (MaxConnectionsError → 503 for every tenant); the pool now waits for a free connection."""
    async with _gateway(gw_settings, redis_max_connections=3,
                        max_held_requests_per_project=0) as (gw, tenant):
        headers = {"Authorization": f"Bearer {tenant.api_key}"}
        async with aiohttp.ClientSession(
                headers=headers, connector=aiohttp.TCPConnector(limit=0)) as http:
            async def one(i: int) -> int:
                async with http.get(gw.url + f"/v1/verdicts/burst-{i}") as resp:
                    await resp.read()
                    return resp.status

            assert set(await asyncio.gather(*(one(i) for i in range(60)))) == {404}
            # open decision streams do not hold pooled connections while they wait
            streams = [await http.get(gw.url + "/v1/decisions:stream?timeout_s=20")
                       for _ in range(8)]
            try:
                assert {s.status for s in streams} == {200}
                start = time.monotonic()
                assert set(await asyncio.gather(*(one(i) for i in range(30)))) == {404}
                assert time.monotonic() - start < 3
            finally:
                for s in streams:
                    s.close()
