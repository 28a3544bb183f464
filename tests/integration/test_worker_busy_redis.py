"""A worker meets a Redis busy with a long script (``BUSY``): it waits and decides, loses nothing.

Redis refuses every command with ``BUSY`` while a script runs past its busy-reply threshold —
another tenant's pathological batch, an operator's script. That is a failure of the dependency,
not of the event: the batch is retried until Redis answers and then decided normally (no error
verdict, no event left without a verdict), exactly as when Redis is down.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from models.envelope import IngestEnvelope
from models.events import parse_event
from ratchet.engine.engine import Engine
from ratchet.sandbox.servers import RedisServer
from ratchet.store.keys import Keys
from ratchet.store.redis import connect
from ratchet.store.verdicts import VerdictStore
from streams.worker import Backoff, IngestProcessor

#: Keeps Redis busy for ``ARGV[1]`` seconds of the server's clock.
SPIN = ("local t = tonumber(redis.call('TIME')[1]) "
        "while tonumber(redis.call('TIME')[1]) < t + tonumber(ARGV[1]) do end return 1")


def _envelope(n: int) -> IngestEnvelope:
    events = tuple(parse_event({
        "event_id": f"e{i}-{uuid.uuid4().hex[:8]}", "agent_id": "a1", "run_id": "r1",
        "service": "crm", "action": "record.read", "payload": {"id": i},
    }, "p1") for i in range(n))
    return IngestEnvelope("p1", "a1", uuid.uuid4().hex[:16], time.time(), events)


async def test_a_batch_waits_out_a_busy_redis_and_is_decided_normally() -> None:
    with RedisServer(extra_args=("--busy-reply-threshold", "100")) as server:
        client = connect(server.url, timeout_s=30.0)
        spinner = connect(server.url, timeout_s=30.0)
        keys = Keys(f"t{uuid.uuid4().hex[:6]}")
        try:
            store = VerdictStore(client, keys)
            processor = IngestProcessor(Engine.create(client, keys=keys), store,
                                        backoff=Backoff(first_s=0.05, max_s=0.2))
            await processor.process([_envelope(3)])  # scripts loaded, state warm
            envelope = _envelope(5)
            spin = asyncio.create_task(spinner.eval(SPIN, 0, 2))
            await asyncio.sleep(0.5)  # past the threshold: every other command gets BUSY
            with_busy = time.monotonic()
            await processor.process([envelope])
            waited = time.monotonic() - with_busy
            assert await spin == 1
            assert waited > 0.3, waited  # it did meet BUSY (and waited it out)
            for ev in envelope.events:
                saved = await store.get("p1", ev.event_id)
                assert saved is not None, ev.event_id
                assert not saved.get("error") and saved["action"] == "allow", saved
        finally:
            await client.aclose()
            await spinner.aclose()
