"""The webhook dispatcher: a consumer of ``verdicts`` in its OWN consumer group.

Kept thin and outside the Faust worker on purpose: webhook receivers are slow and unreliable,
and must never delay verdicts. It reads verdict envelopes, looks up the project's webhooks,
delivers flag/pause/reject verdicts to the webhooks subscribed to that action
(:class:`ratchet.webhooks.deliver.Deliverer`), and commits the batch's offsets only after every
delivery of the batch finished (delivered, refused or dropped after its retries): a crash
re-reads the batch and re-delivers with the same delivery ids (at-least-once). A new group starts
at the end of the topic (webhooks are not replayed over old verdicts).

Run it with ``ratchet webhooks dispatch`` (one or more processes; Kafka spreads partitions).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp.abc import AbstractResolver
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from models.verdict_wire import decode_verdict_message
from models.webhooks import WEBHOOK_ACTIONS
from ratchet.config.settings import Settings
from ratchet.kafka.failures import unavailable
from ratchet.kafka.lag import LagMonitor
from ratchet.kafka.security import client_kwargs
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient
from ratchet.store.webhooks import Webhook, WebhookStore
from ratchet.webhooks.deliver import Deliverer
from ratchet.webhooks.net import GuardedResolver, guarded_session

__all__ = ["WebhookDispatcher", "deliveries_for"]

log = logging.getLogger(__name__)


def deliveries_for(
    verdicts: Sequence[Mapping[str, Any]], hooks: Sequence[Webhook]
) -> list[tuple[Webhook, Mapping[str, Any]]]:
    """Pairs (webhook, verdict) to deliver: verdict actions the webhook subscribed to."""
    return [(h, v) for v in verdicts if v.get("action") in WEBHOOK_ACTIONS
            for h in hooks if v.get("action") in h.actions]


class WebhookDispatcher:
    def __init__(
        self,
        settings: Settings,
        redis: RedisClient,
        *,
        resolver: AbstractResolver | None = None,
        group_id: str | None = None,
    ) -> None:
        assert settings.kafka_bootstrap, "the dispatcher needs RATCHET_KAFKA_BOOTSTRAP"
        self.settings = settings
        self.store = WebhookStore(redis, Keys(settings.key_prefix))
        self.inner_resolver = resolver
        self.group_id = group_id or settings.webhook_group
        self.consumer: AIOKafkaConsumer | None = None
        self.lag: LagMonitor | None = None
        self.deliverer: Deliverer | None = None
        self._task: asyncio.Task[None] | None = None
        self._limit = asyncio.Semaphore(max(1, settings.webhook_concurrency))

    async def start(self, assign_timeout_s: float = 30.0) -> None:
        """Join the group and wait for a partition assignment, then dispatch in the background."""
        s = self.settings
        resolver = GuardedResolver(s.webhooks_allow_loopback, self.inner_resolver)
        session = guarded_session(resolver, s.webhook_timeout_s, s.webhook_concurrency)
        self.deliverer = Deliverer(s, session)
        self.consumer = self.make_consumer()
        try:
            await self.consumer.start()
        except KafkaError as exc:
            assert s.kafka_bootstrap
            raise unavailable(s.kafka_bootstrap, exc) from exc
        loop = asyncio.get_running_loop()
        deadline = loop.time() + assign_timeout_s
        while not self.consumer.assignment() and loop.time() < deadline:
            await self.consumer.getmany(timeout_ms=100)  # drives the group join
        for tp in self.consumer.assignment():
            await self.consumer.position(tp)  # fix "latest" now, not at the first fetch
        self._task = asyncio.create_task(self._run())
        if s.consumer_lag_interval_s > 0:
            assert s.kafka_bootstrap
            self.lag = LagMonitor(s.kafka_bootstrap, self.group_id, [s.topic_verdicts],
                                  reset="latest", security=client_kwargs(s),
                                  interval_s=s.consumer_lag_interval_s)
            await self.lag.start()

    def make_consumer(self) -> AIOKafkaConsumer:
        """The dispatcher's group consumer of ``verdicts`` (not started)."""
        s = self.settings
        return AIOKafkaConsumer(
            s.topic_verdicts, bootstrap_servers=s.kafka_bootstrap, group_id=self.group_id,
            enable_auto_commit=False, auto_offset_reset="latest",
            session_timeout_ms=int(s.broker_session_timeout_s * 1000),
            heartbeat_interval_ms=int(s.broker_heartbeat_interval_s * 1000),
            client_id="ratchet-webhooks",
            **client_kwargs(s),
        )

    async def _run(self) -> None:
        assert self.consumer is not None
        while True:
            got = await self.consumer.getmany(timeout_ms=500, max_records=200)
            if not got:
                continue
            try:
                for records in got.values():
                    await asyncio.gather(*(self.handle(r.value or b"") for r in records))
                await self.consumer.commit()
            except Exception as exc:  # noqa: BLE001  e.g. Redis down: read the batch again
                log.warning("webhook batch failed, retrying it: %s", type(exc).__name__)
                for tp, records in got.items():
                    self.consumer.seek(tp, records[0].offset)
                await asyncio.sleep(1.0)

    async def handle(self, value: bytes) -> list[str]:
        """Deliver what one verdict envelope calls for; returns each delivery's result."""
        try:
            env = decode_verdict_message(value)
        except Exception as exc:  # noqa: BLE001  a malformed message must not stop dispatching
            log.warning("skipping undecodable verdict envelope: %s", type(exc).__name__)
            return []
        verdicts = [v.to_dict() for v in env.verdicts if v.action in WEBHOOK_ACTIONS]
        if not verdicts:
            return []
        hooks = await self.store.list(env.project_id)
        pairs = deliveries_for(verdicts, hooks)
        return list(await asyncio.gather(*(self._deliver(h, v) for h, v in pairs)))

    async def _deliver(self, hook: Webhook, verdict: Mapping[str, Any]) -> str:
        assert self.deliverer is not None
        async with self._limit:
            return await self.deliverer.deliver(hook, verdict)

    async def stop(self) -> None:
        if self.lag is not None:
            await self.lag.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                await self.consumer.stop()
        if self.deliverer is not None:
            await self.deliverer.session.close()
