"""Command timeouts for a single Redis server's connections, without a timer per command.

redis-py enforces ``socket_timeout`` per operation: every send runs under ``asyncio.wait_for``
(on CPython 3.11 a new task and an extra turn of the event loop) and every reply read under its
own ``asyncio.timeout`` (a timer armed and cancelled). A single event's admission round trip reads
five or six replies, so that machinery ran six or seven times per round trip; measured on the
development VM (``python -m benchmarks.redis_client``), it cost ≈ 30 µs of client CPU per round
trip of one command and ≈ 80 µs per round trip of five (``docs/performance.md``, "A Redis round
trip's client cost halved").

:class:`DeadlineConnection` keeps the same guarantee with one timer per busy connection: the
pool's connections get no ``socket_timeout`` (redis-py's fast paths), and each connection
remembers when it last made progress on a command it is waiting for (a send, or a reply read).
One timer per connection — armed when a command starts on an idle one, re-armed only when it
fires while the connection is still busy — closes the connection when no progress was made for
``deadline_s``; the operation that was waiting then fails with the same ``TimeoutError`` redis-py
raises for a socket timeout ("Timeout reading from …", "Timeout writing to socket"), so the
store's failure translation (unavailable, 503) is the same as for one (a timeout is not retried:
ratchet.store.redis.connect).

A connection is busy from its first send until it goes back to the pool
(:meth:`ratchet.store.pool.WaitingConnectionPool.release`). Reads with their own timeout (a
pub/sub listener's ``get_message(timeout=…)``) are the caller's to time and are not watched, so a
listening pub/sub connection is never closed for being quiet. A Redis Cluster client keeps
redis-py's own per-operation timeouts (its connections are not built by this pool).
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["DeadlineConnection", "with_deadline"]

#: A timer that fires this much before its due time (the loop's clock granularity) re-arms
#: instead of closing the connection.
_SLACK_S = 0.001


class DeadlineConnection:
    """Mixin in front of ``redis.asyncio.connection.Connection`` (see the module docstring)."""

    #: Seconds without progress on a command before the connection is closed
    #: (``RATCHET_REDIS_TIMEOUT_S``; set per class by :func:`with_deadline`).
    deadline_s: float = 5.0
    # Per connection (class defaults: nothing to initialise):
    #: loop time of the last progress while busy; ``None`` while idle
    _since: float | None = None
    #: the connection's one timer, while armed
    _watch: asyncio.TimerHandle | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    #: the timer closed the connection: the failing operation is a timeout
    _expired: bool = False

    def _stamp(self) -> None:
        """Progress: a command is being sent (arms the timer on an idle connection)."""
        loop = self._loop
        if self._watch is None or loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
            self._expired = False
            self._since = now = loop.time()
            self._watch = loop.call_at(now + self.deadline_s, self._check)
        else:
            self._since = loop.time()

    def mark_idle(self) -> None:
        """Back in the pool: nothing is awaited (the timer, if armed, lapses when it fires)."""
        self._since = None

    def _check(self) -> None:
        self._watch = None
        since, loop = self._since, self._loop
        if since is None or loop is None:
            return
        due = since + self.deadline_s
        if loop.time() + _SLACK_S < due:
            self._watch = loop.call_at(due, self._check)
            return
        self._expired = True
        writer = getattr(self, "_writer", None)
        if writer is not None:
            writer.transport.abort()  # the waiting read or drain fails at once

    def _timed_out(self) -> bool:
        expired, self._expired = self._expired, False
        return expired

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        self._stamp()
        try:
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
        except Exception:
            if self._timed_out():
                raise RedisTimeoutError("Timeout writing to socket") from None
            raise
        # a write the timer aborted can also end quietly (asyncio wakes a paused writer without
        # an error when its connection closes): the command did not leave, so it timed out
        if self._timed_out():
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket")

    async def read_response(
        self, disable_decoding: bool = False, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        if timeout is not None:  # the caller times this read itself (pub/sub)
            self._since = None
            return await super().read_response(  # type: ignore[misc]
                disable_decoding, timeout, **kwargs)
        if self._since is None:
            self._stamp()
        try:
            response = await super().read_response(  # type: ignore[misc]
                disable_decoding, None, **kwargs)
        except Exception:
            if self._timed_out():
                await self.disconnect(nowait=True)
                host = self._host_error()  # type: ignore[attr-defined]
                raise RedisTimeoutError(f"Timeout reading from {host}") from None
            raise
        loop = self._loop
        if self._since is not None and loop is not None:
            self._since = loop.time()
        return response

    async def disconnect(self, *args: Any, **kwargs: Any) -> None:
        watch, self._watch, self._since = self._watch, None, None
        if watch is not None:
            watch.cancel()
        await super().disconnect(*args, **kwargs)  # type: ignore[misc]


_CLASSES: dict[tuple[type[Any], float], type[Any]] = {}


def with_deadline(cls: type[Any], deadline_s: float) -> type[Any]:
    """``cls`` (a redis-py asyncio connection class) with :class:`DeadlineConnection` in front,
    closing a connection after ``deadline_s`` without progress."""
    if deadline_s <= 0:
        raise ValueError("a command deadline must be positive")
    fast = _CLASSES.get((cls, deadline_s))
    if fast is None:
        fast = _CLASSES[(cls, deadline_s)] = type(
            f"Deadline{cls.__name__}", (DeadlineConnection, cls), {"deadline_s": deadline_s})
    return fast
