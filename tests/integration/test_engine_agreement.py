"""One suite, two implementations: ``lua/observe.lua`` on a real Redis must answer exactly what
the pure-Python reference (``models/reference.py``) answers, for random event sequences with
duplicates, interleaved runs, run ends, holds, caps, checkpoints and mode changes — and for every
rule of detection v2: locking of any stable chain, held flags, the action back-off model,
uniform and tiered decay, and unlearnable chains."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest
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
    min_support=2, stability=0.3, stability_large=0.2, decay_rate=0.3,
    decay_low=0.1, decay_mid=0.2, decay_high=0.3, novelty_limit=0.3, repeat_factor=1.0,
    repeat_margin=0, lock_novelty=0.6, field_escape_support=0,
)
#: The seeds' rules: tiered decay, no back-off (min_support), only eligible chains lock, flags
#: learned, no unlearnable chains.
SEEDS_RULES = SMALL.replace(decay="tiered", backoff_weight=0.0, lock_when_stable=False,
                            protect_flags=False, novelty_limit=0.0, repeat_factor=0.0,
                            unlearnable_rule="shapes")

# (event id, run, node, high priority, end of run, hold, action)
Event = tuple[int, str, str, bool, bool, bool, str]

event_st = st.tuples(
    st.integers(0, 30),            # event id (small range → duplicates)
    st.sampled_from(["r1", "r2", "r3"]),
    st.sampled_from([f"n{i}" for i in range(8)]),
    st.integers(0, 19).map(lambda x: x == 0),  # high priority (1 in 20)
    st.integers(0, 4).map(lambda x: x == 0),  # end_of_run (1 in 5)
    st.integers(0, 9).map(lambda x: x == 0),  # hold (1 in 10)
    st.sampled_from(["crm.read", "crm.write", "mail.send"]),
)


async def _run_both(
    redis_url: str,
    events: list[Event],
    cuts: list[int],
    params: EngineParams,
    learn_mask: list[bool] | None = None,
    floors: list[int | None] | None = None,
    paths: dict[str, str] | None = None,
    approve_every: int = 0,
    checkpoint_work: int | None = None,
) -> None:
    client = Redis.from_url(redis_url)
    try:
        store = EngineStore(client, Keys(f"p{uuid.uuid4().hex[:8]}"), params)
        if checkpoint_work is not None:
            store.checkpoint_work = checkpoint_work
        ref = ReferenceChain(params, locked_action="reject")
        tag = "chain"
        batches: list[list[Event]] = []
        start = 0
        for cut in sorted({c for c in cuts if 0 < c < len(events)}) + [len(events)]:
            batches.append(events[start:cut])
            start = cut
        for b, batch in enumerate(batches):
            learn = True if learn_mask is None else learn_mask[b % len(learn_mask)]
            floor = 0 if floors is None else floors[b % len(floors)]
            # None: one floor per event (the agent's other services changed mode in the batch);
            # -1: also some not known for sure (3..5): the call stops before the first of those
            # the floor would decide, the reference returns None there
            each = [e % 3 if floor is None else e % 6 if floor == -1 else floor
                    for e, *_ in batch]
            shape_paths = paths or {}
            items = [ObserveItem(f"e{e}", r, n, hp, eor, hold, act, shape_paths.get(n, ""))
                     for e, r, n, hp, eor, hold, act in batch]
            [got] = await store.observe(
                [ChainBatch(tag, items, eligible=False, locked_action="reject",
                            mode_floor=tuple(each) if floor is None or floor < 0 else floor)],
                learn=learn, now_ms=1,
            )
            want = []
            for (e, r, n, hp, eor, hold, act), f in zip(batch, each, strict=True):
                answer = ref.observe_unless_unsure(
                    f"e{e}", r, n, unsure=f >= 3, high_priority=hp, end_of_run=eor, hold=hold,
                    learn=learn, mode_floor=f % 3, action=act, paths=(paths or {}).get(n, ""))
                if answer is None:
                    break
                want.append(answer)
            assert got == want
            batch = batch[: len(want)]
            if approve_every:
                # a reviewer approves every approve_every-th held event of the batch
                held = [(r, f"e{e}") for (e, r, *_), w in zip(batch, want, strict=True)
                        if w.held and not w.duplicate]
                for r, eid in held[::approve_every]:
                    res = await store.feedback(tag, r, eid, "approve", now_ms=1)
                    assert res.applied == ref.feedback(r, eid, "approve")
        assert await store.edge_counts(tag) == {k: v for k, v in ref.edges.items()}
        assert await store.row_counts(tag) == ref.rows
        assert await store.coarse_counts(tag) == ref.coarse
        meta = await store.chain_meta(tag)
        if any(learn_mask or [True]):
            assert int(meta.get("runs", 0)) == ref.run_count
            assert int(meta.get("mode", 0)) == ref.mode
            assert int(meta.get("nw", 0)) == ref.novel
            assert int(meta.get("nt", 0)) == ref.seen
            assert meta.get("unl", "0") == ("1" if ref.unlearnable else "0")
            assert int(meta.get("nc", 0)) == ref.nc
            assert int(meta.get("aw", 0)) == ref.act_novel
            assert int(meta.get("at", 0)) == ref.act_seen
            assert meta.get("acl", "0") == ("1" if ref.by_action else "0")
            # the open streak: repeats and node (the script keeps the run's key, not its id)
            streak = meta.get("ps", "").split("\t")[:2]
            assert streak == ([str(ref.open_streak[2]), ref.open_streak[1]]
                              if ref.open_streak else [""])
    finally:
        await client.aclose()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event_st, min_size=1, max_size=80), cuts=st.lists(st.integers(0, 80)))
def test_lua_matches_reference(
    redis_url: str, events: list[Event], cuts: list[int]
) -> None:
    asyncio.run(_run_both(redis_url, events, cuts, SMALL))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event_st, min_size=1, max_size=80), cuts=st.lists(st.integers(0, 80)))
def test_lua_matches_reference_with_mode_floors(
    redis_url: str, events: list[Event], cuts: list[int]
) -> None:
    asyncio.run(_run_both(redis_url, events, cuts, SMALL, floors=[2, 1, 0]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event_st, min_size=1, max_size=80), cuts=st.lists(st.integers(0, 80)))
def test_lua_matches_reference_with_a_mode_floor_per_event(
    redis_url: str, events: list[Event], cuts: list[int]
) -> None:
    """One floor per event (ARGV[30] a digit per event), and the floor dropped once the chain
    left shadow (taking the floor as its mode when it does), batch by batch as in one."""
    asyncio.run(_run_both(redis_url, events, cuts, SMALL, floors=[None, 2, None, 0]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event_st, min_size=1, max_size=80), cuts=st.lists(st.integers(0, 80)),
       learn_mask=st.lists(st.booleans(), min_size=1, max_size=3))
def test_lua_stops_where_the_reference_stops_on_an_unsure_floor(
    redis_url: str, events: list[Event], cuts: list[int], learn_mask: list[bool]
) -> None:
    """Floors not known for sure (3..5): the call answers the events before the first one its
    floor would decide (anomalous, or starting a run that checkpoints, in shadow) and changes
    nothing for it or after it — the reference returns None there."""
    asyncio.run(_run_both(redis_url, events, cuts, SMALL, floors=[-1, -1, 1],
                          learn_mask=learn_mask))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event_st, min_size=1, max_size=80), cuts=st.lists(st.integers(0, 80)))
def test_lua_matches_reference_with_the_seeds_mean_std_window(
    redis_url: str, events: list[Event], cuts: list[int]
) -> None:
    asyncio.run(_run_both(redis_url, events, cuts, SMALL.replace(window_stat="std")))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event_st, min_size=1, max_size=80), cuts=st.lists(st.integers(0, 80)))
def test_lua_matches_reference_with_the_seeds_rules(
    redis_url: str, events: list[Event], cuts: list[int]
) -> None:
    asyncio.run(_run_both(redis_url, events, cuts, SEEDS_RULES))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event_st, min_size=1, max_size=80), cuts=st.lists(st.integers(0, 80)))
def test_lua_matches_reference_with_a_weak_backoff_and_no_support_floor(
    redis_url: str, events: list[Event], cuts: list[int]
) -> None:
    asyncio.run(_run_both(redis_url, events, cuts, SMALL.replace(backoff_weight=0.25,
                                                                 min_support=0)))


#: Short runs over few nodes, normal priority: many runs, so chains settle, lock (or are found
#: unlearnable) and loop, which random long runs over many nodes rarely do.
settling_st = st.tuples(
    st.integers(0, 400),
    st.sampled_from(["r1", "r2"]),
    st.sampled_from(["n0", "n1", "n1", "n2"]),
    st.just(False),
    st.integers(0, 2).map(lambda x: x == 0),
    st.integers(0, 19).map(lambda x: x == 0),
    st.sampled_from(["crm.read", "crm.write"]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(settling_st, min_size=20, max_size=160),
       cuts=st.lists(st.integers(0, 160)))
def test_lua_matches_reference_on_chains_that_settle(
    redis_url: str, events: list[Event], cuts: list[int]
) -> None:
    asyncio.run(_run_both(redis_url, events, cuts, SMALL.replace(min_support=0)))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(settling_st, min_size=20, max_size=160),
       cuts=st.lists(st.integers(0, 160)),
       floors=st.sampled_from([[0, 2], [2, 0, 0], [1, 2], [0, 1]]))
def test_lua_matches_reference_on_chains_that_leave_shadow_under_a_floor(
    redis_url: str, events: list[Event], cuts: list[int], floors: list[int | None]
) -> None:
    """A floored chain that settles leaves shadow for the floor's mode (models/modes.py
    next_mode), an unlearnable one for soft-lock — the same in Lua as in the reference. The
    floor changes from batch to batch (under floor 2 from the start a chain learns nothing
    new, so it would never settle)."""
    asyncio.run(_run_both(redis_url, events, cuts, SMALL.replace(min_support=0),
                          floors=floors))


@pytest.mark.parametrize("floors", [[0, 0, 2], [0, 0, 1], [1, 1, 2]])
async def test_lua_matches_reference_where_a_settled_chain_leaves_shadow_under_a_floor(
    redis_url: str, floors: list[int | None]
) -> None:
    """One run per batch, the batches of every third run (each checkpoint's) under the floor:
    the chain leaves shadow there, for the floor's mode."""
    events: list[Event] = []
    for r in range(30):
        events += [(2 * r, "r1", "n0", False, False, False, "crm.read"),
                   (2 * r + 1, "r1", "n1", False, True, False, "crm.write")]
    await _run_both(redis_url, events, list(range(2, 60, 2)), SMALL.replace(min_support=0),
                    floors=floors)


#: Back-to-back repeats in interleaved runs that seldom end on this chain (their ends are on
#: other services, or never sent): streaks are learned when another run's event settles them.
streaky_st = st.tuples(
    st.integers(0, 400),
    st.sampled_from(["r1", "r2", "r3", "r4"]),
    st.sampled_from(["n0", "n0", "n0", "n1", "n2"]),
    st.just(False),
    st.integers(0, 9).map(lambda x: x == 0),
    st.integers(0, 14).map(lambda x: x == 0),
    st.sampled_from(["crm.read", "crm.write"]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(streaky_st, min_size=10, max_size=160),
       cuts=st.lists(st.integers(0, 160)), learn_mask=st.lists(st.booleans(), min_size=1,
                                                              max_size=3))
def test_lua_matches_reference_learning_streaks_of_runs_that_end_elsewhere(
    redis_url: str, events: list[Event], cuts: list[int], learn_mask: list[bool]
) -> None:
    params = SMALL.replace(repeat_factor=1.5, repeat_margin=2, min_support=0)
    asyncio.run(_run_both(redis_url, events, cuts, params, learn_mask=learn_mask))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(streaky_st, min_size=10, max_size=160),
       cuts=st.lists(st.integers(0, 160)), approve_every=st.integers(1, 3))
def test_lua_matches_reference_when_approvals_teach_held_streaks(
    redis_url: str, events: list[Event], cuts: list[int], approve_every: int
) -> None:
    """Held repeats, approved, raise the repeat limit to their length (lua/feedback.lua "="
    lines, ReferenceChain.feedback) — with a tight limit, so loops are held often."""
    params = SMALL.replace(repeat_factor=1.0, repeat_margin=1, min_support=0)
    asyncio.run(_run_both(redis_url, events, cuts, params, approve_every=approve_every))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(settling_st, min_size=20, max_size=160),
       cuts=st.lists(st.integers(0, 160)), budget=st.integers(1, 40),
       floors=st.sampled_from([None, [0], [None], [-1], [1, -1]]))
def test_lua_matches_reference_when_calls_stop_at_their_checkpoint_budget(
    redis_url: str, events: list[Event], cuts: list[int], budget: int,
    floors: list[int | None] | None,
) -> None:
    """A call stops before a checkpoint past its budget (lua/observe.lua ARGV[42]) and the store
    sends the rest: the answers and the state are those of one call — also with per-event and
    unsure mode floors, whose stops the store leaves to the engine."""
    asyncio.run(_run_both(redis_url, events, cuts, SMALL.replace(min_support=0), floors=floors,
                          checkpoint_work=budget))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event_st, min_size=1, max_size=60), cuts=st.lists(st.integers(0, 60)))
def test_lua_matches_reference_with_what_if_batches(
    redis_url: str, events: list[Event], cuts: list[int]
) -> None:
    asyncio.run(_run_both(redis_url, events, cuts, SMALL, learn_mask=[True, False]))


#: The rolling threshold on its own (observe.lua keeps its window statistics incrementally: a
#: sorted window and merged deviations instead of two sorts per event): no floor, so the window
#: statistic itself is compared; windows of odd and even length and a switch between them
#: (large_runs), many distinct scores (8 nodes, few checkpoints), both statistics.
WINDOWED = SMALL.replace(floor_bits=0.0, window=6, window_large=9, large_runs=12,
                         checkpoint_runs=50, min_runs_soft=200, min_runs_locked=400,
                         novelty_limit=0.0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event_st, min_size=30, max_size=160), cuts=st.lists(st.integers(0, 160)),
       robust=st.booleans())
def test_lua_matches_reference_on_the_rolling_window_statistics(
    redis_url: str, events: list[Event], cuts: list[int], robust: bool
) -> None:
    params = WINDOWED.replace(window_stat="robust" if robust else "std")
    asyncio.run(_run_both(redis_url, events, cuts, params))


def _plain_recount(events: list[Event]) -> Counter[str]:
    """Transitions a plain reading of the stream implies (no decay, no holds, no caps)."""
    seen: set[str] = set()
    last: dict[str, str] = {}
    counts: Counter[str] = Counter()
    for e, r, n, _hp, eor, *_ in events:
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
    redis_url: str, events: list[Event], cuts: list[int]
) -> None:
    # Dedup is per run (an event id belongs to one run), as real event ids are unique.
    events = [(e * 10 + int(r[1]), r, n, hp, eor, False, act)
              for e, r, n, hp, eor, _, act in events]
    params = EngineParams(decay_rate=0, decay_low=0, decay_mid=0, decay_high=0, node_cap=10_000,
                          edge_cap=10_000, protect=False)

    async def run() -> None:
        client = Redis.from_url(redis_url)
        try:
            store = EngineStore(client, Keys(f"p{uuid.uuid4().hex[:8]}"), params)
            start = 0
            for cut in sorted({c for c in cuts if 0 < c < len(events)}) + [len(events)]:
                items = [ObserveItem(f"e{e}", r, n, hp, eor) for e, r, n, hp, eor, *_ in
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


#: High-entropy shapes over a small, orderly set of actions: chains whose shapes are
#: unlearnable but whose step order (previous action → action) is learnable, judged on it
#: (``unlearnable_rule``), some of them past ``min_runs_locked`` (flags held), with off-order
#: steps now and then.
entropic_st = st.tuples(
    st.integers(0, 400),
    st.sampled_from(["r1", "r2"]),
    st.sampled_from([f"n{i}" for i in range(16)]),
    st.just(False),
    st.booleans(),
    st.integers(0, 19).map(lambda x: x == 0),
    st.sampled_from(["crm.read"] * 6 + ["crm.write"] * 3 + ["crm.delete"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(entropic_st, min_size=60, max_size=200),
       cuts=st.lists(st.integers(0, 160)),
       rule=st.sampled_from(["actions", "actions", "both", "shapes"]))
def test_lua_matches_reference_judging_unlearnable_chains_by_step_order(
    redis_url: str, events: list[Event], cuts: list[int], rule: str
) -> None:
    params = SMALL.replace(min_support=0, novelty_limit=0.25, unlearnable_rule=rule)
    asyncio.run(_run_both(redis_url, events, cuts, params))


#: Key-path hashes of the test's shapes: overlapping sets over six paths, so a shape new to an
#: action is sometimes a new combination of paths the action already used and sometimes brings
#: a path new to it; n6 carries none (unknown: every path counts as new).
SHAPE_PATHS = {
    "n0": "0000000a,0000000b", "n1": "0000000a", "n2": "0000000b",
    "n3": "0000000a,0000000b,0000000c", "n4": "0000000c", "n5": "0000000a,0000000d",
    "n6": "", "n7": "0000000e,0000000f",
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event_st, min_size=1, max_size=100), cuts=st.lists(st.integers(0, 100)),
       rule=st.sampled_from(["paths", "each", "each", "combos", "all"]),
       weight=st.sampled_from([1.0, 0.25]), support=st.sampled_from([0, 3, 6]),
       field_support=st.sampled_from([0, 0, 4, 9]), freeze=st.booleans())
def test_lua_matches_reference_with_the_shape_escape(
    redis_url: str, events: list[Event], cuts: list[int], rule: str, weight: float, support: int,
    field_support: int, freeze: bool,
) -> None:
    # the escape needs an action seen min_support times (0: always), a new key path
    # field_support times; a floor the escapes can fall under and over (SMALL's 1 bit is under
    # nearly every escape)
    params = SMALL.replace(shape_escape=rule, backoff_weight=weight, min_support=support,
                           floor_bits=3.0, fallback_bits=3.0, field_escape_support=field_support,
                           freeze_vocabulary=freeze)
    asyncio.run(_run_both(redis_url, events, cuts, params, paths=SHAPE_PATHS))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event_st, min_size=1, max_size=100), cuts=st.lists(st.integers(0, 100)),
       rule=st.sampled_from(["each", "each", "paths", "all"]),
       escape_floor=st.sampled_from([0.0, 2.0, 3.5, 5.0, 8.0]))
def test_lua_matches_reference_with_the_escape_floor(
    redis_url: str, events: list[Event], cuts: list[int], rule: str, escape_floor: float
) -> None:
    # a transition scored by the shape escape is anomalous only over max(threshold, escape
    # floor); the floors straddle the escapes' scores (a few bits here), and 0 is no extra floor
    params = SMALL.replace(shape_escape=rule, min_support=0, floor_bits=1.0, fallback_bits=1.0,
                           escape_floor_bits=escape_floor)
    asyncio.run(_run_both(redis_url, events, cuts, params, paths=SHAPE_PATHS))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(settling_st, min_size=20, max_size=160),
       cuts=st.lists(st.integers(0, 160)), rule=st.sampled_from(["paths", "each", "combos"]),
       field_support=st.sampled_from([0, 0, 5]), freeze=st.booleans())
def test_lua_matches_reference_with_the_shape_escape_on_chains_that_settle(
    redis_url: str, events: list[Event], cuts: list[int], rule: str, field_support: int,
    freeze: bool,
) -> None:
    # settling chains lock, so shapes are held; every second held one is approved (learned
    # through lua/feedback.lua with its key paths); on a locked chain an escaped shape allowed
    # is learned without widening the vocabulary (freeze_vocabulary)
    params = SMALL.replace(min_support=0, shape_escape=rule, edge_cap=14,
                           field_escape_support=field_support, freeze_vocabulary=freeze)
    asyncio.run(_run_both(redis_url, events, cuts, params, paths=SHAPE_PATHS, approve_every=2))
