"""One suite, two implementations: ``lua/observe.lua`` on a real Redis must answer exactly what
the pure-Python reference (``models/reference.py``) answers, for random event sequences with
duplicates, interleaved runs, run ends, holds, caps, checkpoints and mode changes."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import asdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from models.params import COUNT_SCALE, EngineParams
from models.reference import ReferenceChain
from ratchet.store.chains import ChainBatch, EngineStore, ObserveItem
from ratchet.store.keys import Keys

# Small numbers so a few dozen events exercise checkpoints, decay, caps and every mode.
SMALL = EngineParams(
    window=4, window_large=5, large_runs=8, checkpoint_runs=3, min_runs_soft=3,
    min_runs_locked=9, force_after_runs=3, node_cap=5, edge_cap=9, floor_bits=1.0,
    min_support=2, stability=0.3, stability_large=0.2,
    decay_low=0.1, decay_mid=0.2, decay_high=0.3,
)

event_st = st.tuples(
    st.integers(0, 30),            # event id (small range → duplicates)
    st.sampled_from(["r1", "r2", "r3"]),
    st.sampled_from([f"n{i}" for i in range(8)]),
    st.integers(0, 19).map(lambda x: x == 0),  # high priority (1 in 20)
    st.integers(0, 4).map(lambda x: x == 0),  # end_of_run (1 in 5)
    st.integers(0, 9).map(lambda x: x == 0),  # hold (1 in 10)
)


async def _run_both(
    redis_url: str,
    events: list[tuple[int, str, str, bool, bool, bool]],
    cuts: list[int],
    params: EngineParams,
    learn_mask: list[bool] | None = None,
    floors: list[int] | None = None,
) -> None:
    client = Redis.from_url(redis_url)
    try:
        store = EngineStore(client, Keys(f"p{uuid.uuid4().hex[:8]}"), params)
        ref = ReferenceChain(params, locked_action="reject")
        tag = "chain"
        batches: list[list[tuple[int, str, str, bool, bool, bool]]] = []
        start = 0
        for cut in sorted(set(c for c in cuts if 0 < c < len(events))) + [len(events)]:
            batches.append(events[start:cut])
            start = cut
        for b, batch in enumerate(batches):
            learn = True if learn_mask is None else learn_mask[b % len(learn_mask)]
            floor = 0 if floors is None else floors[b % len(floors)]
            items = [ObserveItem(f"e{e}", r, n, hp, eor, hold) for e, r, n, hp, eor, hold in batch]
            [got] = await store.observe(
                [ChainBatch(tag, items, eligible=False, locked_action="reject", mode_floor=floor)],
                learn=learn, now_ms=1,
            )
            want = [
                ref.observe(f"e{e}", r, n, high_priority=hp, end_of_run=eor, hold=hold, learn=learn,
                            mode_floor=floor)
                for e, r, n, hp, eor, hold in batch
            ]
            assert [asdict(g) for g in got] == [asdict(w) for w in want]
        assert await store.edge_counts(tag) == {k: v for k, v in ref.edges.items()}
        assert await store.row_counts(tag) == ref.rows
        meta = await store.chain_meta(tag)
        if any(learn_mask or [True]):
            assert int(meta.get("runs", 0)) == ref.run_count
            assert int(meta.get("mode", 0)) == ref.mode
    finally:
        await client.aclose()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event_st, min_size=1, max_size=80), cuts=st.lists(st.integers(0, 80)))
def test_lua_matches_reference(
    redis_url: str, events: list[tuple[int, str, str, bool, bool, bool]], cuts: list[int]
) -> None:
    asyncio.run(_run_both(redis_url, events, cuts, SMALL))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event_st, min_size=1, max_size=80), cuts=st.lists(st.integers(0, 80)))
def test_lua_matches_reference_with_mode_floors(
    redis_url: str, events: list[tuple[int, str, str, bool, bool, bool]], cuts: list[int]
) -> None:
    asyncio.run(_run_both(redis_url, events, cuts, SMALL, floors=[2, 1, 0]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event_st, min_size=1, max_size=80), cuts=st.lists(st.integers(0, 80)))
def test_lua_matches_reference_with_the_seeds_mean_std_window(
    redis_url: str, events: list[tuple[int, str, str, bool, bool, bool]], cuts: list[int]
) -> None:
    asyncio.run(_run_both(redis_url, events, cuts, SMALL.replace(window_stat="std")))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event_st, min_size=1, max_size=60), cuts=st.lists(st.integers(0, 60)))
def test_lua_matches_reference_with_what_if_batches(
    redis_url: str, events: list[tuple[int, str, str, bool, bool, bool]], cuts: list[int]
) -> None:
    asyncio.run(_run_both(redis_url, events, cuts, SMALL, learn_mask=[True, False]))


def _plain_recount(events: list[tuple[int, str, str, bool, bool, bool]]) -> Counter[str]:
    """Transitions a plain reading of the stream implies (no decay, no holds, no caps)."""
    seen: set[str] = set()
    last: dict[str, str] = {}
    counts: Counter[str] = Counter()
    for e, r, n, _hp, eor, _hold in events:
        eid = f"e{e}"
        if eid in seen:
            continue
        seen.add(eid)
        src = last.get(r, "^")
        counts[f"{src}\t{n}"] += 1
        if eor:
            counts[f"{n}\t$"] += 1
            last[r] = "^"
        else:
            last[r] = n
    return counts


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=st.lists(event_st, min_size=1, max_size=120),
    cuts=st.lists(st.integers(0, 120)),
)
def test_lua_counts_equal_plain_recount(
    redis_url: str, events: list[tuple[int, str, str, bool, bool, bool]], cuts: list[int]
) -> None:
    # Dedup is per run (an event id belongs to one run), as real event ids are unique.
    events = [(e * 10 + int(r[1]), r, n, hp, eor, False) for e, r, n, hp, eor, _ in events]
    params = EngineParams(decay_low=0, decay_mid=0, decay_high=0, node_cap=10_000,
                          edge_cap=10_000, protect=False)

    async def run() -> None:
        client = Redis.from_url(redis_url)
        try:
            store = EngineStore(client, Keys(f"p{uuid.uuid4().hex[:8]}"), params)
            start = 0
            for cut in sorted(set(c for c in cuts if 0 < c < len(events))) + [len(events)]:
                items = [ObserveItem(f"e{e}", r, n, hp, eor) for e, r, n, hp, eor, _ in
                         events[start:cut]]
                await store.observe([ChainBatch("c", items)], now_ms=1)
                # a redelivery of the whole batch changes nothing
                await store.observe([ChainBatch("c", items)], now_ms=1)
                start = cut
            got = {k: v // COUNT_SCALE for k, v in (await store.edge_counts("c")).items()}
            assert got == dict(_plain_recount(events))
        finally:
            await client.aclose()

    asyncio.run(run())
