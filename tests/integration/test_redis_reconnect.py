"""A Redis restart costs no request: pooled connections that died with the old server are
detected and replaced, not surfaced as one 503 per pooled connection (the client factory)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from models.errors import UnavailableError
from ratchet.sandbox.servers import RedisServer
from ratchet.store.keys import Keys
from ratchet.store.redis import connect
from ratchet.store.verdicts import VerdictStore

POOL = 32


async def _fill_pool(client: Redis) -> None:
    """Open POOL connections at once (each BLPOP holds its own until it times out)."""
    await asyncio.gather(*(client.blpop([f"nothing-{i}"], timeout=0.3) for i in range(POOL)))


async def test_restart_then_every_pooled_connection_answers() -> None:
    server = RedisServer().start()
    port = server.port
    client = connect(server.url, timeout_s=2.0)
    try:
        await _fill_pool(client)
        assert len(client.connection_pool._available_connections) >= POOL  # type: ignore[attr-defined]
        server.kill()
        server = RedisServer(port=port).start()
        await asyncio.sleep(0.5)
        store = VerdictStore(client, Keys("t"))
        results = await asyncio.gather(
            *(store.get("prj", f"evt-{i}") for i in range(POOL)), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        assert not failed, f"{len(failed)} of {POOL} lookups failed after the restart: {failed[:3]}"
    finally:
        await client.aclose()
        server.stop()


async def test_redis_still_down_is_unavailable_not_a_hang() -> None:
    server = RedisServer().start()
    client = connect(server.url, timeout_s=0.5)
    try:
        await client.ping()
        server.kill()
        with pytest.raises(UnavailableError):
            await VerdictStore(client, Keys("t")).get("prj", "evt")
    finally:
        await client.aclose()
        server.stop()
