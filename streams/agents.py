"""The Faust agents: short loops that move bytes between Kafka and :mod:`streams.worker`.

``ingest``: envelopes → :class:`GreedyBatcher` → one ``engine.decide`` per batch → verdicts saved
(one Redis pipeline) → one verdict envelope per ingest envelope on ``verdicts``, keyed by agent,
trace id in the body and in a Kafka header → the ingest messages are acked.

``feedback``: one decision at a time → stored verdict → ``engine.feedback`` → ack.

Both iterate ``stream.noack()`` and ack explicitly after the work is done, so nothing is
committed that was not decided (see :mod:`streams.batcher` for why not ``stream.take``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import faust
from faust import Stream
from faust.types import EventT, StreamT

from models.envelope import IngestEnvelope
from models.errors import ConfigError
from ratchet.config.settings import Settings
from streams.app import Topics
from streams.batcher import GreedyBatcher
from streams.runtime import Runtime

__all__ = ["Tuning", "attach_agents", "envelope_lane"]

log = logging.getLogger("ratchet.worker")


@dataclass(frozen=True)
class Tuning:
    """Batch limits of the ingest agent (measured: see docs/operations.md)."""

    max_envelopes: int = 256
    max_events: int = 5_000


@dataclass(frozen=True, slots=True)
class _Item:
    event: EventT[bytes]
    envelope: IngestEnvelope | None


def envelope_lane(env: IngestEnvelope | None) -> int:
    """The lane of an envelope's agent (:class:`GreedyBatcher` takes it modulo its lanes): every
    event of one agent goes through one lane, in order; an undecodable message, which is only
    acked, goes to the first."""
    return 0 if env is None else hash((env.project_id, env.agent_id))


def attach_agents(
    app: faust.App, topics: Topics, settings: Settings, tuning: Tuning | None = None
) -> Runtime:
    """Define the ``ingest`` and ``feedback`` agents on ``app``; returns their shared runtime."""
    async def publish_audit(topic: str, key: bytes, value: bytes) -> None:
        await app.producer.send_and_wait(topic, key, value, None, None, None)

    runtime = Runtime(settings, audit_sink=publish_audit)
    tuning = tuning or Tuning()
    lanes = settings.worker_lanes
    if lanes < 1:
        raise ConfigError(f"RATCHET_WORKER_LANES={lanes} must be at least 1 (1 = one batch at a time)")

    @app.agent(topics.ingest, name="ingest")
    async def ingest(stream: StreamT[bytes]) -> None:
        processor = await runtime.ingest_processor()
        manual: Stream[bytes] = stream.noack()  # type: ignore[attr-defined]

        decisions = topics.decisions
        if decisions is not None:
            await decisions.maybe_declare()

        async def process(batch: Sequence[_Item]) -> None:
            envelopes = [i.envelope for i in batch if i.envelope is not None]
            delivered = [
                await (decisions if out.topic and decisions is not None else topics.verdicts).send(
                    key=out.key, value=out.value, headers=list(out.headers), force=True
                )
                for out in await processor.process(envelopes)
            ]
            # ack the ingest messages only once Kafka has the verdicts (at-least-once output)
            await asyncio.gather(*delivered)

        async def ack(item: _Item) -> None:
            await manual.ack(item.event)

        batcher: GreedyBatcher[_Item] = GreedyBatcher(
            process, ack,
            size_of=lambda i: len(i.envelope.events) if i.envelope is not None else 0,
            max_items=tuning.max_envelopes, max_events=tuning.max_events,
            lanes=lanes, lane_of=lambda i: envelope_lane(i.envelope),
        )
        async with batcher:
            async for event in manual.events():
                decoded = processor.decode([event.value])
                await batcher.put(_Item(event, decoded[0] if decoded else None))

    @app.agent(topics.feedback, name="feedback")
    async def feedback(stream: StreamT[bytes]) -> None:
        processor = await runtime.feedback_processor()
        manual: Stream[bytes] = stream.noack()  # type: ignore[attr-defined]
        async for event in manual.events():
            msg = processor.decode(event.value)
            if msg is not None:
                await processor.process(msg)
            await manual.ack(event)

    @app.task  # type: ignore[untyped-decorator]
    async def _log_ready() -> None:
        await asyncio.sleep(0)
        log.info("ratchet worker %s ready: ingest=%s verdicts=%s feedback=%s",
                 settings.worker_id, settings.topic_ingest, settings.topic_verdicts,
                 settings.topic_feedback)
        await runtime.check_redis(log)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _log_joined(sender: object, assigned: set[faust.types.TP], **_: object) -> None:
        ingest = sum(1 for tp in assigned if tp.topic == settings.topic_ingest)
        log.info("ratchet worker %s joined consumer group %s: %d %s partition(s) assigned",
                 settings.worker_id, settings.worker_id, ingest, settings.topic_ingest)

    return runtime
