"""Requests waiting for verdicts, and the consumer of the ``verdicts`` topic that wakes them.

Every gateway instance reads the whole ``verdicts`` topic with its own group-less consumer
(``group_id=None``: no group join, no committed offsets), positioned at the end of every partition
*before* the gateway accepts traffic, so no verdict of a request it accepts can be missed. Each
instance reads all verdict traffic; that is cheap next to ingest (one small envelope per ingest
envelope) but grows with the number of gateways — see docs/api.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from gateway.metrics import (
    GATEWAY_ERRORS,
    INGEST_TO_VERDICT,
    VERDICT_BYTES_READ,
    WAITED_VERDICTS,
)
from models.envelope import VerdictEnvelope, decode_verdicts
from models.errors import RatchetError, UnavailableError

__all__ = ["VerdictListener", "Waiters"]

log = logging.getLogger(__name__)

WaitKey = tuple[str, str]


class Waiters:
    """Futures of requests waiting for the verdict of (project id, event id)."""

    def __init__(self) -> None:
        self._waiting: defaultdict[WaitKey, list[asyncio.Future[dict[str, Any]]]] = defaultdict(list)

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, project_id: str, event_id: str) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[(project_id, event_id)].append(fut)
        return fut

    def discard(self, project_id: str, event_id: str, fut: asyncio.Future[dict[str, Any]]) -> None:
        key = (project_id, event_id)
        futures = self._waiting.get(key)
        if futures is None:
            return
        with contextlib.suppress(ValueError):
            futures.remove(fut)
        if not futures:
            del self._waiting[key]

    def deliver(self, env: VerdictEnvelope) -> int:
        """Wake the requests waiting for these verdicts; returns how many were woken."""
        woken = 0
        for verdict in env.verdicts:
            futures = self._waiting.pop((env.project_id, verdict.event_id), None)
            if not futures:
                continue
            body = verdict.to_dict()
            for fut in futures:
                if not fut.done():
                    fut.set_result(body)
                    woken += 1
                    WAITED_VERDICTS.inc()
            if env.received_at:
                INGEST_TO_VERDICT.observe(max(0.0, time.time() - env.received_at))
        return woken


class VerdictListener:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        waiters: Waiters,
        *,
        security: Mapping[str, Any] | None = None,
    ) -> None:
        """``security``: :func:`ratchet.kafka.security.client_kwargs` (TLS/SASL)."""
        self.topic = topic
        self.waiters = waiters
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            fetch_max_wait_ms=50,
            client_id="ratchet-gateway-verdicts",
            **(security or {}),
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Assign every partition of the topic and fix the start offsets at their current end."""
        try:
            await self.consumer.start()
            await self.consumer.topics()  # loads cluster metadata
            partitions = self.consumer.partitions_for_topic(self.topic)
            if not partitions:
                raise UnavailableError(
                    f"Kafka topic {self.topic!r} does not exist; create it (ratchet.kafka.topics)"
                )
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            self.consumer.assign(tps)
            await self.consumer.seek_to_end(*tps)
            for tp in tps:
                await self.consumer.position(tp)
        except KafkaError as exc:
            await self.stop()
            raise UnavailableError(f"cannot consume {self.topic!r}: {exc}") from exc
        except BaseException:
            await self.stop()
            raise
        self._task = asyncio.create_task(self._run(), name="ratchet-verdict-listener")

    async def _run(self) -> None:
        while True:
            try:
                batches = await self.consumer.getmany(timeout_ms=500, max_records=1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  (keep listening through broker hiccups)
                GATEWAY_ERRORS.labels("kafka_unavailable").inc()
                log.warning("verdict listener: %s; retrying", type(exc).__name__)
                await asyncio.sleep(0.5)
                continue
            for records in batches.values():
                for record in records:
                    self._handle(record.value)

    def _handle(self, value: bytes | None) -> None:
        if value is None:
            return
        VERDICT_BYTES_READ.inc(len(value))
        if not len(self.waiters):
            return
        try:
            env = decode_verdicts(value)
        except (RatchetError, KeyError, TypeError, ValueError):
            GATEWAY_ERRORS.labels("bad_verdict_message").inc()
            log.warning("verdict listener: skipped an undecodable verdict envelope")
            return
        self.waiters.deliver(env)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        # aiokafka may re-raise its own cancelled fetch/send tasks when the broker is gone
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(self.consumer.stop(), 5.0)
