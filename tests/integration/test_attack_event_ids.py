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

import pytest
from redis.asyncio import Redis

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
