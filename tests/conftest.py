"""Shared fixtures: real servers on free loopback ports, always stopped.

``RATCHET_TEST_REDIS_URL`` / ``RATCHET_TEST_KAFKA_BOOTSTRAP`` point the suite at external
servers instead (each test still works in its own key prefix / topic names).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from ratchet.sandbox.servers import RedisClusterServer, RedisServer, TansuServer
from ratchet.store.keys import Keys


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    external = os.environ.get("RATCHET_TEST_REDIS_URL")
    if external:
        yield external
        return
    with RedisServer() as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServer]:
    with RedisClusterServer(masters=3) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get("RATCHET_TEST_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    with TansuServer() as broker:
        yield broker.bootstrap


@pytest.fixture
def key_prefix() -> str:
    """A fresh key namespace per test: tests never see each other's state."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def keys(key_prefix: str) -> Keys:
    return Keys(key_prefix)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()
