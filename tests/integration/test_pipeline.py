"""The whole path through HTTP: signed events → gateway → Kafka → worker → Redis → verdicts →
gateway (wait path, lookup, approvals → feedback topic → worker → engine learns).

Gateway and worker run as child processes on this test's own topics and key prefix.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from models.params import COUNT_SCALE, EngineParams
from ratchet.store.chains import EngineStore
from tests.integration.pipeline_support import (
    Stack,
    step_event,
    three_step_run,
    verdict_now,
    worker_ready,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


async def test_signed_events_get_verdicts_through_http(stack: Stack) -> None:
    await worker_ready(stack)
    first = step_event("r0", 0, "a")
    body = await verdict_now(stack, first)
    verdict = body["verdict"]
    assert verdict["event_id"] == first["event_id"]
    assert verdict["trace_id"] == body["trace_id"]  # the request's trace id reached the verdict
    assert verdict["action"] == "allow" and verdict["mode"] == "shadow"

    batch = [e for r in range(1, 6) for e in three_step_run(f"r{r}")]
    answer = await stack.client.send_batch(batch)
    assert answer.status == 200 and answer.body["accepted"] == len(batch), answer.body
    pending = {e["event_id"] for e in batch}
    deadline = time.monotonic() + 30
    while pending and time.monotonic() < deadline:
        for event_id in list(pending):
            got = await stack.client.verdict(event_id)
            if got.status == 200:
                assert got.body["event_id"] == event_id
                assert got.body["verdict"]["trace_id"] == answer.body["trace_id"]
                pending.discard(event_id)
        await asyncio.sleep(0.1)
    assert not pending, stack.logs()

    # single events with wait_ms come back fast once the worker runs
    decided = await stack.client.send(step_event("r9", 0, "a"), wait_ms=2000)
    assert decided.status == 200 and decided.body["status"] == "decided", decided.body


async def test_pause_approve_over_http_teaches_the_engine(stack: Stack) -> None:
    await worker_ready(stack)
    training = [e for r in range(12) for e in three_step_run(f"t{r}")]
    answer = await stack.client.send_batch(training)
    assert answer.body["accepted"] == len(training)
    last = training[-1]["event_id"]
    deadline = time.monotonic() + 30
    while (await stack.client.verdict(last)).status != 200:
        assert time.monotonic() < deadline, stack.logs()
        await asyncio.sleep(0.1)

    odd = step_event("odd", 0, "novel")
    body = await verdict_now(stack, odd)
    verdict = body["verdict"]
    assert verdict["mode"] == "locked" and verdict["action"] == "pause", verdict
    listed = await stack.client.approvals()
    assert odd["event_id"] in {v["event_id"] for v in listed.body["items"]}

    redis = Redis.from_url(stack.redis_url)
    try:
        store = EngineStore(redis, stack.keys, EngineParams())
        edge = f"{verdict['edge']['from']}\t{verdict['edge']['to']}"
        assert edge not in await store.edge_counts(verdict["chain_tag"])
        decided = await stack.client.decide(odd["event_id"], "approve", "expected export")
        assert decided.status in (200, 202), decided.body
        deadline = time.monotonic() + 30
        while (await store.edge_counts(verdict["chain_tag"])).get(edge, 0) != COUNT_SCALE:
            assert time.monotonic() < deadline, stack.logs()
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
