"""A gateway with test-specific settings (no tests here): ``async with own_gateway(s) as gw``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from ratchet.config.settings import Settings
from ratchet.store.keys import Keys
from tests.integration.gateway_support import (
    Gateway,
    start_gateway,
)

__all__ = ["own_gateway"]


@asynccontextmanager
async def own_gateway(settings: Settings) -> AsyncIterator[Gateway]:
    """Start a gateway for ``settings`` (usually ``gw_settings.replace(...)``); always stopped."""
    server = await start_gateway(settings)
    assert settings.redis_url
    redis = Redis.from_url(settings.redis_url)
    try:
        yield Gateway(server, settings, redis, Keys(settings.key_prefix))
    finally:
        await redis.aclose()
        await server.close()
