"""The webhook dispatcher: a consumer of ``verdicts`` in its OWN consumer group.

Kept thin and outside the Faust worker on purpose: webhook receivers are slow and unreliable,
and must never delay verdicts. It reads verdict envelopes, looks up the project's webhooks and
delivers flag/pause/reject verdicts to the webhooks subscribed to that action
(:class:`ratchet.webhooks.deliver.Deliverer`).

Every envelope is handled by a task of its own, so one project's slow receivers (or retries)
never hold back another's deliveries; a project holds at most
``RATCHET_WEBHOOK_CONCURRENCY_PER_PROJECT`` of the process's delivery slots, a slot that frees
goes to the waiting project with the fewest in flight (:class:`ratchet.webhooks.slots.FairSlots`),
and a project may have at most
``RATCHET_WEBHOOK_BACKLOG_PER_PROJECT`` deliveries waiting (past it, its new ones are dropped and
counted). Offsets are committed per partition up to the first envelope not finished yet
(delivered, refused or dropped after its retries): a crash re-reads from there and re-delivers
with the same delivery ids (at-least-once; envelopes finished after it are delivered again).
At most :data:`PENDING_MAX` envelopes are in hand per process; past it the dispatcher stops
fetching until some finish. A new group starts at the end of the topic (webhooks are not
replayed over old verdicts).

Run it with ``ratchet webhooks dispatch`` (one or more processes; Kafka spreads partitions).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp.abc import AbstractResolver
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from models.verdict_wire import decode_verdict_message
from models.webhooks import WEBHOOK_ACTIONS
from ratchet.config.settings import Settings
from ratchet.kafka.failures import unavailable
from ratchet.kafka.lag import LagMonitor
from ratchet.kafka.security import client_kwargs
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient
from ratchet.store.webhooks import Webhook, WebhookStore
from ratchet.telemetry.metrics import WEBHOOK_DELIVERIES
from ratchet.webhooks.deliver import Deliverer
from ratchet.webhooks.net import GuardedResolver, guarded_session
from ratchet.webhooks.slots import FairSlots

__all__ = ["PENDING_MAX", "WebhookDispatcher", "deliveries_for"]

log = logging.getLogger(__name__)

#: Envelopes in hand (being delivered or retried) per dispatcher process before it stops
#: fetching more.
PENDING_MAX = 10_000
#: Longest a stop waits for the consumer to leave its group, seconds (a LeaveGroup takes well
#: under one; a join in progress would hold the stop for the broker's rebalance timeout).
CONSUMER_STOP_TIMEOUT_S = 5.0


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
        self._slots = FairSlots(settings.webhook_concurrency,
                                settings.webhook_concurrency_per_project)
        #: per project: its deliveries waiting or in flight
        self._backlog: dict[str, int] = {}
        #: per partition, the offsets in hand in order, each with the task handling it
        self._in_hand: dict[TopicPartition, deque[tuple[int, asyncio.Task[None]]]] = {}
        self._pending = 0

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
            if self._pending >= PENDING_MAX:  # enough in hand: let some finish first
                await asyncio.sleep(0.1)
            else:
                got = await self.consumer.getmany(timeout_ms=500, max_records=200)
                for tp, records in got.items():
                    hand = self._in_hand.setdefault(tp, deque())
                    for record in records:
                        self._pending += 1
                        hand.append((record.offset, asyncio.create_task(
                            self._until_handled(record.value or b""))))
            await self._commit_finished()

    async def _until_handled(self, value: bytes) -> None:
        """Handle one envelope, again after a failure of the dispatcher's own dependencies
        (e.g. Redis down), until it is handled."""
        try:
            while True:
                try:
                    await self.handle(value)
                    return
                except Exception as exc:  # noqa: BLE001  e.g. Redis down: try it again
                    log.warning("webhook envelope failed, retrying it: %s", type(exc).__name__)
                    await asyncio.sleep(1.0)
        finally:
            self._pending -= 1

    async def _commit_finished(self) -> None:
        """Commit each partition up to its first envelope not finished yet."""
        assert self.consumer is not None
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        assigned = self.consumer.assignment()
        for tp, hand in list(self._in_hand.items()):
            done = None
            while hand and hand[0][1].done():
                done = hand.popleft()[0]
            if tp not in assigned:  # revoked: its new owner reads from the last commit
                del self._in_hand[tp]
            elif done is not None:
                offsets[tp] = OffsetAndMetadata(done + 1, "")
        if offsets:
            try:
                await self.consumer.commit(offsets)
            except KafkaError as exc:  # a rebalance: the next owner re-delivers (same ids)
                log.warning("webhook offsets not committed: %s", type(exc).__name__)

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
        """One delivery within its project's share of the slots and backlog."""
        assert self.deliverer is not None
        project = hook.project_id
        waiting = self._backlog.get(project, 0)
        if waiting >= self.settings.webhook_backlog_per_project:
            WEBHOOK_DELIVERIES.labels(result="backlog_full").inc()
            return "backlog_full"
        self._backlog[project] = waiting + 1
        try:
            return await self.deliverer.deliver(hook, verdict,
                                                slot=lambda: self._slots.held(project))
        finally:
            left = self._backlog[project] - 1
            if left:
                self._backlog[project] = left
            else:
                del self._backlog[project]

    async def stop(self) -> None:
        if self.lag is not None:
            await self.lag.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        tasks = [task for hand in self._in_hand.values() for _, task in hand]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._in_hand.clear()
        if self.consumer is not None:
            try:
                await asyncio.wait_for(self.consumer.stop(), CONSUMER_STOP_TIMEOUT_S)
            except TimeoutError:
                # a group join in progress holds the stop until the broker answers it (up to
                # the rebalance timeout): leave without it; the broker drops the member after
                # the session timeout and the group's other members take its partitions
                log.warning("webhook dispatcher: the consumer did not stop within %gs (a group "
                            "join in progress); leaving without it", CONSUMER_STOP_TIMEOUT_S)
                # the cancelled stop left its fetcher and connections open: close them
                for part in ("_fetcher", "_client"):  # aiokafka's own parts of the consumer
                    close = getattr(getattr(self.consumer, part, None), "close", None)
                    if close is not None:
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(close(), 2.0)
            except Exception:  # stopping: nothing left to do about it
                log.debug("webhook dispatcher: consumer stop failed", exc_info=True)
        if self.deliverer is not None:
            await self.deliverer.session.close()
