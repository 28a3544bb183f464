"""Greedy batching with manual acks: process whatever has arrived, as soon as it has arrived.

Faust's ``stream.take(n, within=t)`` waits up to ``t`` for a batch to fill (latency for single
events) and acks its buffer in a ``finally`` — also when the agent fails or is cancelled, which
would commit events that were never decided. This batcher instead:

* hands the processor everything queued so far (at most ``max_items`` messages, ``max_events``
  events) the moment the previous batch is done — no timer, so a lone event waits for nobody;
* acks a message only after its batch was processed (verdicts saved and produced); a worker that
  stops or dies mid-batch leaves those offsets uncommitted, so they are redelivered.

Order is preserved per lane: one drain task per lane, its batches processed one after the other
in arrival order. With ``lanes > 1`` messages are routed by ``lane_of`` (the worker: by agent), so
one lane's batch can be decided while another's waits for Redis or Kafka — the worker's Python
overlaps Redis's Lua instead of waiting for it — and every message of one agent still goes through
one lane, in order, exactly as one worker per partition would take it. Acks then interleave across
lanes; Faust commits an offset only once every message before it is acked, so a crash still
redelivers whatever was not decided.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["GreedyBatcher"]

M = TypeVar("M")


class GreedyBatcher(Generic[M]):
    """``put`` messages in; ``process(batch)`` then ``ack(message)`` for each, in order per lane."""

    def __init__(
        self,
        process: Callable[[Sequence[M]], Awaitable[None]],
        ack: Callable[[M], Awaitable[object]],
        *,
        size_of: Callable[[M], int] = lambda _m: 1,
        max_items: int = 256,
        max_events: int = 5_000,
        queue_items: int = 2_048,
        lanes: int = 1,
        lane_of: Callable[[M], int] = lambda _m: 0,
    ) -> None:
        if lanes < 1:
            raise ValueError(f"lanes must be at least 1, not {lanes}")
        self._process = process
        self._ack = ack
        self._size_of = size_of
        self._lane_of = lane_of
        self.max_items = max_items
        self.max_events = max_events
        per_lane = max(1, queue_items // lanes)
        self._lanes: list[_Lane[M]] = [_Lane(asyncio.Queue(per_lane)) for _ in range(lanes)]
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> GreedyBatcher[M]:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._drain(lane), name=f"greedy-batcher-{i}")
                       for i, lane in enumerate(self._lanes)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def put(self, message: M) -> None:
        """Queue a message in its lane (waits while that lane is full: back-pressure on the
        consumer). When any lane's drain task has failed, its failure is re-raised here, whatever
        the message's lane: the agent stops rather than deciding other agents' events while the
        failed lane's messages stay unacked (holding back every commit behind them)."""
        if not self._tasks:
            raise RuntimeError("GreedyBatcher used outside `async with`")
        lanes = self._lanes
        for stopped in self._tasks:
            if stopped.done():  # any lane: the batcher fails as a whole, as one lane would
                stopped.result()  # re-raise the drain task's failure in the agent
                raise RuntimeError("batcher stopped")
        i = self._lane_of(message) % len(lanes) if len(lanes) > 1 else 0
        task = self._tasks[i]
        queue = lanes[i].queue
        if not queue.full():
            queue.put_nowait(message)  # the common case: no task, no wait
            return
        put = asyncio.ensure_future(queue.put(message))
        done, _ = await asyncio.wait({put, task}, return_when=asyncio.FIRST_COMPLETED)
        if put not in done:
            put.cancel()
            task.result()
            raise RuntimeError("batcher stopped")

    def _next_batch(self, lane: _Lane[M], first: M) -> list[M]:
        batch = [first]
        events = self._size_of(first)
        queue = lane.queue
        while len(batch) < self.max_items and not queue.empty():
            nxt = queue.get_nowait()
            size = self._size_of(nxt)
            if events + size > self.max_events:
                lane.held = nxt
                break
            batch.append(nxt)
            events += size
        return batch

    async def _drain(self, lane: _Lane[M]) -> None:
        while True:
            if lane.held is not None:
                first, lane.held = lane.held, None
            else:
                first = await lane.queue.get()
            batch = self._next_batch(lane, first)
            await self._process(batch)
            for message in batch:
                await self._ack(message)


class _Lane(Generic[M]):
    """One lane's queue and the message held back from its last batch (it would have passed
    ``max_events``): that message starts the lane's next batch."""

    __slots__ = ("held", "queue")

    def __init__(self, queue: asyncio.Queue[M]) -> None:
        self.queue = queue
        self.held: M | None = None
