"""The whole path through HTTP: signed events → gateway → Kafka → worker → Redis → verdicts →
gateway (wait path, lookup, approvals → feedback topic → worker → engine learns).

Gateway and worker run as child processes on this test's own topics and key prefix.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from models.params import COUNT_SCALE, EngineParams
from ratchet.platform.provisioning import create_agent, create_project
from ratchet.sandbox.client import RatchetClient
from ratchet.sandbox.process import FAST_GROUP_ENV, ChildProcess, gateway_process, worker_env
from ratchet.sandbox.servers import free_port
from ratchet.store.chains import EngineStore
from ratchet.store.keys import Keys

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

LOCKING_ENGINE = """
[engine]
checkpoint_runs = 2
min_runs_soft = 2
min_runs_locked = 4
stability = 1.0
stability_large = 1.0
"""


@dataclass
class Stack:
    client: RatchetClient
    redis_url: str
    keys: Keys
    gateway: ChildProcess
    worker: ChildProcess

    def logs(self) -> str:
        return f"--- gateway ---\n{self.gateway.log()[-3000:]}\n--- worker ---\n" \
               f"{self.worker.log()[-3000:]}"


@pytest.fixture
async def stack(
    redis_url: str, kafka_bootstrap: str, key_prefix: str, tmp_path: Path
) -> AsyncIterator[Stack]:
    suffix = uuid.uuid4().hex[:8]
    engine = tmp_path / "engine.toml"
    engine.write_text(LOCKING_ENGINE)
    port = free_port()
    env = worker_env(
        redis_url=redis_url, kafka_bootstrap=kafka_bootstrap, key_prefix=key_prefix,
        topic_ingest=f"ingest-{suffix}", topic_verdicts=f"verdicts-{suffix}",
        topic_feedback=f"feedback-{suffix}", topic_partitions=4, worker_id=f"pipe-{suffix}",
        worker_web_port=0, gateway_host="127.0.0.1", gateway_port=port,
        engine_config=str(engine),
    )
    env.update(FAST_GROUP_ENV)
    keys = Keys(key_prefix)
    redis = Redis.from_url(redis_url)
    try:
        project, api_key = await create_project(redis, keys, "pipeline test")
        _, secret = await create_agent(redis, keys, project, "ops-bot")
    finally:
        await redis.aclose()
    gateway = gateway_process(env).start()
    worker = ChildProcess(env, name="worker").start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with session.get(base + "/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, gateway.log()[-3000:]
                await asyncio.sleep(0.2)
            client = RatchetClient(base, api_key, "ops-bot", secret, project_id=project,
                                   session=session)
            yield Stack(client, redis_url, keys, gateway, worker)
    finally:
        worker.stop()
        gateway.stop()


def _event(run: str, i: int, shape: str, *, end: bool = False) -> dict[str, Any]:
    payloads = {
        "a": {"ticket": 1, "text": "x"},
        "b": {"query": "refund", "limit": 5},
        "c": {"reply": "done", "close": True},
        "novel": {"export": {"table": "customers", "all": True}},
    }
    return {"event_id": str(uuid.uuid4()), "run_id": run, "service": "helpdesk",
            "action": f"step.{shape}", "priority": "critical", "payload": payloads[shape],
            "end_of_run": end}


def _run(run: str) -> list[dict[str, Any]]:
    return [_event(run, 0, "a"), _event(run, 1, "b"), _event(run, 2, "c", end=True)]


async def _worker_ready(stack: Stack) -> None:
    """Probe (fresh event ids, own run) until the worker has joined its group and answers."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        probe = {**_event(f"probe-{uuid.uuid4().hex[:6]}", 0, "a", end=True),
                 "service": "probe"}  # its own chain
        answer = await stack.client.send(probe, wait_ms=2000)
        if answer.status == 200:
            return
        assert answer.status == 202, answer.body
    raise AssertionError("no verdict within 60 s\n" + stack.logs())


async def _verdict_now(stack: Stack, event: dict[str, Any]) -> dict[str, Any]:
    answer = await stack.client.send(event, wait_ms=3000)
    assert answer.status == 200, (answer.status, answer.body, stack.logs())
    return dict(answer.body)


async def test_signed_events_get_verdicts_through_http(stack: Stack) -> None:
    await _worker_ready(stack)
    first = _event("r0", 0, "a")
    body = await _verdict_now(stack, first)
    verdict = body["verdict"]
    assert verdict["event_id"] == first["event_id"]
    assert verdict["trace_id"] == body["trace_id"]  # the request's trace id reached the verdict
    assert verdict["action"] == "allow" and verdict["mode"] == "shadow"

    batch = [e for r in range(1, 6) for e in _run(f"r{r}")]
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
    decided = await stack.client.send(_event("r9", 0, "a"), wait_ms=2000)
    assert decided.status == 200 and decided.body["status"] == "decided", decided.body


async def test_pause_approve_over_http_teaches_the_engine(stack: Stack) -> None:
    await _worker_ready(stack)
    training = [e for r in range(12) for e in _run(f"t{r}")]
    answer = await stack.client.send_batch(training)
    assert answer.body["accepted"] == len(training)
    last = training[-1]["event_id"]
    deadline = time.monotonic() + 30
    while (await stack.client.verdict(last)).status != 200:
        assert time.monotonic() < deadline, stack.logs()
        await asyncio.sleep(0.1)

    odd = _event("odd", 0, "novel")
    body = await _verdict_now(stack, odd)
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
