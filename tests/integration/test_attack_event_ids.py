"""Issue 10, finding 3: one agent must not overwrite another agent's verdict by reusing its
event id (real gateway, worker, Redis and Tansu).

Event ids are bound per project: the first body accepted under an id owns it, and the same id
from another agent of the project — single or batch — is a 409. Failed on main ``ab1019b``:
bot-a's reuse was accepted and ``GET /v1/verdicts/E`` showed bot-a's ``allow``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from redis.asyncio import Redis
from yarl import URL

from ratchet.platform.provisioning import create_agent
from ratchet.sandbox.client import RatchetClient
from tests.integration.pipeline_support import Stack, worker_ready

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

POLICY = """
[[guardrails.pattern.rules]]
id = "sql-drop"
paths = ["sql"]
regex = '(?i)\\bdrop\\s+table\\b'
action = "reject"
"""

PAUSE_POLICY = POLICY.replace('action = "reject"', 'action = "pause"')


async def _agent(stack: Stack, agent_id: str) -> RatchetClient:
    redis = Redis.from_url(stack.redis_url)
    try:
        _, secret = await create_agent(redis, stack.keys, stack.client.project_id, agent_id)
    finally:
        await redis.aclose()
    a = stack.client
    return RatchetClient(a.base_url, a._api_key, agent_id, secret, project_id=a.project_id,
                         session=a._session)


def _ev(event_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": event_id, "run_id": "r1", "service": "db", "action": "query",
            "payload": payload}


async def test_another_agent_cannot_overwrite_a_verdict(stack: Stack) -> None:
    await worker_ready(stack)
    put = await stack.client.put_policy(POLICY)
    assert put.status == 200, put.body
    await asyncio.sleep(put.body["applies_within_s"] + 0.5)
    bot_x = await _agent(stack, "bot-x")
    bot_a = await _agent(stack, "bot-a")

    e = str(uuid.uuid4())
    first = await bot_x.send(_ev(e, {"sql": "DROP TABLE users"}), wait_ms=5000)
    assert first.status == 200 and first.body["verdict"]["action"] == "reject", first.body

    # another agent of the project reuses E with another body: single and batch → 409
    reuse = await bot_a.send(_ev(e, {"sql": "select 1"}), wait_ms=2000)
    assert reuse.status == 409, (reuse.status, reuse.body)
    assert reuse.body["field"] == "event_id" and "project" in reuse.body["message"], reuse.body
    batch = await bot_a.send_batch([_ev(e, {"sql": "select 1"}),
                                    _ev(str(uuid.uuid4()), {"sql": "select 2"})])
    assert batch.status == 200, batch.body
    assert [r["status"] for r in batch.body["results"]] == ["rejected", "accepted"], batch.body
    # even the very same body from another agent is someone else's event
    same = await bot_a.send(_ev(e, {"sql": "DROP TABLE users"}))
    assert same.status == 409, (same.status, same.body)
    # the owner's idempotent retry is still fine
    again = await bot_x.send(_ev(e, {"sql": "DROP TABLE users"}))
    assert again.status in (200, 202), again.body

    await asyncio.sleep(1.0)  # anything bot-a managed to get decided would have landed by now
    deadline = time.monotonic() + 5
    while True:
        got = await stack.client.verdict(e)
        if got.status == 200:
            break
        assert time.monotonic() < deadline, got.body
        await asyncio.sleep(0.1)
    assert got.body["verdict"]["agent_id"] == "bot-x", got.body
    assert got.body["verdict"]["action"] == "reject", got.body


#: Ids the ingest accepts that aiohttp's default ``{name}`` pattern (``[^{}/]+``) or a careless
#: percent-decoding would lose: braces, a literal ``%`` and literal escapes, dot segments, ``/``,
#: ``#`` and ``?`` (the last five need percent-encoding in a path, as any client does).
def _segment(event_id: str) -> str:
    """``event_id`` as one path segment: percent-encoded, dots too (``.`` and ``..`` are
    otherwise dot segments that URL normalisation removes)."""
    return quote(event_id, safe="").replace(".", "%2E")


AWKWARD_IDS = ("a{b}c", "{", "}{", "100%", "a%2Fb", "a%7Bb%7D", ".x", "..y", "x/y", "#", "?q=1")


async def test_every_accepted_event_id_can_be_looked_up_and_decided(stack: Stack) -> None:
    """Round 5, F5: an event whose id has ``{`` or ``}`` was accepted and paused, then answered
    the router's plain 404 on ``GET /v1/verdicts/{id}`` and ``POST /v1/approvals/{id}`` — it could
    never be approved or rejected. Every id the ingest accepts must reach both routes."""
    await worker_ready(stack)
    put = await stack.client.put_policy(PAUSE_POLICY)
    assert put.status == 200, put.body
    await asyncio.sleep(put.body["applies_within_s"] + 0.5)
    suffix = uuid.uuid4().hex[:6]  # fresh ids: event ids are bound per project
    ids = [i + suffix for i in AWKWARD_IDS]
    for dots in (".", ".."):  # no URL can carry them as a segment: refused, saying why
        refused = await stack.client.send(_ev(dots, {"sql": "x"}), wait_ms=0)
        assert refused.status == 400, (dots, refused.status, refused.body)
        assert "directory step" in str(refused.body), refused.body
    for event_id in ids:
        sent = await stack.client.send(_ev(event_id, {"sql": "DROP TABLE users"}), wait_ms=5000)
        assert sent.status == 200, (event_id, sent.status, sent.body)
        assert sent.body["verdict"]["action"] == "pause", (event_id, sent.body)
    listed = await stack.client.approvals(limit=500)
    assert listed.status == 200, listed.body
    assert set(ids) <= {v["event_id"] for v in listed.body["items"]}, listed.body
    # the sandbox client percent-encodes the id it looks up (three of them: the free tier's
    # 120 api calls a minute must cover the whole test on a fast box too)
    for event_id in ids[:3]:
        found = await stack.client.verdict(event_id)
        assert found.status == 200 and found.body["event_id"] == event_id, (event_id, found.body)

    headers = {"Authorization": f"Bearer {stack.client._api_key}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def call(method: str, event_id: str, route: str, **kw: Any) -> tuple[int, Any]:
            # the URL exactly as written here (yarl would fold %2E back into "." and drop it)
            url = URL(f"{stack.client.base_url}/v1/{route}/{_segment(event_id)}", encoded=True)
            async with http.request(method, url, **kw) as r:
                return r.status, await r.json(content_type=None)

        for n, event_id in enumerate(ids):
            status, body = await call("GET", event_id, "verdicts")
            assert status == 200, (event_id, status, body)
            assert body["event_id"] == event_id and body["approval"] is None, body
            assert body["verdict"]["action"] == "pause", body
            decision = "approve" if n % 2 == 0 else "reject"
            status, body = await call("POST", event_id, "approvals",
                                      json={"decision": decision, "reason": "ok"})
            assert status == 200, (event_id, status, body)
            assert body["event_id"] == event_id and body["decision"] == decision, body
            status, body = await call("GET", event_id, "verdicts")
            assert status == 200 and body["approval"]["decision"] == decision, body
            # a second decision on the same event is a conflict, not a lost route
            status, body = await call("POST", event_id, "approvals", json={"decision": decision})
            assert status == 409, (event_id, status, body)

    # braces sent raw (not percent-encoded) on the request line reach the route as well
    raw = "a{b}c" + suffix
    async with aiohttp.ClientSession() as http:
        url = URL(stack.client.base_url + "/v1/verdicts/" + raw, encoded=True)
        async with http.get(url, headers=headers) as r:
            body = await r.json()
            assert r.status == 200 and body["event_id"] == raw, (r.status, body)
