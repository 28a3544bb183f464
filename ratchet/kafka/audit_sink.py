"""A Kafka sink for :class:`ratchet.store.audit.AuditLog` outside the gateway (CLI, tools).

The gateway passes its own shared producer; short-lived commands open one here, only when
``RATCHET_KAFKA_BOOTSTRAP`` is set (without Kafka, entries still land in Redis — the source of
truth — and nothing is published).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ratchet.store.audit import AuditSink

__all__ = ["kafka_sink", "make_producer"]


def make_producer(bootstrap: str, security: Mapping[str, Any] | None) -> AIOKafkaProducer:
    """The sink's producer (not started) with Ratchet's security settings."""
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", client_id="ratchet-audit",
                            **(security or {}))


@contextlib.asynccontextmanager
async def kafka_sink(
    bootstrap: str | None, *, security: Mapping[str, Any] | None = None
) -> AsyncIterator[AuditSink | None]:
    """A sink publishing to Kafka; ``security``: :func:`ratchet.kafka.security.client_kwargs`."""
    if not bootstrap:
        yield None
        return
    producer = make_producer(bootstrap, security)
    try:
        await producer.start()
    except KafkaError:
        yield None  # publishing is best effort; AuditLog counts what it could not send
        return

    async def send(topic: str, key: bytes, value: bytes) -> None:
        await producer.send_and_wait(topic, value, key=key)

    try:
        yield send
    finally:
        with contextlib.suppress(Exception):
            await producer.stop()
