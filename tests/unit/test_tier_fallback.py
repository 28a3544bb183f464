"""A project whose stored tier the gateway does not know gets the default tier, with a warning
once per project (attack run 9, R10: the fallback was silent), and the rejection metric's help
names every limit it counts."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest

from gateway.metrics import RATELIMIT_REJECTED
from gateway.tiers import TierCache
from models.ratelimit import Tier
from ratchet.store.keys import Keys


class _Redis:
    def __init__(self, tiers: dict[str, str]) -> None:
        self.tiers = tiers

    async def hget(self, key: str, field: str) -> bytes | None:
        assert field == "tier"
        for project, tier in self.tiers.items():
            if project in key:
                return tier.encode()
        return None


TIERS = {"free": Tier("free", 120, 20), "standard": Tier("standard", 6000, 300)}


async def test_an_unknown_stored_tier_is_warned_about_once_per_project(
        caplog: pytest.LogCaptureFixture) -> None:
    redis = cast(Any, _Redis({"prj_a": "high_volume", "prj_b": "standard", "prj_c": "gold"}))
    cache = TierCache(dict(TIERS), "free", ttl_s=0.0)
    with caplog.at_level(logging.WARNING, logger="gateway.tiers"):
        for _ in range(3):
            assert (await cache.tier_of(redis, Keys(), "prj_a")).name == "free"
            assert (await cache.tier_of(redis, Keys(), "prj_b")).name == "standard"
            assert (await cache.tier_of(redis, Keys(), "prj_c")).name == "free"
            assert (await cache.tier_of(redis, Keys(), "prj_none")).name == "free"
            await asyncio.sleep(0.001)  # past the (zero) TTL: looked up again
    warned = [r.getMessage() for r in caplog.records if r.name == "gateway.tiers"]
    assert len(warned) == 2, warned
    assert "prj_a" in warned[0] and "'high_volume'" in warned[0] and "'free'" in warned[0]
    assert "RATCHET_RATE_LIMIT_TIERS" in warned[0]
    assert "prj_c" in warned[1] and "'gold'" in warned[1]


def test_the_rejection_metric_names_the_api_limit() -> None:
    assert "api" in RATELIMIT_REJECTED._documentation
