"""A Redis connection pool that waits for a free connection instead of refusing the command.

redis-py's asyncio ``ConnectionPool`` raises ``MaxConnectionsError`` at once when all of its
``max_connections`` are in use: a burst of concurrent requests from one tenant then made other
tenants' requests fail with 503 (benchmarks/attack.py). redis-py's ``BlockingConnectionPool``
waits, but takes an ``asyncio.Condition`` on every command: 22–25 % more client CPU per command
than the plain pool on the development machine (``python -m benchmarks.redis_pool``). This pool
keeps the plain pool's path for every command that finds a connection, and only a command that
finds none waits — for the next connection released, up to ``wait_s`` — then raises a
``ConnectionError`` (Redis unavailable, 503) saying so.
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

    async def release(self, connection: AbstractConnection) -> None:
        if isinstance(connection, DeadlineConnection):
            connection.mark_idle()  # nothing awaited on it any more: its deadline lapses
        await super().release(connection)
        while self._waiters:  # wake the oldest command still waiting
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
