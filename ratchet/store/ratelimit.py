"""Token buckets per project in Redis: one ``ratelimit.lua`` call per request.

Buckets are keyed by project (``keys.rate_bucket``), not by the key's hash: a project has one live
API key, and rotating it must not hand out a fresh, full bucket.
"""

from __future__ import annotations

import math
from typing import Any

from redis.commands.core import AsyncScript

from models.ratelimit import LimitKind, RateDecision, Tier
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient, RedisStore
from ratchet.store.scripts import scripts_for

__all__ = ["RateLimiter"]


class RateLimiter(RedisStore):
    """Takes tokens from the buckets of one key namespace on one Redis."""

    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.script: AsyncScript = scripts_for(redis)["ratelimit"]

    async def take(
        self, project_id: str, tier: Tier, kind: LimitKind, cost: int, now_ms: int,
        *, debt: bool = False,
    ) -> RateDecision:
        """Take ``cost`` tokens (all or nothing) from the project's ``kind`` bucket; with
        ``debt``, take them even if fewer are left (a charge for work already done: the bucket
        goes below zero, down to minus its capacity, and later requests wait for it)."""
        keys, args = self.call(project_id, tier, kind, cost, now_ms, debt=debt)
        return self.decision(tier, kind, await self.script(keys=keys, args=args))

    def call(
        self, project_id: str, tier: Tier, kind: LimitKind, cost: int, now_ms: int,
        *, debt: bool = False,
    ) -> tuple[list[str], list[str | int]]:
        """``(KEYS, ARGV)`` of the ``ratelimit.lua`` call of :meth:`take` (for callers that send
        it in a pipeline with other commands: gateway admission)."""
        bucket = tier.bucket(kind)
        return ([self.keys.rate_bucket(project_id, kind)],
                [bucket.capacity, repr(bucket.refill_per_ms), now_ms, cost, int(debt)])

    @staticmethod
    def decision(tier: Tier, kind: LimitKind, raw: Any) -> RateDecision:
        """The :class:`RateDecision` in the script's answer ``raw``."""
        allowed, remaining, retry_ms, reset_ms = (int(x) for x in raw)
        retry_s = math.inf if retry_ms < 0 else retry_ms / 1000
        return RateDecision(bool(allowed), tier.bucket(kind).capacity, remaining,
                            reset_ms / 1000, retry_s)
