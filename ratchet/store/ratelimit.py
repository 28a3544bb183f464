"""Token buckets per project in Redis: one ``ratelimit.lua`` call per request.

Buckets are keyed by project (``keys.rate_bucket``), not by the key's hash: a project has one live
API key, and rotating it must not hand out a fresh, full bucket.
"""

from __future__ import annotations

import math
from typing import Any

from redis.commands.core import AsyncScript

from models.ratelimit import (
    SPREAD,
    SPREAD_BURST_S,
    Bucket,
    LimitKind,
    RateDecision,
    Tier,
    check_spread_burst,
    spread_charge,
)
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient, RedisStore
from ratchet.store.scripts import scripts_for

__all__ = ["RateLimiter"]


class RateLimiter(RedisStore):
    """Takes tokens from the buckets of one key namespace on one Redis."""

    def __init__(self, redis: RedisClient, keys: Keys, *,
                 spread_burst_s: float = SPREAD_BURST_S) -> None:
        check_spread_burst(spread_burst_s)
        self.redis = redis
        self.keys = keys
        self.spread_burst_s = spread_burst_s
        self.script: AsyncScript = scripts_for(redis)["ratelimit"]

    def spread_bucket(self, tier: Tier) -> Bucket:
        """The tier's spread bucket on this limiter (models/ratelimit.py ``Tier.spread_bucket``)."""
        return tier.spread_bucket(self.spread_burst_s)

    async def take(
        self, project_id: str, tier: Tier, kind: LimitKind, cost: int, now_ms: int,
        *, debt: bool = False, spread: int = 0,
    ) -> RateDecision:
        """Take ``cost`` tokens (all or nothing) from the project's ``kind`` bucket; with
        ``debt``, take them even if fewer are left (a charge for work already done: the bucket
        goes below zero, down to minus its capacity, and later requests wait for it); with
        ``spread`` (an ingest batch's envelope tokens, part of ``cost``), take them from the
        project's spread bucket too, in the same all-or-nothing step (refused by the spread
        bucket alone, the request's other tokens are taken from the ingest bucket all the
        same, down to zero: the work of reading it)."""
        keys, args = self.call(project_id, tier, kind, cost, now_ms, debt=debt, spread=spread)
        return self.decision(tier, kind, await self.script(keys=keys, args=args))

    def call(
        self, project_id: str, tier: Tier, kind: LimitKind, cost: int, now_ms: int,
        *, debt: bool = False, spread: int = 0,
    ) -> tuple[list[str], list[str | int]]:
        """``(KEYS, ARGV)`` of the ``ratelimit.lua`` call of :meth:`take` (for callers that send
        it in a pipeline with other commands: gateway admission)."""
        bucket = tier.bucket(kind)
        keys = [self.keys.rate_bucket(project_id, kind)]
        args: list[str | int] = [bucket.capacity, repr(bucket.refill_per_ms), now_ms, cost,
                                 int(debt)]
        if spread > 0 and not debt:
            second = self.spread_bucket(tier)
            keys.append(self.keys.rate_bucket(project_id, SPREAD))
            # refused by the spread bucket alone, the request still pays its events' tokens
            # (it was read and parsed): a flood of refused batches drains the ingest bucket
            args += [second.capacity, repr(second.refill_per_ms),
                     spread_charge(spread, second.capacity), max(cost - spread, 0)]
        return keys, args

    @staticmethod
    def decision(tier: Tier, kind: LimitKind, raw: Any) -> RateDecision:
        """The :class:`RateDecision` in the script's answer ``raw``."""
        allowed, remaining, retry_ms, reset_ms, refused_by = (int(x) for x in raw)
        retry_s = math.inf if retry_ms < 0 else retry_ms / 1000
        return RateDecision(bool(allowed), tier.bucket(kind).capacity, remaining,
                            reset_ms / 1000, retry_s, SPREAD if refused_by == 2 else "")
