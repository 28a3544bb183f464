"""A connection torn down under a command is a broken connection (retry later: 503 at the
gateway), never an internal error — also when the event loop's transport, not redis-py, is
what raises.

Seen in failovers of the test cluster (``test_cluster_failover``, about one run in twenty):
redis-py's cluster client disconnected a connection another request was writing to, and
uvloop raised ``RuntimeError: ... the handler is closed`` from the transport's ``writelines``
under redis-py's write — a 500 at the gateway. Reproduced here exactly, on a real connection:
its transport closed under it, then redis-py writes.

redis-py 8.2 asks ``transport.is_closing()`` before it writes and raises its own
``ConnectionError`` when it is; older releases (``redis>=5.0`` allows them) write straight
away. The tests that need the write to reach the transport hide the closing flag, so the
transport's own failure is what redis-py meets on every version."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import urlparse

import pytest
import redis.asyncio as aioredis
import uvloop

from models.errors import UnavailableError
from ratchet.store.redis import RedisStore, client_broke


async def _torn_down(url: str, *, hide_closing: bool = True) -> aioredis.Connection:
    """A connected redis-py connection whose transport another coroutine has just closed.

    With ``hide_closing`` the stream writer's transport answers ``is_closing()`` with False
    (the window before the flag is seen) and hands ``writelines`` to the real, closed
    transport — the bound method itself, so the traceback is the event loop's, as in the
    failover."""
    u = urlparse(url)
    conn = aioredis.Connection(host=u.hostname or "127.0.0.1", port=u.port or 6379)
    await cast(Any, conn).connect()  # untyped in redis-py 8.2
    writer: Any = conn._writer
    transport = writer.transport
    transport.close()
    await asyncio.sleep(0)
    assert transport.is_closing()
    if hide_closing:
        writer._transport = SimpleNamespace(
            is_closing=lambda: False, writelines=transport.writelines, close=transport.close,
            get_extra_info=transport.get_extra_info, abort=transport.abort,
        )
    return conn


def test_a_write_to_a_transport_closed_under_redis_py_is_a_broken_connection(
    redis_url: str,
) -> None:
    class Store(RedisStore):
        async def ping(self, conn: aioredis.Connection) -> None:
            await conn.send_packed_command(conn.pack_command("PING"))

    async def run() -> None:
        conn = await _torn_down(redis_url)
        with pytest.raises(RuntimeError, match="closed") as raised:
            await conn.send_packed_command(conn.pack_command("PING"))
        assert client_broke(raised.value)
        # through a store: unavailable (the gateway's 503 with Retry-After, a worker's retry)
        with pytest.raises(UnavailableError, match="RuntimeError"):
            await Store().ping(await _torn_down(redis_url))
        # redis-py seeing the flag itself (8.2+) or the socket's error: unavailable too
        with pytest.raises(UnavailableError):
            await Store().ping(await _torn_down(redis_url, hide_closing=False))

    uvloop.run(run())  # the gateway's and the worker's loop: asyncio's transport raises nothing


def test_the_same_error_from_our_own_code_is_not_a_broken_connection(redis_url: str) -> None:
    async def run() -> None:
        conn = await _torn_down(redis_url)
        transport: Any = conn._writer.transport  # type: ignore[union-attr]
        # the transport's error with no redis-py frame above it: our code wrote there
        with pytest.raises(RuntimeError) as raised:
            transport.writelines([b"PING\r\n"])
        assert not client_broke(raised.value)

        # a response callback of ours, called by redis-py, raising: ours, not the connection's
        def ours(response: Any, **options: Any) -> Any:
            raise RuntimeError("a bug in a callback")

        client = aioredis.Redis.from_url(redis_url)
        client.set_response_callback("PING", ours)
        try:
            with pytest.raises(RuntimeError, match="a bug") as raised:
                await client.ping()
            assert not client_broke(raised.value)
        finally:
            await client.aclose()
        assert not client_broke(RuntimeError("no traceback"))

    uvloop.run(run())
