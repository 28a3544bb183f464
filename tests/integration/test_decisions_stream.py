"""``GET /v1/decisions:stream``: server-sent events of a project's decisions, for approval UIs.

Verdicts come from FakeWorker (the worker's verdict store path) over the real gateway, Redis and
Tansu; approvals go through ``POST /v1/approvals/{id}``. Concurrent readers each get every event;
a reader whose gateway restarts resumes with ``Last-Event-ID`` and misses nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from tests.integration.gateway_support import (
    FakeWorker,
    Gateway,
    Tenant,
    event,
    make_tenant,
    own_gateway,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

PATH = "/v1/decisions:stream"


@dataclass
class Sse:
    id: str
    event: str
    data: dict[str, Any]


class Reader:
    """One SSE connection: ``await reader.take(n)`` returns the next n events."""

    def __init__(self, url: str, key: str, last_id: str | None = None) -> None:
        self.url, self.key, self.last_id = url, key, last_id
        self.session = aiohttp.ClientSession()
        self.resp: aiohttp.ClientResponse | None = None

    async def open(self) -> Reader:
        """Connect; once the headers are in, the stream's starting point ("now") is fixed."""
        headers = {"Authorization": f"Bearer {self.key}"}
        if self.last_id:
            headers["Last-Event-ID"] = self.last_id
        self.resp = await self.session.get(self.url + PATH + "?timeout_s=60", headers=headers)
        assert self.resp.status == 200, await self.resp.text()
        assert self.resp.content_type == "text/event-stream"
        assert self.resp.headers.get("X-Trace-Id")
        return self

    async def take(self, n: int, timeout_s: float = 20.0) -> list[Sse]:
        assert self.resp is not None
        out: list[Sse] = []
        fields: dict[str, str] = {}
        async with asyncio.timeout(timeout_s):
            while len(out) < n:
                line = (await self.resp.content.readline()).decode().rstrip("\n")
                if line == "":
                    if "data" in fields:
                        out.append(Sse(fields.get("id", ""), fields.get("event", "message"),
                                       orjson.loads(fields["data"])))
                    fields = {}
                elif not line.startswith(":") and ":" in line:
                    name, _, value = line.partition(":")
                    fields[name] = value.lstrip(" ")
        return out

    async def close(self) -> None:
        if self.resp is not None:
            self.resp.close()
        await self.session.close()


async def test_two_readers_see_verdicts_and_approvals(gateway: Gateway, tenant: Tenant) -> None:
    readers = [await Reader(gateway.url, tenant.api_key).open() for _ in range(2)]
    try:
        async with FakeWorker(gateway.settings, gateway.redis):
            paused = event(payload={"decide": "pause"})
            flagged = event(payload={"decide": "flag"})
            allowed = event()
            for ev in (paused, allowed, flagged):
                assert (await tenant.client.send(ev, wait_ms=3000)).status == 200
        assert (await tenant.client.decide(paused["event_id"], "approve", "ok")).status == 200
        for reader in readers:
            got = await reader.take(3)
            assert [(e.event, e.data["event_id"]) for e in got] == [
                ("verdict", paused["event_id"]), ("verdict", flagged["event_id"]),
                ("approval", paused["event_id"]),
            ]  # the allow verdict is not a decision
            assert got[0].data["action"] == "pause" and got[2].data["decision"] == "approve"
            assert got[2].data["reason"] == "ok"
            assert len({e.id for e in got}) == 3
    finally:
        for reader in readers:
            await reader.close()


async def test_a_reader_resumes_across_a_gateway_restart(gateway: Gateway, tenant: Tenant) -> None:
    settings = gateway.settings
    async with own_gateway(settings) as first:
        reader = await Reader(first.url, tenant.api_key).open()
        async with FakeWorker(settings, gateway.redis):
            one = event(payload={"decide": "pause"})
            assert (await tenant.client.send(one, wait_ms=3000)).status == 200
            [seen] = await reader.take(1)
            await reader.close()
    # that gateway is gone; decisions go on (another gateway serves the approvals)
    assert (await tenant.client.decide(one["event_id"], "reject")).status == 200
    async with own_gateway(settings) as second:
        resumed = await Reader(second.url, tenant.api_key, last_id=seen.id).open()
        try:
            [missed] = await resumed.take(1)
            assert (missed.event, missed.data["event_id"]) == ("approval", one["event_id"])
            assert missed.data["decision"] == "reject"
        finally:
            await resumed.close()


async def test_other_projects_and_ingest_keys_see_nothing(gateway: Gateway, tenant: Tenant) -> None:
    other = await make_tenant(gateway)
    watcher = await Reader(gateway.url, other.api_key).open()
    try:
        async with FakeWorker(gateway.settings, gateway.redis):
            ev = event(payload={"decide": "pause"})
            assert (await tenant.client.send(ev, wait_ms=3000)).status == 200
        with pytest.raises(TimeoutError):
            await watcher.take(1, timeout_s=1.5)
    finally:
        await watcher.close()
        await other.client.close()
    from ratchet.platform.api_keys import create_key

    _, ingest = await create_key(gateway.redis, gateway.keys, tenant.project_id, "ingest", None)
    async with aiohttp.ClientSession() as http:
        async with http.get(gateway.url + PATH, headers={"Authorization": f"Bearer {ingest}"}) as r:
            assert r.status == 403
        async with http.get(gateway.url + PATH) as r:
            assert r.status == 401
        bad = {"Authorization": f"Bearer {tenant.api_key}", "Last-Event-ID": "nope"}
        async with http.get(gateway.url + PATH, headers=bad) as r:
            body = await r.json()
            assert r.status == 400 and body["field"] == "Last-Event-ID"
        async with http.get(gateway.url + PATH + "?timeout_s=0",
                            headers={"Authorization": f"Bearer {tenant.api_key}"}) as r:
            assert r.status == 400 and (await r.json())["field"] == "timeout_s"


async def test_the_stream_ends_after_timeout_s(gateway: Gateway, tenant: Tenant) -> None:
    async with aiohttp.ClientSession() as http, http.get(
        gateway.url + PATH + "?timeout_s=1", headers={"Authorization": f"Bearer {tenant.api_key}"}
    ) as r:
        assert r.status == 200
        async with asyncio.timeout(10):
            body = await r.read()
    assert body.startswith(b"retry: 2000")


#: ``after`` values Redis refuses ("Invalid stream ID": a part over 2**64-1) or that are no entry
#: id at all. Each was answered 200 with ``retry:``, then the stream hung (attack run, F6).
BAD_AFTER = ("99999999999999999999-0", "1-18446744073709551616", "18446744073709551616-0",
             "1", "1-", "-1-0", "1-2-3", "now", "$", "+", "1-0\n", "1-0\r\n")


async def test_an_after_that_is_no_stream_id_is_a_400_before_the_stream(
        gateway: Gateway, tenant: Tenant) -> None:
    auth = {"Authorization": f"Bearer {tenant.api_key}"}
    async with aiohttp.ClientSession() as http:
        for after in BAD_AFTER:
            async with asyncio.timeout(10), http.get(
                    gateway.url + PATH, params={"after": after, "timeout_s": "2"},
                    headers=auth) as r:
                assert r.status == 400, (after, r.status, await r.text())
                assert r.content_type == "application/json"
                body = await r.json()
                assert body["field"] == "after", body
                assert "<ms>-<seq>" in body["message"] and str(2**64 - 1) in body["message"], body
        async with http.get(gateway.url + PATH, headers={
                **auth, "Last-Event-ID": "1-18446744073709551616"}) as r:
            assert r.status == 400 and (await r.json())["field"] == "Last-Event-ID"
        # an empty Last-Event-ID falls back to ``after``, and the error names the one used
        async with http.get(gateway.url + PATH, params={"after": "now"}, headers={
                **auth, "Last-Event-ID": ""}) as r:
            assert r.status == 400 and (await r.json())["field"] == "after"
        # the largest id Redis takes is fine (nothing comes after it), and so is 0-0
        for after in (f"{2**64 - 1}-{2**64 - 1}", "0-0"):
            async with asyncio.timeout(10), http.get(
                    gateway.url + PATH, params={"after": after, "timeout_s": "1"},
                    headers=auth) as r:
                assert r.status == 200, (after, await r.text())
                assert (await r.read()).startswith(b"retry: 2000")


async def test_a_redis_error_after_the_stream_started_ends_it(
        gateway: Gateway, tenant: Tenant, caplog: pytest.LogCaptureFixture) -> None:
    """A read that Redis refuses once the headers are out cannot become an error answer: the
    stream ends (the client reconnects with Last-Event-ID) instead of staying open and silent
    past ``timeout_s``."""
    key = gateway.keys.decisions(tenant.project_id)
    async with aiohttp.ClientSession() as http, http.get(
            gateway.url + PATH + "?timeout_s=60",
            headers={"Authorization": f"Bearer {tenant.api_key}"}) as r:
        assert r.status == 200
        async with asyncio.timeout(10):
            assert await r.content.readline() == b"retry: 2000\n"
        # a real Redis error on the next read: the stream's key is no stream any more (WRONGTYPE)
        await gateway.redis.delete(key)
        await gateway.redis.set(key, b"not a stream")
        try:
            async with asyncio.timeout(10):  # well before timeout_s=60
                rest = await r.read()
        finally:
            await gateway.redis.delete(key)
    assert b"stream ended by a server error" in rest, rest
    assert "decision stream of project" in caplog.text and "WRONGTYPE" in caplog.text
    assert "unhandled error" not in caplog.text
