"""The waiting Redis pool (ratchet/store/pool.py) against a real redis-server: commands beyond
``max_connections`` wait for a connection instead of failing, never open more than the cap, and
give up with a clear connection error after ``wait_s`` (which the one translation turns into
503). With redis-py's own pool the first test fails with ``MaxConnectionsError``. The pool's
short paths (an idle connection handed out without redis-py's lock and hooks, a release finished
before it returns) reuse one connection for commands in a row and never hand out a connection
with a reply nobody read."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from models.errors import UnavailableError
from ratchet.store.redis import connect, translate


async def test_commands_beyond_the_cap_wait_for_a_connection(redis_url: str) -> None:
    client = connect(redis_url, max_connections=2)
    try:
        await client.set("pool:k", "v")
        got = await asyncio.gather(*(client.get("pool:k") for _ in range(60)))
        assert got == [b"v"] * 60
        pool = client.connection_pool
        assert len(pool._in_use_connections) + len(pool._available_connections) <= 2
    finally:
        await client.aclose()


async def test_a_command_gives_up_after_the_wait(redis_url: str) -> None:
    client = connect(redis_url, timeout_s=0.3, max_connections=1)
    try:
        pool = client.connection_pool
        held = await pool.get_connection()  # the only connection, busy
        with pytest.raises(RedisConnectionError, match="no Redis connection came free") as err:
            await client.get("pool:k")
        assert isinstance(translate(err.value), UnavailableError)
        # a command waiting when the connection is released gets it
        waiting = asyncio.create_task(client.get("pool:never-set"))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await pool.release(held)
        assert await waiting is None
        await client.set("pool:k2", "x")  # the connection is free again
        assert await client.get("pool:k2") == b"x"
    finally:
        await client.aclose()


async def test_commands_in_a_row_reuse_one_connection(redis_url: str) -> None:
    client = connect(redis_url)
    try:
        first = await client.client_id()
        for i in range(50):
            pipe = client.pipeline(transaction=False)
            pipe.set(f"pool:row{i}", i)
            pipe.get(f"pool:row{i}")
            assert await pipe.execute() == [True, str(i).encode()]
        assert await client.client_id() == first
        pool = client.connection_pool
        assert len(pool._in_use_connections) == 0
        assert len(pool._available_connections) == 1
    finally:
        await client.aclose()


async def test_a_release_is_finished_when_it_returns(redis_url: str) -> None:
    """redis-py's pipelines release through asyncio.shield, which runs a coroutine as a new
    task; a finished future passes straight through."""
    client = connect(redis_url)
    try:
        pool = client.connection_pool
        conn = await pool.get_connection()
        released = pool.release(conn)
        assert isinstance(released, asyncio.Future) and released.done()
        assert conn in pool._available_connections and conn not in pool._in_use_connections
        await released
    finally:
        await client.aclose()


async def test_a_connection_with_an_unread_reply_is_not_handed_out(redis_url: str) -> None:
    client = connect(redis_url, max_connections=1)
    try:
        await client.set("pool:dirty", "v")
        pool = client.connection_pool
        conn = await pool.get_connection()
        await conn.send_command("GET", "pool:other")  # its reply is never read
        await asyncio.sleep(0.2)  # the reply arrives in the connection's buffer
        await pool.release(conn)
        assert await client.get("pool:dirty") == b"v"  # not the stale reply (None)
        assert await client.get("pool:dirty") == b"v"
    finally:
        await client.aclose()
