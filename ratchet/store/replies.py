"""Reply routes: workers hand the verdicts of a waiting caller to the gateway instance it is on.

Every gateway instance draws a random *reply route* at start and subscribes to its channel
(:meth:`ratchet.store.keys.Keys.reply_channel`) before it accepts traffic; an ingest envelope
with a waiting caller carries that route, and the worker publishes the envelope's verdicts there
(as well as to the ``verdicts`` topic, the durable record). So a gateway reads the verdicts of its
own waiters and nothing else, whatever the number of gateways.

Why Redis pub/sub and not a Kafka reply topic or partition per gateway: nothing is created per
instance, so nothing leaks when an instance dies (a channel exists only while someone listens);
no lease to hold or hand over; delivery is pushed, so an idle gateway does not poll a broker
(each group-less Kafka consumer polling at a 50 ms fetch wait costs ≈ 5.6 % of a core on Tansu
and ≈ 3.5 % in the consumer while idle, docs/operations.md). Pub/sub is at most once: a reply
whose gateway is gone (or whose subscription is reconnecting) is dropped, and the caller —
whose HTTP request ended with its gateway, or timed out with ``202`` — reads the verdict with
``GET /v1/verdicts/{event_id}``, because workers publish only after the verdicts are saved.

On Redis Cluster the channel is a sharded channel (``SPUBLISH``/``SSUBSCRIBE``, Redis ≥ 7): one
shard carries it instead of the cluster bus broadcasting every reply to every node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient, RedisStore
from ratchet.store.round import Command, Op

__all__ = ["ReplyPublisher"]


class ReplyPublisher(RedisStore):
    """Publishes verdict envelopes to the reply routes of the gateways waiting for them."""

    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def ops(self, replies: Sequence[tuple[str, bytes]]) -> list[Op] | None:
        """The ``PUBLISH`` commands of ``replies``, to send behind the verdict save in the same
        pipeline (``VerdictStore.save_many(after=…)``; their answers are what :meth:`publish`
        answers). None on a Redis Cluster: there the sharded replies go by :meth:`publish`,
        after the save (a cluster round does not run in order)."""
        if isinstance(self.redis, RedisCluster):
            return None
        return [Command(("PUBLISH", self.keys.reply_channel(route), body))
                for route, body in replies]

    async def publish(self, replies: Sequence[tuple[str, bytes]]) -> list[int]:
        """Publish ``(route, body)`` pairs (one round trip on a single Redis); per pair, how many
        listeners received it (0: that gateway is gone)."""
        if not replies:
            return []
        channels = [(self.keys.reply_channel(route), body) for route, body in replies]
        if isinstance(self.redis, RedisCluster):
            cluster = self.redis
            return list(await asyncio.gather(
                *(cluster.spublish(ch, body) for ch, body in channels)
            ))
        single: Redis = self.redis
        async with single.pipeline(transaction=False) as pipe:
            for ch, body in channels:
                pipe.publish(ch, body)
            return [int(n) for n in await pipe.execute()]
