"""Reads and configuration calls take ``api`` tokens by their size (models/ratelimit.py
``api_tokens``), in a bucket of their own.

Round 9 of the outside attack runs: unmetered reads (``GET /v1/approvals?limit=500``: 394 KB in
≈ 60 ms of gateway time; decision streams replayed from the start; 256-rule policies stored in a
loop) put another tenant's verdicts at a p50 of 0.2–7 s. A call now takes one token before its
work and one per KB it sent and returned after it — below zero if need be, so the project's next
calls wait — and a decision stream charges what it writes and ends once the bucket is spent.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import pytest

from models.ratelimit import API_BYTES_PER_TOKEN, api_tokens
from ratchet.config.settings import Settings
from tests.integration.gateway_support import (
    Gateway,
    Tenant,
    event,
    head_without_body,
    make_tenant,
    own_gateway,
)

pytestmark = pytest.mark.kafka


async def _call(gateway: Gateway, tenant: Tenant, method: str, path: str,
                **kw: Any) -> tuple[int, Any, dict[str, str], int]:
    headers = {"Authorization": f"Bearer {tenant.api_key}", **kw.pop("headers", {})}
    async with aiohttp.ClientSession() as http, http.request(
        method, gateway.url + path, headers=headers, **kw
    ) as resp:
        raw = await resp.read()
        body = await resp.json() if resp.content_type == "application/json" else raw
        return resp.status, body, dict(resp.headers), len(raw)


def _policy(rules: int) -> str:
    """A valid policy of ``rules`` literal rules, ≈ 330 bytes each."""
    return "version = 1\n" + "".join(
        f'[[guardrails.pattern.rules]]\nid = "r{i}"\nliteral = "{"x" * 260}{i}"\n'
        for i in range(rules))


async def test_api_calls_take_tokens_by_their_size(gateway: Gateway, tenant: Tenant) -> None:
    """Lowest tier: the api bucket holds 120 tokens, like its ingest bucket."""
    status, _, headers, _ = await _call(gateway, tenant, "GET", "/v1/whoami")
    assert status == 200 and headers["X-RateLimit-Limit"] == "120"
    assert headers["X-RateLimit-Remaining"] == "119"  # a small answer: one token
    text = _policy(100)  # ≈ 33 KB sent: 33 tokens more
    status, body, headers, size = await _call(gateway, tenant, "PUT", "/v1/policy", data=text,
                                              headers={"Content-Type": "application/toml"})
    assert status == 200, body
    # at least what it sent and what came back (more when parsing it measured more CPU than
    # that many tokens: models/ratelimit.py work_tokens)
    left = 119 - api_tokens(len(text.encode()), size)
    assert int(headers["X-RateLimit-Remaining"]) - left <= 2, (headers, left)  # refill
    left = int(headers["X-RateLimit-Remaining"])
    if left == 0:  # a loaded machine: parsing measured more CPU than the bucket held
        status, body, headers, _ = await _call(gateway, tenant, "GET", "/v1/whoami")
        assert status == 429, body
        await asyncio.sleep(int(headers["Retry-After"]) + 1)
        left = 4  # at most what the extra second and the rounding refilled (2 a second)
    # reading it back returns the TOML and its JSON form (≈ 70 KB): more than is left — served,
    # and the bucket goes below zero
    status, body, headers, size = await _call(gateway, tenant, "GET", "/v1/policy",
                                              headers={"Accept": "application/json"})
    assert status == 200 and size > left * API_BYTES_PER_TOKEN, (size, left)
    assert headers["X-RateLimit-Remaining"] == "0"
    # so the next call waits, whatever its size, saying why and for how long
    status, body, headers, _ = await _call(gateway, tenant, "GET", "/v1/whoami")
    assert status == 429, body
    assert "per 1,024 bytes" in body["message"] and int(headers["Retry-After"]) >= 1, body
    # events have their own bucket
    sent_event = await tenant.client.send(event(tenant.agent_id))
    assert sent_event.status in (200, 202), sent_event.body


def _heavy_policy(rules: int, *, refused: bool = False) -> str:
    """``rules`` rules of ≈ 1,500 RE2 instructions each (≈ 80 bytes of TOML a rule), fresh
    patterns (no compile cache); ``refused``: one more rule RE2 cannot compile, last."""
    salt = uuid.uuid4().hex[:8]
    text = "version = 1\n" + "".join(
        f'[[guardrails.pattern.rules]]\nid = "h{i}"\n'
        f'regex = "[a-c]*a[a-c]{{{900 + i % 90}}}b[a-c]{{600}}z{salt}"\n' for i in range(rules))
    if refused:
        text += '[[guardrails.pattern.rules]]\nid = "bad"\nregex = "(a)\\\\1"\n'
    return text


@pytest.mark.parametrize("refused", [False, True], ids=["stored", "refused-at-its-last-rule"])
async def test_a_policy_write_is_charged_its_compile_work(
    gateway: Gateway, tenant: Tenant, refused: bool
) -> None:
    """Round 10 noted 256-rule policies under-priced: ≈ 20 KB (20 tokens by its bytes) that take
    ≈ 30 ms to compile here (≈ 1.6 ms per token where a read costs ≈ 0.15). A write is now
    charged its measured parsing CPU when that is more — also when the policy is refused at its
    last rule, after compiling all the others."""
    text = _heavy_policy(255 if refused else 256, refused=refused)
    status, body, headers, size = await _call(gateway, tenant, "PUT", "/v1/policy", data=text,
                                           headers={"Content-Type": "application/toml"})
    assert status == (400 if refused else 200), body
    if refused:
        assert body["field"] == "guardrails.pattern.rules[255].regex", body
    by_bytes = api_tokens(len(text.encode()), size)  # what it sent and what came back
    # its work takes far more than its bytes' tokens (≈ 220 here): the bucket is spent, where
    # by its bytes alone 119 - by_bytes (50 stored, 98 refused) would be left
    assert int(headers["X-RateLimit-Remaining"]) <= 119 - by_bytes - 30, (headers, by_bytes)
    status, body, _, _ = await _call(gateway, tenant, "GET", "/v1/whoami")
    assert status == 429, body


async def test_a_decision_stream_ends_once_the_bucket_is_spent(
    gateway: Gateway, tenant: Tenant
) -> None:
    """A stream replayed from the start charges what it writes: with 2,000 decisions of ≈ 300
    bytes (≈ 600 KB) and 120 tokens it stops early, saying so; the next call waits."""
    key = gateway.keys.decisions(tenant.project_id)
    body = b'{"event_id": "e", "action": "pause", "reasons": ["' + b"r" * 250 + b'"]}'
    async with gateway.redis.pipeline(transaction=False) as pipe:
        for _ in range(2_000):
            pipe.xadd(key, {"kind": "verdict", "body": body})
        await pipe.execute()
    status, got, _, size = await _call(
        gateway, tenant, "GET", "/v1/decisions:stream?after=0-0&timeout_s=3")
    assert status == 200, got
    assert b"api rate limit is spent" in got, got[-300:]
    assert size < 200 * API_BYTES_PER_TOKEN, size  # cut short: ≈ 120 tokens' worth
    status, got, _, _ = await _call(gateway, tenant, "GET", "/v1/whoami")
    assert status == 429, got


async def test_api_calls_in_flight_are_capped_per_project(gw_settings: Settings) -> None:
    """An answer's size is charged after it is built: a burst of calls all pass the first token
    (round 10). A project has at most ``max_api_calls_per_project`` calls in flight on a
    gateway; beyond, 429 before any work; a call that ends — answered or dropped by its client —
    gives its place back; another project is not affected."""
    async with own_gateway(gw_settings.replace(max_api_calls_per_project=2)) as gw:
        a, b = await make_tenant(gw), await make_tenant(gw)
        try:
            host, port = gw.url.removeprefix("http://").split(":")
            stalled = []
            for _ in range(2):  # two policy writes whose bodies never finish arriving
                _, writer = await asyncio.open_connection(host, int(port))
                writer.write(f"PUT /v1/policy HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                             f"{a.api_key}\r\nContent-Type: application/toml\r\n"
                             f"Content-Length: 1000\r\n\r\nversion = 1\n".encode())
                await writer.drain()
                stalled.append(writer)
            await asyncio.sleep(0.5)
            status, body, headers, _ = await _call(gw, a, "GET", "/v1/whoami")
            assert status == 429 and "in flight" in body["message"], body
            assert headers["Retry-After"] == "1"
            status, _, _, _ = await _call(gw, b, "GET", "/v1/whoami")  # B: its own count
            assert status == 200
            for writer in stalled:  # the clients give up: their calls end
                writer.close()
            await asyncio.sleep(0.5)
            status, _, _, _ = await _call(gw, a, "GET", "/v1/whoami")
            assert status == 200
        finally:
            await a.client.close()
            await b.client.close()


async def test_an_ingest_keys_reads_take_the_ingest_bucket(
    gateway: Gateway, tenant: Tenant
) -> None:
    """Round 10: an agent's ingest key reading in a loop spent the project's api bucket, so its
    admins' approvals, policy changes and key revocations got 429. An ingest key's calls now
    take the ingest bucket; the admin's api bucket is untouched."""
    status, body, _, _ = await _call(gateway, tenant, "POST", "/v1/keys",
                                     json={"role": "ingest", "agent_id": tenant.agent_id})
    assert status == 201, body
    agent = Tenant(tenant.project_id, body["api_key"], tenant.agent_id, tenant.secret,
                   tenant.client)
    for _ in range(130):  # more than the lowest tier's 120
        status, _, headers, _ = await _call(gateway, agent, "GET", "/v1/whoami")
        if status == 429:
            break
    assert status == 429, "the ingest key's reads were never limited"
    sent = await tenant.client.send(event(tenant.agent_id))  # events share that bucket
    assert sent.status == 429, sent.body
    status, body, headers, _ = await _call(gateway, tenant, "GET", "/v1/approvals")
    assert status == 200, body  # the admin's bucket is its own
    assert int(headers["X-RateLimit-Remaining"]) >= 100, headers


async def test_an_admin_body_over_its_limit_is_refused_unread(
    gateway: Gateway, tenant: Tenant
) -> None:
    """Round 10: an approval carrying a 3.8 MB unknown field was read and parsed (≈ 65 ms)
    before its size was charged. Administrative bodies are capped at 64 KB: 413 at once, with or
    without an Idempotency-Key (which reads the body to fingerprint it), no byte of it sent."""
    for extra in ("", "Idempotency-Key: k-1\r\n"):
        head = await head_without_body(gateway.url, "POST", "/v1/approvals/e-1", tenant.api_key,
                                       3_800_000, extra)
        assert head.startswith(b"HTTP/1.1 413"), (extra, head)

