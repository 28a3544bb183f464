"""The gateway's one shared Kafka producer, with a bounded wait on every send.

``acks="all"``: a 202 means the envelope is on every in-sync replica, so a broker failover does
not lose accepted events (one extra replication round trip; ``acks=1`` would be faster but a
leader crash could lose an acknowledged envelope). ``linger_ms`` (default 2 ms) lets concurrent
requests share one produce request. A send that takes longer than ``kafka_send_timeout_s`` is
answered 503; it may still reach Kafka later, which is harmless because event ids make retries
idempotent in the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from gateway.metrics import GATEWAY_ERRORS, KAFKA_SEND_SECONDS
from models.envelope import TRACE_HEADER
from models.errors import UnavailableError
from ratchet.kafka.failures import unavailable

__all__ = ["Message", "Publisher"]


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    key: bytes
    value: bytes
    trace_id: str


class Publisher:
    def __init__(
        self,
        bootstrap: str,
        *,
        linger_ms: int,
        send_timeout_s: float,
        security: Mapping[str, Any] | None = None,
    ) -> None:
        """``security``: :func:`ratchet.kafka.security.client_kwargs` (TLS/SASL)."""
        self.bootstrap = bootstrap
        self.send_timeout_s = send_timeout_s
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            linger_ms=linger_ms,
            request_timeout_ms=max(1000, int(send_timeout_s * 1000)),
            max_request_size=8 * 1024 * 1024,
            client_id="ratchet-gateway",
            **(security or {}),
        )

    async def start(self) -> None:
        try:
            await self.producer.start()
        except KafkaError as exc:
            raise unavailable(self.bootstrap, exc) from exc

    async def stop(self) -> None:
        # a dead broker must not keep the process from exiting
        # aiokafka may re-raise its own cancelled fetch/send tasks when the broker is gone
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(self.producer.stop(), self.send_timeout_s + 1)

    async def _send(self, msg: Message) -> None:
        await self.producer.send_and_wait(
            msg.topic, msg.value, key=msg.key, headers=[(TRACE_HEADER, msg.trace_id.encode())]
        )

    async def send_raw(self, topic: str, key: bytes, value: bytes) -> None:
        """Send one message (no trace header), bounded by the send timeout; raises on failure.

        The audit log's sink (:data:`ratchet.store.audit.AuditSink`).
        """
        await asyncio.wait_for(
            self.producer.send_and_wait(topic, value, key=key), self.send_timeout_s
        )

    async def publish(self, messages: Sequence[Message]) -> list[BaseException | None]:
        """Send messages concurrently; per message ``None`` (acknowledged) or the error.

        Raises :class:`UnavailableError` when no message at all could be sent.
        """
        if not messages:
            return []
        start = time.perf_counter()
        results: list[Any]
        if len(messages) == 1:  # a single event: no gather, no extra task (asyncio.timeout)
            try:
                async with asyncio.timeout(self.send_timeout_s):
                    await self._send(messages[0])
                results = [None]
            except Exception as exc:  # noqa: BLE001  (reported per message, as gather does)
                results = [exc]
        else:
            results = await asyncio.gather(
                *(asyncio.wait_for(self._send(m), self.send_timeout_s) for m in messages),
                return_exceptions=True,
            )
        KAFKA_SEND_SECONDS.observe(time.perf_counter() - start)
        errors: list[BaseException | None] = [
            r if isinstance(r, BaseException) else None for r in results
        ]
        failed = [e for e in errors if e is not None]
        if failed:
            GATEWAY_ERRORS.labels("kafka_unavailable").inc()
        if len(failed) == len(messages):
            raise UnavailableError(
                "Kafka is unavailable: the events were not accepted; retry with the same "
                f"event ids ({_describe(failed[0])})"
            )
        return errors

    async def check(self, timeout_s: float = 1.0) -> None:
        """Raise :class:`UnavailableError` unless the brokers answer a metadata request."""
        try:
            await asyncio.wait_for(self.producer.client.fetch_all_metadata(), timeout_s)
        except (TimeoutError, KafkaError, OSError) as exc:
            raise UnavailableError(f"Kafka at {self.bootstrap}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "no acknowledgement within the send timeout"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
