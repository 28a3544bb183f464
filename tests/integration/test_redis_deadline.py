"""Command deadlines of the single-server client (ratchet/store/deadline.py) against a real
redis-server, stopped with SIGSTOP where a hung server is needed: a command, a pipeline and a
write that cannot leave the process all fail with redis-py's own ``TimeoutError`` (which the one
translation turns into 503) within about the deadline, the client answers again once the server
does, a quiet pub/sub listener and an idle pooled connection are left open, and a busy
connection arms one timer, not one per send and per reply as redis-py's ``socket_timeout`` did."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from models.errors import ConfigError, UnavailableError
from ratchet.sandbox.servers import RedisServer
from ratchet.store.deadline import DeadlineConnection
from ratchet.store.keys import Keys
from ratchet.store.redis import connect
from ratchet.store.verdicts import VerdictStore

DEADLINE_S = 0.5


@contextmanager
def _stopped(server: RedisServer) -> Iterator[None]:
    """The server frozen (SIGSTOP): connections stay open, nothing is answered or read."""
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    srv = RedisServer().start()
    try:
        yield srv
    finally:
        assert srv.proc is not None
        if srv.proc.poll() is None:
            os.kill(srv.proc.pid, signal.SIGCONT)
        srv.stop()


async def test_a_hung_server_times_out_then_the_client_recovers(server: RedisServer) -> None:
    client = connect(server.url, timeout_s=DEADLINE_S)
    try:
        await client.set("k", "v")
        assert issubclass(client.connection_pool.connection_class, DeadlineConnection)
        with _stopped(server):
            started = time.monotonic()
            with pytest.raises(RedisTimeoutError, match="Timeout reading"):
                await client.get("k")
            elapsed = time.monotonic() - started
            # the deadline once: a timeout is not retried (a UX audit measured two: 10 s for a
            # documented 5); never a hang
            assert DEADLINE_S * 0.8 <= elapsed < DEADLINE_S * 1.8, elapsed
            pipe = client.pipeline(transaction=False)
            pipe.get("k")
            pipe.ttl("k")
            with pytest.raises(RedisTimeoutError):
                await pipe.execute()
            with pytest.raises(UnavailableError):  # the stores' one translation: 503
                await VerdictStore(client, Keys("t")).get("prj", "evt")
        assert await client.get("k") == b"v"
        pipe = client.pipeline(transaction=False)
        pipe.get("k")
        pipe.exists("k")
        assert await pipe.execute() == [b"v", 1]
    finally:
        await client.aclose()


async def test_a_write_that_cannot_leave_times_out(server: RedisServer) -> None:
    client = connect(server.url, timeout_s=DEADLINE_S)
    try:
        await client.ping()
        big = b"x" * (64 * 1024 * 1024)  # far more than the loopback socket buffers hold
        with _stopped(server):
            # one connection, no retry: the send itself waits, then fails
            conn = await client.connection_pool.get_connection()
            started = time.monotonic()
            with pytest.raises(RedisTimeoutError, match="Timeout writing"):
                await conn.send_command("SET", "big", big)
            assert DEADLINE_S * 0.8 <= time.monotonic() - started <= DEADLINE_S + 1.5
            await client.connection_pool.release(conn)
            # through the client (redis-py retries once, on a new connection): a timeout too
            with pytest.raises(RedisTimeoutError):
                await client.set("big", big)
        assert await client.exists("big") == 0  # the half-sent command never ran
        assert await client.ping() is True
    finally:
        await client.aclose()


async def test_a_quiet_pubsub_listener_is_not_closed(server: RedisServer) -> None:
    client = connect(server.url, timeout_s=0.3)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe("news")
        listeners = [c["id"] for c in await client.client_list(_type="pubsub")]
        assert len(listeners) == 1
        started = time.monotonic()
        while time.monotonic() - started < 1.2:  # four deadlines of silence
            msg = await pubsub.get_message(timeout=0.1, ignore_subscribe_messages=True)
            assert msg is None
        # the same connection (redis-py would quietly reconnect and subscribe again)
        assert [c["id"] for c in await client.client_list(_type="pubsub")] == listeners
        assert await client.publish("news", "hello") == 1  # still subscribed
        got: dict[str, Any] | None = None
        for _ in range(20):
            got = await pubsub.get_message(timeout=0.1, ignore_subscribe_messages=True)
            if got is not None:
                break
        assert got is not None and got["data"] == b"hello"
    finally:
        await pubsub.aclose()
        await client.aclose()


async def test_an_idle_pooled_connection_stays_open(server: RedisServer) -> None:
    client = connect(server.url, timeout_s=0.3)
    try:
        first = await client.client_id()
        await asyncio.sleep(1.0)  # its timer fires while it sits in the pool: nothing awaited
        assert await client.client_id() == first  # the same connection, not a new one
    finally:
        await client.aclose()


async def test_a_busy_connection_arms_one_timer(server: RedisServer) -> None:
    """redis-py's socket_timeout armed a timer per send and per reply read (asyncio.wait_for,
    asyncio.timeout): ≥ 2 per command. The deadline arms one per busy period of a connection."""
    client = connect(server.url, timeout_s=5.0)
    loop = asyncio.get_running_loop()
    original = loop.call_at
    armed = 0

    def counting_call_at(when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal armed
        armed += 1
        return original(when, callback, *args, **kwargs)

    try:
        await client.ping()
        loop.call_at = counting_call_at  # type: ignore[method-assign]
        try:
            for i in range(100):
                await client.set(f"k{i}", i)
                pipe = client.pipeline(transaction=False)
                pipe.get(f"k{i}")
                pipe.incr(f"k{i}")
                await pipe.execute()
        finally:
            loop.call_at = original  # type: ignore[method-assign]
        assert armed <= 2, armed  # 200 round trips, 300 replies
        assert await client.get("k99") == b"100"
    finally:
        await client.aclose()


def test_a_timeout_must_be_positive() -> None:
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="RATCHET_REDIS_TIMEOUT_S"):
            connect("redis://127.0.0.1:1/0", timeout_s=bad)


async def test_pooled_connections_keep_alive(server: RedisServer) -> None:
    """A timeout is not retried, so an idle connection a NAT dropped silently would cost a
    command its timeout: connections send TCP keepalive probes after 30 s idle instead."""
    import socket

    client = connect(server.url, timeout_s=DEADLINE_S)
    try:
        await client.set("k", "v")
        conn = client.connection_pool._available_connections[0]
        sock = conn._writer.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
    finally:
        await client.aclose()
