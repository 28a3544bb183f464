"""The gateway's reply listener: verdicts of its own waiting callers, and nothing else.

At start the instance draws a random reply route and subscribes to its channel
(:mod:`ratchet.store.replies` says why Redis pub/sub) *before* the server accepts traffic, so no
reply to a request it accepted can be missed while it is subscribed. Ingest envelopes of callers
waiting with ``wait_ms`` carry the route; workers publish those envelopes' verdicts (compact wire
format, :mod:`models.verdict_wire`) to it. Bytes read are counted in
``ratchet_gateway_verdict_bytes_read_total``: they grow with this gateway's waiters, not with
the verdict traffic of the deployment.

A reply this gateway cannot read (an unknown wire version, garbage) is logged with what was
wrong and counted in ``ratchet_gateway_errors_total{kind="bad_verdict_message"}``; the listener
carries on. If Redis is down at start, the subscription connection drops or Redis ends the
subscription (on a cluster: the channel's slot moved to another node, after a failover or during
a resharding), the listener keeps subscribing again in the background, on the node that owns the
slot now (the gateway starts and serves meanwhile); replies published
while it is not subscribed are lost and their callers get ``202`` at the end of their wait and
read the verdict with ``GET /v1/verdicts/{event_id}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from redis.asyncio.cluster import RedisCluster

from gateway.metrics import GATEWAY_ERRORS, VERDICT_BYTES_READ
from gateway.waiters import Waiters
from models.errors import RatchetError, UnavailableError
from models.verdict_wire import decode_compact, wire_version
from ratchet.store.keys import Keys
from ratchet.store.redis import REDIS_FAILURES, RedisClient, refresh_topology

__all__ = ["ReplyListener"]

log = logging.getLogger(__name__)

#: Redis is down or did not confirm the subscription.
_DOWN: tuple[type[BaseException], ...] = (UnavailableError, *REDIS_FAILURES)

#: Messages by which the server ends a subscription (sent for a sharded channel when its slot
#: goes to another node: a replica promoted by ``CLUSTER FAILOVER``, a migrated slot).
_DROPPED = frozenset({"sunsubscribe", "unsubscribe"})


class ReplyListener:
    """Subscribes this gateway instance's reply channel and wakes its waiters."""

    def __init__(self, redis: RedisClient, keys: Keys, waiters: Waiters) -> None:
        self.redis = redis
        self.waiters = waiters
        #: This instance's reply route (random per start: a restarted gateway is a new route).
        self.route = uuid.uuid4().hex
        self.channel = keys.reply_channel(self.route)
        self._sharded = isinstance(redis, RedisCluster)
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe and wait for Redis to confirm the subscription; then start listening.

        With Redis down the gateway still starts (it answers ``503`` and ``/readyz`` says why,
        as without reply routes): the listener keeps trying in the background, and waiting
        callers get ``202`` until it is subscribed."""
        try:
            await self._subscribe()
        except _DOWN as exc:
            GATEWAY_ERRORS.labels("redis_unavailable").inc()
            log.warning("reply listener: cannot subscribe yet (%s); retrying in the background",
                        type(exc).__name__)
            await self._close_pubsub()
        self._task = asyncio.create_task(self._run(), name="ratchet-reply-listener")

    async def _subscribe(self) -> None:
        """A fresh subscription, confirmed by Redis; on failure nothing is left half open."""
        await self._close_pubsub()
        if self._sharded:
            # a sharded subscription picks its node from the slot map: discover the topology
            # first (a fresh client has none until its first command, and would refuse the
            # channel's slot as not covered; after a failover the map may still name the dead
            # master when this gateway has sent no command since)
            await refresh_topology(self.redis)
        self._pubsub = self.redis.pubsub()
        try:
            if self._sharded:
                # sharded pub/sub: the node that owns the channel's slot carries it (redis-py
                # follows the slot if it migrates)
                await self._pubsub.ssubscribe(self.channel)
            else:
                await self._pubsub.subscribe(self.channel)
            await self._confirm()
        except BaseException:
            await self._close_pubsub()
            raise

    async def _confirm(self, timeout_s: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            msg = await self._get(timeout=0.2, ignore_subscribe_messages=False)
            if msg is not None and msg.get("type") in ("subscribe", "ssubscribe"):
                return
        raise UnavailableError("Redis did not confirm the reply channel subscription")

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                if self._pubsub is None:
                    await self._subscribe()
                    if failures:
                        log.info("reply listener: subscribed again")
                    failures = 0
                msg = await self._get(timeout=1.0, ignore_subscribe_messages=False)
                if msg is not None and msg.get("type") in _DROPPED:
                    # the server ended the subscription: on a cluster, the channel's slot moved
                    # (a failover, a resharding); subscribe again where the slot is now
                    raise UnavailableError(f"Redis ended the subscription ({msg['type']!r})")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  (keep listening through Redis hiccups)
                GATEWAY_ERRORS.labels("redis_unavailable").inc()
                if failures % 20 == 0:
                    log.warning("reply listener: %s; subscribing again (waiting callers get "
                                "202 meanwhile)", type(exc).__name__)
                failures += 1
                await self._close_pubsub()
                # the first time at once (a moved slot is served elsewhere already), then paced
                await asyncio.sleep(0.5 if failures > 1 else 0.0)
                continue
            if msg is not None and msg.get("type") in ("message", "smessage"):
                self.handle(msg["data"])

    async def _get(self, *, timeout: float, ignore_subscribe_messages: bool) -> Any:
        if self._sharded:
            return await self._pubsub.get_sharded_message(
                ignore_subscribe_messages=ignore_subscribe_messages, timeout=timeout)
        return await self._pubsub.get_message(
            ignore_subscribe_messages=ignore_subscribe_messages, timeout=timeout)

    def handle(self, value: bytes) -> int:
        """Deliver one reply to the waiters; returns how many callers it woke."""
        VERDICT_BYTES_READ.inc(len(value))
        try:
            env = decode_compact(value)
        except (RatchetError, KeyError, TypeError, ValueError) as exc:
            GATEWAY_ERRORS.labels("bad_verdict_message").inc()
            log.warning("reply listener: skipped a reply of wire version %s (%d bytes): %s",
                        wire_version(value), len(value), exc)
            return 0
        return self.waiters.deliver(env)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self._close_pubsub()

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(pubsub.aclose(), 5.0)
