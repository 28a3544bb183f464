"""Drive the pipeline from outside: produce ingest envelopes, collect verdict envelopes.

Used by the integration tests, ``ratchet demo`` and ``benchmarks/pipeline.py`` — the parts that
talk to Kafka directly rather than through the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from models.envelope import (
    TRACE_HEADER,
    IngestEnvelope,
    VerdictEnvelope,
    agent_key,
    encode_ingest,
)
from models.verdict import Verdict
from models.verdict_wire import decode_verdict_message

__all__ = ["EnvelopeProducer", "Received", "VerdictCollector"]


class EnvelopeProducer:
    """Produce ingest envelopes the way the gateway does (key = agent, trace id header)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        linger_ms: int = 1,
        security: Mapping[str, Any] | None = None,
    ) -> None:
        """``security``: :func:`ratchet.kafka.security.client_kwargs` (TLS/SASL)."""
        self.topic = topic
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=linger_ms, max_request_size=8 * 1024 * 1024,
            acks=1, **(security or {}),
        )

    async def __aenter__(self) -> Self:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(self, env: IngestEnvelope, *, wait: bool = False) -> None:
        fut = await self._producer.send(
            self.topic,
            encode_ingest(env),
            key=agent_key(env.project_id, env.agent_id),
            headers=[(TRACE_HEADER, env.trace_id.encode())],
        )
        if wait:
            await fut

    async def send_raw(self, value: bytes, key: bytes) -> None:
        await self._producer.send(self.topic, value, key=key)

    async def flush(self) -> None:
        await self._producer.flush()


@dataclass
class Received:
    envelope: VerdictEnvelope
    key: bytes | None
    headers: dict[str, bytes]
    partition: int
    at: float


@dataclass
class VerdictCollector:
    """Read the whole verdicts topic (no consumer group) and index what arrives by event id."""

    bootstrap: str
    topic: str
    from_beginning: bool = True
    #: Longest fetch wait, ms: low for latency measurements, higher to poll the broker less.
    fetch_wait_ms: int = 5
    #: :func:`ratchet.kafka.security.client_kwargs` (TLS/SASL) of the cluster read.
    security: Mapping[str, Any] | None = None
    envelopes: list[Received] = field(default_factory=list)
    by_event: dict[str, list[Verdict]] = field(default_factory=lambda: defaultdict(list))
    verdicts_seen: int = 0
    #: Bytes of verdict message values read so far (what one full reader of the topic reads).
    bytes_seen: int = 0
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def make_consumer(self) -> AIOKafkaConsumer:
        """The group-less consumer of the verdicts topic (not started)."""
        return AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=None,
            auto_offset_reset="earliest" if self.from_beginning else "latest",
            fetch_max_wait_ms=self.fetch_wait_ms,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            **(self.security or {}),
        )

    async def __aenter__(self) -> Self:
        self._consumer = self.make_consumer()
        await self._consumer.start()
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            now = time.time()
            for tp, messages in batches.items():
                for m in messages:
                    env = decode_verdict_message(m.value)
                    self.bytes_seen += len(m.value)
                    headers = {k: bytes(v) for k, v in (m.headers or ())}
                    self.envelopes.append(Received(env, m.key, headers, tp.partition, now))
                    for v in env.verdicts:
                        self.by_event[v.event_id].append(v)
                    self.verdicts_seen += len(env.verdicts)
            if batches:
                self._changed.set()

    def missing(self, event_ids: Iterable[str]) -> list[str]:
        return [e for e in event_ids if e not in self.by_event]

    async def wait_for(self, event_ids: Sequence[str], timeout_s: float) -> list[str]:
        """Wait until every event id has a verdict; returns the ids still missing at timeout."""
        deadline = time.monotonic() + timeout_s
        todo = self.missing(event_ids)
        while todo:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
            if self._task is not None and self._task.done():
                self._task.result()
            todo = self.missing(todo)
        return todo

    async def wait_count(self, verdicts: int, timeout_s: float) -> bool:
        """Wait until at least ``verdicts`` verdicts arrived in total."""
        deadline = time.monotonic() + timeout_s
        while self.verdicts_seen < verdicts and time.monotonic() < deadline:
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 0.5)
            if self._task is not None and self._task.done():
                self._task.result()
        return self.verdicts_seen >= verdicts
