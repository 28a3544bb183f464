"""A Redis connection pool that waits for a free connection instead of refusing the command.

redis-py's asyncio ``ConnectionPool`` raises ``MaxConnectionsError`` at once when all of its
``max_connections`` are in use: a burst of concurrent requests from one tenant then made other
tenants' requests fail with 503 (benchmarks/attack.py). redis-py's ``BlockingConnectionPool``
waits, but takes an ``asyncio.Condition`` on every command: 22–25 % more client CPU per command
than the plain pool on the development machine (``python -m benchmarks.redis_pool``). In this
pool only a command that finds no connection waits — for the next connection released, up to
``wait_s`` — then raises a ``ConnectionError`` (Redis unavailable, 503) saying so.

The usual command is also cheaper than on redis-py's own pool: an idle connection that is
connected and has nothing unread is handed out without the pool's lock, its connect-retry
wrapper and its observability hooks, and a release back to the pool is finished before it
returns (redis-py's pipelines release through ``asyncio.shield``, which would otherwise run the
release as a task of its own). Anything else — a new, closed or unclean connection, a connection
marked for reconnection — takes redis-py's path. (Not fed on the short paths: redis-py's optional
OpenTelemetry connection counts and its released-connection event, neither used by Ratchet.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError

from ratchet.store.deadline import DeadlineConnection

__all__ = ["WaitingConnectionPool"]


class WaitingConnectionPool(ConnectionPool):
    """``ConnectionPool`` whose commands wait up to ``wait_s`` for a connection when all
    ``max_connections`` are busy."""

    def __init__(self, *args: Any, wait_s: float = 5.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wait_s = wait_s
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        # The usual case: the newest idle connection, still connected, with nothing unread —
        # what redis-py's get_connection checks, without its lock (nothing here awaits between
        # taking the connection and marking it in use), its connect retry wrapper and its
        # observability hooks.
        available = self._available_connections
        if available:
            connection = available.pop()
            unread = False
            try:
                clean = connection.is_connected and not (unread := await connection.can_read())
            except Exception:  # noqa: BLE001  (the full path below reconnects it)
                clean = False
            if clean:
                self._in_use_connections.add(connection)
                return connection
            if unread:
                # bytes nobody asked for (a reply left unread): its next reply would be a
                # stale one. redis-py hands such a connection out when RESP3 maintenance
                # notifications are on (its default); closed here, it reconnects below.
                await connection.disconnect()
            available.append(connection)
        deadline: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            try:
                return await super().get_connection()  # type: ignore[no-untyped-call,no-any-return]
            except MaxConnectionsError:
                if deadline is None:
                    deadline = loop.time() + self.wait_s
            left = deadline - loop.time()
            if left <= 0:
                raise RedisConnectionError(
                    f"no Redis connection came free within {self.wait_s:g} s (all "
                    f"{self.max_connections} in use)") from None
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(waiter), left)
            finally:
                if not waiter.done():
                    waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def release(self, connection: AbstractConnection) -> asyncio.Future[None]:  # type: ignore[override]
        """Back to the pool. Awaitable like redis-py's ``async def release``, but the usual
        case is done before it returns: redis-py's pipelines release through ``asyncio.shield``,
        which runs a coroutine as a new task (one more turn of the event loop per round trip)
        and passes an already finished future straight through."""
        if isinstance(connection, DeadlineConnection):
            connection.mark_idle()  # nothing awaited on it any more: its deadline lapses
        if connection in self._in_use_connections and not connection.should_reconnect():  # type: ignore[no-untyped-call]
            self._in_use_connections.remove(connection)
            self._available_connections.append(connection)
            self._wake_one()
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        return asyncio.ensure_future(self._release(connection))

    async def _release(self, connection: AbstractConnection) -> None:
        await super().release(connection)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:  # wake the oldest command still waiting
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
