"""Consumer lag of a consumer group, per topic and partition, measured from the broker.

Lag = the partition's end offset − the group's committed offset: the messages the group still has
to process. It is read from the broker (ListOffsets + OffsetFetch), the way Burrow, KEDA's Kafka
scaler and ``kafka-consumer-groups.sh --describe`` compute it, not from a consumer's own fetch
position, so it is right even while the group is rebalancing or every member is down — exactly
when it matters. A partition the group never committed counts by the group's reset policy:
``earliest`` (workers) → everything from the start of the log is lag; ``latest`` (the webhook
dispatcher, which never replays old verdicts) → nothing is.

:class:`LagMonitor` refreshes ``ratchet_consumer_lag_messages{group, topic, partition}`` every
few seconds in workers and dispatchers. Labels are bounded by configuration (group and topic names
from settings, partitions ≤ ``RATCHET_TOPIC_PARTITIONS``); never an agent id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from ratchet.telemetry.metrics import CONSUMER_LAG, CONSUMER_LAG_ERRORS

__all__ = ["LagMonitor", "group_lag"]

log = logging.getLogger(__name__)

Lag = dict[TopicPartition, int]


async def group_lag(
    admin: AIOKafkaAdminClient,
    consumer: AIOKafkaConsumer,
    group: str,
    topics: Sequence[str],
    *,
    reset: str = "earliest",
) -> Lag:
    """Lag of ``group`` on every partition of ``topics`` (started, group-less ``consumer``)."""
    await consumer.topics()  # refresh metadata: partitions added since the last call count too
    tps = [
        TopicPartition(topic, p)
        for topic in topics
        for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    if not tps:
        return {}
    ends: Mapping[TopicPartition, int] = await consumer.end_offsets(tps)
    starts: Mapping[TopicPartition, int] = (
        await consumer.beginning_offsets(tps) if reset == "earliest" else ends
    )
    committed = await admin.list_consumer_group_offsets(group, partitions=tps)
    lag: Lag = {}
    for tp in tps:
        meta = committed.get(tp)
        done = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
        lag[tp] = max(0, ends[tp] - done)
    return lag


class LagMonitor:
    """Publishes one group's lag as a Prometheus gauge every ``interval_s`` until stopped."""

    def __init__(
        self,
        bootstrap: str,
        group: str,
        topics: Sequence[str],
        *,
        reset: str,
        security: Mapping[str, Any] | None = None,
        interval_s: float = 15.0,
    ) -> None:
        """``reset``: the group's ``auto_offset_reset`` (``earliest`` or ``latest``);
        ``security``: :func:`ratchet.kafka.security.client_kwargs`."""
        if reset not in ("earliest", "latest"):
            raise ValueError(f"reset must be 'earliest' or 'latest', not {reset!r}")
        self.group = group
        self.topics = list(topics)
        self.reset = reset
        self.interval_s = interval_s
        self._bootstrap = bootstrap
        self._security = dict(security or {})
        self.admin, self.consumer = self._clients()
        self._connected = False
        self._connecting = asyncio.Lock()
        self._exported: set[tuple[str, str, str]] = set()
        self._task: asyncio.Task[None] | None = None

    def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, request_timeout_ms=10_000,
                                    client_id="ratchet-lag", **self._security)
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, group_id=None,
                                    enable_auto_commit=False, client_id="ratchet-lag",
                                    **self._security)
        return admin, consumer

    async def connect(self) -> None:
        """Start both clients (raises the Kafka error when the brokers do not answer)."""
        async with self._connecting:
            if self._connected:
                return
            try:
                await self.admin.start()
                await self.consumer.start()
            except BaseException:
                await self._close()
                self.admin, self.consumer = self._clients()  # not restartable after a failure
                raise
            self._connected = True

    async def refresh(self) -> Lag:
        """Measure once and update the gauge (stale partitions are removed)."""
        await self.connect()
        lag = await group_lag(self.admin, self.consumer, self.group, self.topics,
                              reset=self.reset)
        seen: set[tuple[str, str, str]] = set()
        for tp, value in lag.items():
            labels = (self.group, tp.topic, str(tp.partition))
            CONSUMER_LAG.labels(*labels).set(value)
            seen.add(labels)
        for labels in self._exported - seen:
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(*labels)
        self._exported = seen
        return lag

    async def start(self) -> None:
        """Measure every ``interval_s`` in the background. Never raises: while the brokers do not
        answer (at start or later), each failed measurement counts in
        ``ratchet_consumer_lag_errors_total`` and the next interval tries again."""
        self._task = asyncio.create_task(self._run(), name=f"ratchet-lag-{self.group}")

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError, TimeoutError) as exc:
                CONSUMER_LAG_ERRORS.labels(self.group).inc()
                log.warning("consumer lag of %s not measured: %s", self.group, type(exc).__name__)
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self._close()

    async def _close(self) -> None:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self.consumer.stop()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self.admin.close()
        self._connected = False
