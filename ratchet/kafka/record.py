"""Read the events agents sent from the ``ingest`` topic, for ``ratchet record``.

Every accepted event is on the ingest topic (the gateway publishes it before it answers), kept
as long as the topic's retention. :func:`recorded` reads it with a consumer of no group (nothing
is committed, no worker's position moves), every partition from an offset chosen by time, up to
the end offsets it found when it started (or on, with ``follow``), and yields the events as
``ratchet replay`` reads them: the ingest event's fields plus ``project_id`` — and ``ts`` set to
the time the gateway received the event when the agent sent none, so velocity windows and daily
cost sums replay on the real clock. An envelope that does not decode is counted, not fatal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from models.envelope import decode_ingest
from models.errors import RatchetError, UnavailableError
from ratchet.config.settings import Settings
from ratchet.kafka.security import client_kwargs

__all__ = ["RecordFilter", "RecordStats", "recorded"]


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """Which events to keep: all when a field is None."""

    project_id: str | None = None
    agent_id: str | None = None
    #: Unix seconds: envelopes the gateway received from then on (None: the oldest kept).
    since: float | None = None


@dataclass
class RecordStats:
    envelopes: int = 0
    events: int = 0
    #: Envelopes that did not decode (another release's format, garbage).
    unreadable: int = 0


async def recorded(
    settings: Settings, keep: RecordFilter, stats: RecordStats, *, follow: bool = False,
    poll_ms: int = 500, on_idle: Callable[[], None] | None = None,
) -> AsyncIterator[dict[str, object]]:
    """The recorded events, in the topic's order per partition (an agent's events are on one
    partition, in the order they were accepted). Raises :class:`UnavailableError` when the
    brokers cannot be reached."""
    if not settings.kafka_bootstrap:
        raise RatchetError("RATCHET_KAFKA_BOOTSTRAP is not set: the brokers of the live "
                           "deployment hold the ingest topic to record from")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
        client_id="ratchet-record", auto_offset_reset="earliest", **client_kwargs(settings))
    try:
        try:
            await consumer.start()
            parts = await asyncio.wait_for(_partitions(consumer, settings.topic_ingest), 30)
        except (TimeoutError, OSError, KafkaError) as exc:
            raise UnavailableError(
                f"cannot read topic {settings.topic_ingest!r} from RATCHET_KAFKA_BOOTSTRAP="
                f"{settings.kafka_bootstrap} ({exc or type(exc).__name__})") from None
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        if keep.since is not None and keep.since >= time.time():
            for tp in parts:  # nothing received yet is that recent: from the end
                consumer.seek(tp, ends[tp])
        elif keep.since is not None:
            found = await consumer.offsets_for_times({tp: int(keep.since * 1000) for tp in parts})
            for tp in parts:
                # no record received since then: the end. Kafka answers offset -1 (aiokafka:
                # None), some brokers (Tansu) offset 0 with timestamp -1, which read from the
                # oldest record kept to find nothing (attack run 9, R9)
                at = found.get(tp)
                none = at is None or at.timestamp is None or at.timestamp < 0
                consumer.seek(tp, ends[tp] if none else at.offset)
        else:
            await consumer.seek_to_beginning(*parts)
        left = {tp for tp in parts if follow or await consumer.position(tp) < ends[tp]}
        while left:
            try:
                got = await consumer.getmany(*parts, timeout_ms=poll_ms)
            except KafkaError as exc:
                raise UnavailableError(f"reading topic {settings.topic_ingest!r} failed "
                                       f"({exc})") from None
            if not got and on_idle is not None:
                on_idle()
            for tp, records in got.items():
                for rec in records:
                    if not follow and rec.offset >= ends[tp]:
                        continue
                    for event in _events(rec.value or b"", keep, stats):
                        yield event
            if not follow:
                for tp in list(left):
                    if await consumer.position(tp) >= ends[tp]:
                        left.discard(tp)
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    while True:
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        await consumer.topics()  # refresh the metadata; the topic may not exist yet
        if consumer.partitions_for_topic(topic) is None:
            raise UnavailableError(f"topic {topic!r} does not exist on the brokers (RATCHET_"
                                   "TOPIC_INGEST names it; has any event been sent yet?)")


def _events(body: bytes, keep: RecordFilter, stats: RecordStats) -> list[dict[str, object]]:
    stats.envelopes += 1
    try:
        env = decode_ingest(body)
    except (RatchetError, ValueError, KeyError, TypeError):
        stats.unreadable += 1
        return []
    if keep.project_id is not None and env.project_id != keep.project_id:
        return []
    if keep.agent_id is not None and env.agent_id != keep.agent_id:
        return []
    if keep.since is not None and env.received_at and env.received_at < keep.since:
        return []
    out = []
    for ev in env.events:
        item = ev.to_dict()
        if ev.ts is None and env.received_at:
            item["ts"] = env.received_at
        out.append(item)
    stats.events += len(out)
    return out
