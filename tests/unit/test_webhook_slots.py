"""ratchet.webhooks.slots.FairSlots: a freed slot goes to the waiting project with the fewest in
flight, a project never holds more than its share, a cancelled waiter gives nothing away."""

from __future__ import annotations

import asyncio

from ratchet.webhooks.slots import FairSlots


async def test_a_freed_slot_goes_to_the_project_with_the_fewest_in_flight() -> None:
    """Round 12 of the outside attack runs: six projects of one tenant at their share each held
    every slot, and another project's deliveries queued behind theirs."""
    slots = FairSlots(size=4, per_project=2)
    granted: list[str] = []

    async def take(project: str) -> None:
        await slots.acquire(project)
        granted.append(project)

    attackers = [asyncio.create_task(take(f"a{i % 3}")) for i in range(12)]
    await asyncio.sleep(0)
    assert len(granted) == 4 and slots.free == 0
    victim = asyncio.create_task(take("b"))
    await asyncio.sleep(0)
    assert "b" not in granted
    slots.release(granted[0])  # the next free slot goes to b, not to a's earlier waiters
    await asyncio.sleep(0)
    assert granted[-1] == "b"
    assert all(n <= 2 for n in slots.in_flight.values())
    for task in attackers:
        task.cancel()
    await asyncio.gather(*attackers, victim, return_exceptions=True)


async def test_a_project_never_holds_more_than_its_share() -> None:
    slots = FairSlots(size=10, per_project=3)
    done = 0

    async def one() -> None:
        nonlocal done
        async with slots.held("a"):
            assert slots.in_flight["a"] <= 3
            await asyncio.sleep(0.001)
            done += 1

    await asyncio.gather(*(one() for _ in range(20)))
    assert done == 20 and slots.free == 10 and not slots.in_flight


async def test_a_cancelled_waiter_takes_no_slot() -> None:
    slots = FairSlots(size=1, per_project=1)
    await slots.acquire("a")
    waiter = asyncio.create_task(slots.acquire("b"))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    slots.release("a")
    assert slots.free == 1 and slots.waiting("b") == 0
    await asyncio.wait_for(slots.acquire("c"), 1)
