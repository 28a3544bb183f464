"""Redis round trips of a worker per single event (streams/worker.py), counted by the server.

``total_reads_processed`` (INFO stats) grows by one for every request the server reads off a
connection: a pipeline counts once, commands one after another count once each, two concurrent
requests on two connections count twice. A single event with a waiting caller, decided by the
real engine (a stateful guardrail policy, so the guardrail script runs), saved, and replied to
over pub/sub, is counted here; the reply must still reach the subscriber, after the save.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from models.envelope import IngestEnvelope
from models.events import parse_event
from models.guardrails import default_policy, parse_policy_toml
from models.params import EngineParams
from models.verdict_wire import decode_verdict_message
from ratchet.engine.engine import Engine
from ratchet.store.keys import Keys
from ratchet.store.policies import FixedPolicy
from ratchet.store.replies import ReplyPublisher
from ratchet.store.verdicts import VerdictStore
from streams.worker import IngestProcessor

pytestmark = pytest.mark.asyncio

#: docs/performance.md, "Single events in the worker": guardrail state with the service-mode
#: reads and a dry observe call; then the learning observe call, the service-mode writes, the
#: save and the reply.
MAX_ROUND_TRIPS_PER_EVENT = 2

POLICY = (
    "[guardrails.velocity]\naction = 'pause'\n"
    "per_run = { window_s = 60, limit = 1000 }\nper_agent = { window_s = 60, limit = 1000 }\n"
)


def _envelope(run: str, i: int, route: str) -> IngestEnvelope:
    event = parse_event({
        "event_id": f"e-{run}-{i}-{uuid.uuid4().hex[:8]}", "agent_id": "a1", "run_id": run,
        "service": "crm", "action": "op.read", "payload": {"id": i},
    }, "p1")
    return IngestEnvelope("p1", "a1", uuid.uuid4().hex[:16], time.time(), (event,), wait=True,
                          reply=route)


async def _reads(client: aioredis.Redis) -> int:
    return int((await client.info("stats"))["total_reads_processed"])


async def test_a_single_event_takes_at_most_two_round_trips_in_the_worker(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    engine = Engine.create(redis_client, keys=keys,
                           policies=FixedPolicy(parse_policy_toml(POLICY)))
    store = VerdictStore(redis_client, keys)
    processor = IngestProcessor(engine, store, replies=ReplyPublisher(redis_client, keys))
    route = uuid.uuid4().hex
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(keys.reply_channel(route))
    try:
        for i in range(3):  # warm: policy read, node labels, service-mode records
            await processor.process([_envelope(f"warm{i}", 0, route)])
        envelopes = [_envelope("r1", i, route) for i in range(10)]
        before = await _reads(redis_client)
        for env in envelopes:
            await processor.process([env])
        per_event = (await _reads(redis_client) - before - 1) / len(envelopes)

        replies: list[Any] = []
        deadline = time.monotonic() + 5
        while len(replies) < 3 + len(envelopes) and time.monotonic() < deadline:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if msg is not None:
                replies.append(decode_verdict_message(msg["data"]))
    finally:
        await pubsub.unsubscribe()
        await pubsub.aclose()  # type: ignore[no-untyped-call]

    print("worker round trips per single event:", per_event)
    assert per_event <= MAX_ROUND_TRIPS_PER_EVENT, per_event
    # every waiting caller got its verdict, and it was saved before it was published
    answered = [v.event_id for reply in replies[3:] for v in reply.verdicts]
    assert answered == [env.events[0].event_id for env in envelopes]
    for env in envelopes:
        saved = await store.get("p1", env.events[0].event_id)
        assert saved is not None and saved["action"] == "allow"
    await asyncio.sleep(0)


async def _evalsha_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_under_the_default_policy_a_single_event_runs_observe_once(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    """No guardrail of the default policy can hold an event back, so a chain past shadow learns
    in the first round trip: three scripts per single event (guardrails, observe, the verdict
    save), not four (a dry observe call and then the learning one), still two round trips."""
    engine = Engine.create(redis_client, keys=keys, labels=False,
                           policies=FixedPolicy(default_policy()),
                           params=EngineParams(checkpoint_runs=2, min_runs_soft=4))
    store = VerdictStore(redis_client, keys)
    processor = IngestProcessor(engine, store, replies=ReplyPublisher(redis_client, keys))
    route = uuid.uuid4().hex

    def ended(run: str, i: int) -> IngestEnvelope:
        env = _envelope(run, i, route)
        ev = dataclasses.replace(env.events[0], end_of_run=True)
        return dataclasses.replace(env, events=(ev,))

    for i in range(12):  # one-event runs: the chain leaves shadow at a checkpoint
        await processor.process([ended(f"warm{i}", 0)])
    envelopes = [ended(f"r{i}", i) for i in range(10)]
    scripts = await _evalsha_calls(redis_client)
    reads = await _reads(redis_client)
    for env in envelopes:
        await processor.process([env])
    per_event = (await _reads(redis_client) - reads - 1) / len(envelopes)
    scripts_per_event = (await _evalsha_calls(redis_client) - scripts) / len(envelopes)
    print("round trips / scripts per single event:", per_event, scripts_per_event)
    assert per_event <= MAX_ROUND_TRIPS_PER_EVENT, per_event
    assert scripts_per_event == 3, scripts_per_event
    for env in envelopes:
        saved = await store.get("p1", env.events[0].event_id)
        assert saved is not None and saved["mode"] != "shadow"
