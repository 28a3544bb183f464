"""Plain pipelines of a single Redis server without redis-py's per-execute machinery.

Every round trip a Ratchet process makes on its hot paths is a non-transactional pipeline: a
single event's admission in the gateway (``ratchet.store.admission``), the worker's rounds
(``ratchet.store.round``), the verdict save, the reply ``PUBLISH``. redis-py 8's
``Pipeline.execute`` wraps each of them in work none of them uses: the ``HIMPORT`` field-set
preparation of every command, observability hooks before and after, a reset that releases the
connection through ``asyncio.shield`` and looks up ``UNWATCH``/``WATCH`` per reply, and a
case-insensitive dictionary lookup per reply through two layers of ``parse_response``.
Measured on the development VM (``python -m benchmarks.redis_client``, a round trip of three
commands): about a fifth of the client's CPU per round trip.

:class:`LeanPipeline` sends the same bytes and reads the same replies: it packs the queued
commands with the connection's packer, sends them in one write, reads one reply per command
(an error reply becomes that command's answer, as in redis-py), applies the client's response
callback, and then raises the first error when asked to — redis-py's ``raise_first_error``,
message included. A connection error or timeout is retried as redis-py retries it: the
connection's own ``Retry`` (``ratchet.store.redis.connect``: once), the connection closed first,
the whole pipeline sent again. Everything else — transactions, ``WATCH``, pipelined ``Script``
objects, commands with reply options (``NEVER_DECODE``, ``EMPTY_RESPONSE``), a pipeline holding
a connection already — takes redis-py's own ``execute``. Redis Cluster clients keep redis-py's
cluster pipeline.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import AbstractConnection
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import ResponseError

__all__ = ["LeanPipeline", "LeanRedis"]

_REPLY_OPTIONS = (NEVER_DECODE, EMPTY_RESPONSE)


class LeanPipeline(Pipeline):
    """``Pipeline`` whose plain (non-transactional) execute is one write and the replies."""

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack = self.command_stack
        if (self.is_transaction or self.explicit_transaction or self.watching or self.scripts
                or self.connection is not None or not stack
                or any(opt in options for _, options in stack for opt in _REPLY_OPTIONS)):
            return await super().execute(raise_on_error)
        self.command_stack = []
        pool = self.connection_pool
        conn: AbstractConnection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            answers: list[Any] = await conn.retry.call_with_retry(
                lambda: self._exchange(conn, stack),
                lambda _error: conn.disconnect(),
            )
        finally:
            await pool.release(conn)
        if raise_on_error:
            self.raise_first_error(stack, answers)
        return answers

    async def _exchange(
        self, conn: AbstractConnection, stack: Sequence[tuple[tuple[Any, ...], Mapping[str, Any]]],
    ) -> list[Any]:
        """Send the commands in one write; one answer per command, error replies included."""
        await conn.send_packed_command(conn.pack_commands([args for args, _ in stack]), False)
        callbacks = self.response_callbacks
        answers: list[Any] = []
        for args, options in stack:
            try:
                reply = await conn.read_response()
            except ResponseError as exc:
                answers.append(exc)
                continue
            callback = callbacks.get(args[0])
            if callback is not None:
                # "keys" is redis-py's client-side-cache hint, never a callback option
                kwargs = {k: v for k, v in options.items() if k != "keys"} if options else {}
                reply = callback(reply, **kwargs)
                if inspect.isawaitable(reply):
                    reply = await reply
            answers.append(reply)
        return answers


class LeanRedis(Redis):
    """A single server's client whose ``pipeline()`` is a :class:`LeanPipeline`."""

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> LeanPipeline:
        return LeanPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
