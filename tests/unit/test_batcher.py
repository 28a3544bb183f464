"""The greedy batcher: batches of what has arrived, acks after processing, order per lane."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import pytest

from streams.batcher import GreedyBatcher

Msg = tuple[str, int]  # (agent, sequence number)


class _Recorder:
    def __init__(self, gate: dict[str, asyncio.Event] | None = None) -> None:
        self.batches: list[list[Msg]] = []
        self.acked: list[Msg] = []
        self.running = 0
        self.most_running = 0
        self.gate = gate or {}

    async def process(self, batch: Sequence[Msg]) -> None:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            self.batches.append(list(batch))
            for agent, _ in batch:
                if agent in self.gate:
                    await self.gate[agent].wait()
            await asyncio.sleep(0)
        finally:
            self.running -= 1

    async def ack(self, message: Msg) -> None:
        self.acked.append(message)


def _lane(message: Msg) -> int:
    return 0 if message[0] == "a" else 1


async def _settle(rec: _Recorder, n: int) -> None:
    for _ in range(1000):
        if len(rec.acked) >= n:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"only {len(rec.acked)} of {n} acked")


def test_one_lane_takes_everything_queued_and_acks_in_order() -> None:
    async def run() -> _Recorder:
        rec = _Recorder()
        async with GreedyBatcher(rec.process, rec.ack, max_items=100) as b:
            for i in range(10):
                await b.put(("a" if i % 2 else "b", i))
            await _settle(rec, 10)
        return rec

    rec = asyncio.run(run())
    assert [m[1] for m in rec.acked] == list(range(10))
    assert rec.most_running == 1
    assert [m for batch in rec.batches for m in batch] == rec.acked
    assert len(rec.batches) < 10  # what had arrived went together


def test_lanes_keep_each_agents_order_and_never_mix_agents_of_two_lanes() -> None:
    async def run() -> _Recorder:
        rec = _Recorder()
        async with GreedyBatcher(rec.process, rec.ack, lanes=2, lane_of=_lane,
                                 max_items=3) as b:
            for i in range(40):
                await b.put(("a" if i % 3 else "b", i))
            await _settle(rec, 40)
        return rec

    rec = asyncio.run(run())
    for agent in "ab":
        seq = [m[1] for m in rec.acked if m[0] == agent]
        assert seq == sorted(seq) and len(seq) == len({m for m in seq})
        done = [m[1] for batch in rec.batches for m in batch if m[0] == agent]
        assert done == seq
    assert all(len({m[0] for m in batch}) == 1 for batch in rec.batches)
    assert sorted(m[1] for m in rec.acked) == list(range(40))


def test_a_lane_waiting_does_not_hold_up_the_other_lane() -> None:
    async def run() -> tuple[_Recorder, list[Msg]]:
        gate = asyncio.Event()
        rec = _Recorder({"a": gate})
        async with GreedyBatcher(rec.process, rec.ack, lanes=2, lane_of=_lane) as b:
            await b.put(("a", 0))  # lane 0 blocks on the gate (a slow Redis answer)
            await asyncio.sleep(0)
            for i in range(1, 4):
                await b.put(("b", i))
            await _settle(rec, 3)
            before_gate = list(rec.acked)
            gate.set()
            await _settle(rec, 4)
        return rec, before_gate

    rec, before_gate = asyncio.run(run())
    assert before_gate == [("b", 1), ("b", 2), ("b", 3)]
    assert rec.most_running == 2
    assert rec.acked[-1] == ("a", 0)


def test_one_lane_waiting_holds_up_everything() -> None:
    """The same traffic with one lane: the batch behind the slow one waits (what lanes fix)."""
    async def run() -> list[Msg]:
        gate = asyncio.Event()
        rec = _Recorder({"a": gate})
        async with GreedyBatcher(rec.process, rec.ack) as b:
            await b.put(("a", 0))
            await asyncio.sleep(0)
            await b.put(("b", 1))
            for _ in range(50):
                await asyncio.sleep(0)
            held = list(rec.acked)
            gate.set()
            await _settle(rec, 2)
        return held

    assert asyncio.run(run()) == []


def test_max_events_holds_the_message_that_would_pass_it_for_the_next_batch() -> None:
    async def run() -> _Recorder:
        rec = _Recorder()
        async with GreedyBatcher(rec.process, rec.ack, size_of=lambda m: m[1],
                                 max_events=10, lanes=2, lane_of=_lane) as b:
            gate_batch = [("a", 4), ("a", 5), ("a", 3), ("a", 6)]
            for m in gate_batch:
                b._lanes[0].queue.put_nowait(m)  # queued before the lane drains: one take
            await _settle(rec, 4)
        return rec

    rec = asyncio.run(run())
    assert rec.batches == [[("a", 4), ("a", 5)], [("a", 3), ("a", 6)]]


def test_a_failing_lane_reraises_in_put_whatever_the_messages_lane() -> None:
    async def process(batch: Sequence[Msg]) -> None:
        if batch[0][0] == "a":
            raise RuntimeError("boom")

    async def ack(message: Msg) -> None:
        pass

    async def run() -> str:
        b = GreedyBatcher(process, ack, lanes=2, lane_of=_lane)
        await b.__aenter__()
        await b.put(("a", 0))
        for _ in range(5):
            await asyncio.sleep(0)
        try:
            await b.put(("b", 1))  # another lane's message: the batcher fails as a whole
        except RuntimeError as exc:
            raised = str(exc)
        else:
            raised = ""
        with contextlib.suppress(RuntimeError):
            await b.__aexit__(None, None, None)
        return raised

    assert asyncio.run(run()) == "boom"


def test_lanes_must_be_positive() -> None:
    async def noop(_: object) -> None:
        pass

    with pytest.raises(ValueError, match="lanes must be at least 1"):
        GreedyBatcher(noop, noop, lanes=0)
