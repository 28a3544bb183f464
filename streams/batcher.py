"""Greedy batching with manual acks: process whatever has arrived, as soon as it has arrived.

Faust's ``stream.take(n, within=t)`` waits up to ``t`` for a batch to fill (latency for single
events) and acks its buffer in a ``finally`` — also when the agent fails or is cancelled, which
would commit events that were never decided. This batcher instead:

* hands the processor everything queued so far (at most ``max_items`` messages, ``max_events``
  events) the moment the previous batch is done — no timer, so a lone event waits for nobody;
* acks a message only after its batch was processed (verdicts saved and produced); a worker that
  stops or dies mid-batch leaves those offsets uncommitted, so they are redelivered.

Order is preserved: one drain task, batches processed one after the other in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["GreedyBatcher"]

M = TypeVar("M")


class GreedyBatcher(Generic[M]):
    """``put`` messages in; ``process(batch)`` then ``ack(message)`` for each, in order."""

    def __init__(
        self,
        process: Callable[[Sequence[M]], Awaitable[None]],
        ack: Callable[[M], Awaitable[object]],
        *,
        size_of: Callable[[M], int] = lambda _m: 1,
        max_items: int = 256,
        max_events: int = 5_000,
        queue_items: int = 2_048,
    ) -> None:
        self._process = process
        self._ack = ack
        self._size_of = size_of
        self.max_items = max_items
        self.max_events = max_events
        self._queue: asyncio.Queue[M] = asyncio.Queue(queue_items)
        self._task: asyncio.Task[None] | None = None
        self._held: M | None = None

    async def __aenter__(self) -> GreedyBatcher[M]:
        self._task = asyncio.get_running_loop().create_task(self._drain(), name="greedy-batcher")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def put(self, message: M) -> None:
        """Queue a message (waits while the queue is full: back-pressure on the consumer)."""
        task = self._task
        if task is None:
            raise RuntimeError("GreedyBatcher used outside `async with`")
        if task.done():
            task.result()  # re-raise the drain task's failure in the agent
            raise RuntimeError("batcher stopped")
        if not self._queue.full():
            self._queue.put_nowait(message)  # the common case: no task, no wait
            return
        put = asyncio.ensure_future(self._queue.put(message))
        done, _ = await asyncio.wait({put, task}, return_when=asyncio.FIRST_COMPLETED)
        if put not in done:
            put.cancel()
            task.result()
            raise RuntimeError("batcher stopped")

    def _next_batch(self, first: M) -> list[M]:
        batch = [first]
        events = self._size_of(first)
        queue = self._queue
        while len(batch) < self.max_items and not queue.empty():
            nxt = queue.get_nowait()
            size = self._size_of(nxt)
            if events + size > self.max_events:
                self._held = nxt
                break
            batch.append(nxt)
            events += size
        return batch

    async def _drain(self) -> None:
        while True:
            if self._held is not None:
                first, self._held = self._held, None
            else:
                first = await self._queue.get()
            batch = self._next_batch(first)
            await self._process(batch)
            for message in batch:
                await self._ack(message)
