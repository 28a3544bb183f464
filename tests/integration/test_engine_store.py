"""Engine scripts on a real redis-server: concurrency, decay, modes, protected learning, bounds."""

from __future__ import annotations

import asyncio
import random

import pytest
from redis.asyncio import Redis

from models.params import COUNT_SCALE, EngineParams
from ratchet.store.chains import ChainBatch, EngineStore, ObserveItem
from ratchet.store.keys import Keys

pytestmark = pytest.mark.asyncio


def _store(
    client: Redis, keys: Keys, *, run_ttl_s: int = 86_400, chain_ttl_s: int = 86_400,
    **params: object,
) -> EngineStore:
    return EngineStore(
        client, keys, EngineParams().replace(**params), run_ttl_s=run_ttl_s,
        chain_ttl_s=chain_ttl_s,
    )


def _run(run: str, nodes: list[str], *, prefix: str = "", hp: bool = False) -> list[ObserveItem]:
    """One complete run (last event ends it)."""
    return [
        ObserveItem(f"{prefix}{run}-{i}", run, n, high_priority=hp, end_of_run=i == len(nodes) - 1)
        for i, n in enumerate(nodes)
    ]


async def test_concurrent_writers_lose_no_update(redis_client: Redis, keys: Keys) -> None:
    store = _store(redis_client, keys, decay_rate=0)
    writers, runs_each = 40, 10

    async def writer(w: int) -> None:
        for r in range(runs_each):
            await store.observe([ChainBatch("hot", _run(f"w{w}r{r}", ["a", "b", "c"]))])

    await asyncio.gather(*(writer(w) for w in range(writers)))
    edges = await store.edge_counts("hot")
    total_runs = writers * runs_each
    assert edges == {
        "^\ta": total_runs * COUNT_SCALE,
        "a\tb": total_runs * COUNT_SCALE,
        "b\tc": total_runs * COUNT_SCALE,
        "c\t$": total_runs * COUNT_SCALE,
    }
    assert int((await store.chain_meta("hot"))["runs"]) == total_runs


async def test_decay_tiers_keep_rows_consistent(redis_client: Redis, keys: Keys) -> None:
    store = _store(redis_client, keys, checkpoint_runs=10, decay="tiered")
    # a: 9 runs through the busy path (x→y), 1 run through a rare path (x→z)
    for r in range(9):
        await store.observe([ChainBatch("d", _run(f"r{r}", ["x", "y"]))])
    await store.observe([ChainBatch("d", _run("r9", ["x", "z"]))])
    before = await store.edge_counts("d")
    # the 10th run starts a checkpoint before its first event is counted
    await store.observe([ChainBatch("d", _run("r10", ["x", "y"]))])
    after = await store.edge_counts("d")
    rows = await store.row_counts("d")
    # count 1 untouched; count 9 (mid tier) decays 0.25 %; count 10 (mid) likewise
    assert before["x\tz"] == after["x\tz"] == 1 * COUNT_SCALE
    assert after["x\ty"] == 9000 - 9000 * 2500 // 1_000_000 + COUNT_SCALE
    for src in rows:
        assert rows[src] == sum(c for e, c in after.items() if e.split("\t")[0] == src)


async def test_uniform_decay_keeps_ratios(redis_client: Redis, keys: Keys) -> None:
    """The default decay takes the same fraction of every count: a seen-once edge decays like a
    busy one, so no probability is inflated (the tiered rule keeps the seen-once count whole)."""
    store = _store(redis_client, keys, checkpoint_runs=10, decay_rate=0.01)
    await store.observe([ChainBatch("u", _run("r0", ["x", "z"]))])
    for r in range(1, 9):
        await store.observe([ChainBatch("u", _run(f"r{r}", ["x", "y"]))])
    # run 10 starts the checkpoint before its first event is counted
    await store.observe([ChainBatch("u", [ObserveItem("r9-0", "r9", "w")])])
    after = await store.edge_counts("u")
    assert after["x\tz"] == 1000 - 10
    assert after["x\ty"] == 8000 - 80
    assert after["x\ty"] / after["x\tz"] == 8.0
    rows = await store.row_counts("u")
    assert rows["x"] == after["x\ty"] + after["x\tz"]


async def test_high_volume_edges_decay_one_percent(redis_client: Redis, keys: Keys) -> None:
    store = _store(redis_client, keys, checkpoint_runs=30, decay="tiered")
    for r in range(29):
        await store.observe([ChainBatch("h", _run(f"r{r}", ["x"]))])
    await store.observe([ChainBatch("h", [ObserveItem("z", "r29", "x")])])  # run 30 → checkpoint
    edges = await store.edge_counts("h")
    # 29 runs → 29000 before the checkpoint, -1 % → 28710, then +1000 for run 30's first event
    assert edges["^\tx"] == 29_000 - 290 + COUNT_SCALE
    assert edges["x\t$"] == 29_000 - 290


async def test_mode_progression_eligible_chain(redis_client: Redis, keys: Keys) -> None:
    store = _store(redis_client, keys, min_runs_soft=20, min_runs_locked=40, checkpoint_runs=10)
    modes = []
    for r in range(60):
        [ans] = await store.observe([ChainBatch("m", _run(f"r{r}", ["a", "b"], hp=True))])
        modes.append(ans[0].mode)
    # stable traffic: shadow until 20 runs, soft-lock until 40, then locked; never loosens
    assert modes[:19] == [0] * 19
    assert modes[19] == 1 and modes[38] == 1
    assert modes[39] == 2 and modes[-1] == 2
    assert modes == sorted(modes)


async def test_stable_normal_priority_chain_locks(redis_client: Redis, keys: Keys) -> None:
    """Any stable chain may lock, whatever its priority (no high-priority event, not rich)."""
    store = _store(redis_client, keys, min_runs_soft=20, min_runs_locked=40, force_after_runs=20)
    modes = []
    for r in range(60):
        [ans] = await store.observe([ChainBatch("s", _run(f"r{r}", ["a", "b"]))])
        modes.append(ans[0].mode)
    assert modes[19] == 1 and modes[39] == 2 and modes[-1] == 2


async def test_seeds_rule_non_eligible_chain_never_locks(redis_client: Redis, keys: Keys) -> None:
    store = _store(redis_client, keys, min_runs_soft=20, min_runs_locked=40, force_after_runs=20,
                   lock_when_stable=False)
    last = None
    for r in range(120):
        [ans] = await store.observe([ChainBatch("n", _run(f"r{r}", ["a", "b"]))])
        last = ans[-1]
    assert last is not None and last.mode == 1


async def test_high_entropy_chain_is_unlearnable_and_never_locks(
    redis_client: Redis, keys: Keys
) -> None:
    """A chain that keeps taking never-seen transitions is unlearnable: it does not lock even
    when eligible and past the forced-promotion point, its answers say so, and under the v2 rule
    (``unlearnable_rule = "shapes"``) an unseen edge between known nodes is not anomalous on it
    (a new node still is)."""
    store = _store(redis_client, keys, min_runs_soft=20, min_runs_locked=40, force_after_runs=20,
                   stability=1.1, stability_large=1.1, unlearnable_rule="shapes")
    nodes = [f"n{i}" for i in range(40)]
    rnd = random.Random(5)
    last = None
    for r in range(120):
        # a random walk over 40 calls: most transitions are new for a long while
        path = [rnd.choice(nodes) for _ in range(6)]
        [ans] = await store.observe([ChainBatch("he", _run(f"r{r}", path), eligible=True)])
        last = ans[-1]
    meta = await store.chain_meta("he")
    assert last is not None and last.unlearnable and meta["unl"] == "1"
    assert meta["mode"] == "1"
    summary = await store.chain_summary("he")
    assert summary["unlearnable"] and summary["novelty"] > 0.05
    [[_, known, new]] = await store.observe([ChainBatch("he", [
        ObserveItem("p1", "probe", "n3"), ObserveItem("p1b", "probe", "n5"), ObserveItem("p2", "probe", "brand-new")])])
    assert new.anomalous and new.unlearnable and new.action == "flag"
    assert not known.to_new and not known.anomalous


async def test_flag_in_soft_lock_is_held_back_from_learning(
    redis_client: Redis, keys: Keys
) -> None:
    """An anomaly flagged in soft-lock is not learned until approved, so its recurrence is
    flagged again (the seeds' rule learned it and the second time passed)."""
    store = _store(redis_client, keys, min_runs_soft=20, min_runs_locked=400, protect_flags=True)
    for r in range(30):
        await store.observe([ChainBatch("fl", _run(f"r{r}", ["a", "b"]))])
    for i in range(3):
        [[_, odd]] = await store.observe([ChainBatch("fl", [
            ObserveItem(f"o{i}a", f"odd{i}", "a"), ObserveItem(f"o{i}", f"odd{i}", "evil")])])
        assert odd.mode == 1 and odd.anomalous and odd.action == "flag" and odd.held
    assert "a\tevil" not in await store.edge_counts("fl")
    res = await store.feedback("fl", "odd0", "o0", "approve")
    assert res.applied and (await store.edge_counts("fl"))["a\tevil"] == COUNT_SCALE


async def test_backoff_scores_a_rare_shape_of_a_known_step(
    redis_client: Redis, keys: Keys
) -> None:
    """A known payload shape of a known action, reached by a known action-to-action move, along
    a node edge never seen: the action model says it is likely, so it is not anomalous. A move
    between actions never seen is still anomalous."""
    store = _store(redis_client, keys, floor_bits=3.0, fallback_bits=3.0)

    def item(eid: str, run: str, node: str, action: str, end: bool = False) -> ObserveItem:
        return ObserveItem(eid, run, node, end_of_run=end, action=action)

    for r in range(40):
        # crm.read has two shapes (r1 most of the time, r2 sometimes) and is followed by
        # mail.send (m1); after r2 the agent always stopped until now
        shape = "r2" if r % 4 == 0 else "r1"
        items = [item(f"{r}-0", f"r{r}", shape, "crm.read")]
        if shape == "r1":
            items.append(item(f"{r}-1", f"r{r}", "m1", "mail.send", end=True))
        else:
            items[0] = item(f"{r}-0", f"r{r}", shape, "crm.read", end=True)
        await store.observe([ChainBatch("bo", items)])
    [[_, rare]] = await store.observe([ChainBatch("bo", [
        item("x0", "x", "r2", "crm.read"), item("x1", "x", "m1", "mail.send")])])
    assert rare.from_node == "r2" and rare.count == 0
    assert rare.backoff and not rare.anomalous and rare.score < 3.0
    [[_, odd]] = await store.observe([ChainBatch("bo", [
        item("y0", "y", "r1", "crm.read"), item("y1", "y", "r1", "crm.read")])])
    assert odd.anomalous and not odd.backoff


async def test_forced_promotion_widens_sigma(redis_client: Redis, keys: Keys) -> None:
    store = _store(
        redis_client, keys, min_runs_soft=10, min_runs_locked=30, force_after_runs=30,
        stability=0.1, stability_large=0.1, checkpoint_runs=10, sigma_multiplier=3.0,
        # every run is new here: with the limit on it is unlearnable, and with flags held back
        # its new paths would never be learned (so it would look stable and lock unforced)
        novelty_limit=0.0, protect_flags=False,
    )
    # checkpoint 10: first snapshot (unstable); 20: stable → soft-lock; then every run takes a
    # new path, so checkpoints 30..50 are unstable and 60 (= 30 + 30) forces the promotion
    for r in range(20):
        await store.observe([ChainBatch("f", _run(f"s{r}", ["a", "b"]), eligible=True)])
    assert (await store.chain_meta("f"))["mode"] == "1"
    changes = []
    for r in range(40):
        [ans] = await store.observe(
            [ChainBatch("f", _run(f"v{r}", [f"x{r}", f"y{r}", f"z{r}"]), eligible=True)]
        )
        changes += [a.mode_change for a in ans]
    meta = await store.chain_meta("f")
    assert meta["mode"] == "2" and meta["forced"] == "1"
    assert float(meta["sig"]) == 4.0
    assert changes.count(2) == 1


async def _locked_chain(store: EngineStore, tag: str) -> None:
    for r in range(60):
        await store.observe([ChainBatch(tag, _run(f"warm{r}", ["a", "b"]), eligible=True)])
    assert (await store.chain_meta(tag))["mode"] == "2"


async def test_protected_learning_and_approval(redis_client: Redis, keys: Keys) -> None:
    store = _store(redis_client, keys, min_runs_soft=20, min_runs_locked=40)
    await _locked_chain(store, "p")
    before = await store.edge_counts("p")
    [[first, odd]] = await store.observe(
        [ChainBatch("p", [ObserveItem("q1", "atk", "a"), ObserveItem("q2", "atk", "evil")],
                    eligible=True)]
    )
    assert not first.anomalous and odd.anomalous and odd.action == "pause" and odd.held
    # a slow drip of the same call stays paused: it is never learned while held
    for i in range(5):
        [[_, again]] = await store.observe(
            [ChainBatch("p", [ObserveItem(f"d{i}a", f"drip{i}", "a"),
                              ObserveItem(f"d{i}", f"drip{i}", "evil")], eligible=True)]
        )
        assert again.anomalous and again.held
    assert "a\tevil" not in await store.edge_counts("p")
    meta = await store.chain_meta("p")
    sigma, fallback = float(meta.get("sig", 3.0)), float(meta.get("fb", 3.0))
    res = await store.feedback("p", "atk", "q2", "approve")
    assert res.applied and res.learned == 1
    assert res.sigma == sigma + 0.25 and res.fallback == fallback + 0.5
    after = await store.edge_counts("p")
    assert after["a\tevil"] == COUNT_SCALE
    assert {k: v for k, v in after.items() if k != "a\tevil"} == {
        k: v for k, v in before.items()
    } | {"^\ta": before["^\ta"] + 6 * COUNT_SCALE}
    # decided once: a redelivered approval is a no-op
    assert not (await store.feedback("p", "atk", "q2", "approve")).applied


async def test_rejection_confirms_and_tightens(redis_client: Redis, keys: Keys) -> None:
    store = _store(redis_client, keys, min_runs_soft=20, min_runs_locked=40)
    await _locked_chain(store, "j")
    await store.observe(
        [ChainBatch("j", [ObserveItem("k1", "x", "a"), ObserveItem("k2", "x", "evil")],
                    eligible=True)]
    )
    res = await store.feedback("j", "x", "k2", "reject")
    assert res.applied and res.learned == 0 and res.sigma == 2.9
    assert "a\tevil" not in await store.edge_counts("j")


async def test_duplicate_gets_same_answer_and_counts_once(redis_client: Redis, keys: Keys) -> None:
    store = _store(redis_client, keys)
    items = _run("r", ["a", "b", "c"])
    [first] = await store.observe([ChainBatch("u", items)])
    [second] = await store.observe([ChainBatch("u", items)])
    assert all(a.duplicate for a in second)
    assert [a.score for a in first] == [a.score for a in second]
    assert [a.action for a in first] == [a.action for a in second]
    assert sum((await store.edge_counts("u")).values()) == 4 * COUNT_SCALE


async def test_hostile_payload_entropy_is_bounded(redis_client: Redis, keys: Keys) -> None:
    store = _store(redis_client, keys, node_cap=64, edge_cap=256, run_ttl_s=120, chain_ttl_s=600)
    for b in range(50):
        items = [ObserveItem(f"h{b}-{i}", f"run{b % 7}", f"rnd{b}-{i}") for i in range(200)]
        await store.observe([ChainBatch("hostile", items)])
    meta = await store.chain_meta("hostile")
    ck = keys.chain_keys("hostile")
    assert int(meta["nn"]) <= 64 and await redis_client.hlen(ck.nodes) <= 64 + 1
    assert await redis_client.hlen(ck.edges) <= 256 + 64 + 1
    assert int(meta["ovf"]) > 9000
    assert int(meta.get("nc", 0)) <= 256 and await redis_client.hlen(ck.coarse) <= 2 * 256
    for key in ck.as_list()[:5]:
        ttl = await redis_client.ttl(key)
        assert 0 < ttl <= 600
    run_ttl = await redis_client.ttl(keys.run("hostile", "run0"))
    assert 0 < run_ttl <= 120


async def test_what_if_scoring_changes_no_baseline(redis_client: Redis, keys: Keys) -> None:
    store = _store(redis_client, keys)
    for r in range(5):
        await store.observe([ChainBatch("w", _run(f"r{r}", ["a", "b"]))])
    edges, meta = await store.edge_counts("w"), await store.chain_meta("w")
    [answers] = await store.observe([ChainBatch("w", _run("probe", ["a", "zzz"]))], learn=False)
    assert answers[1].anomalous
    assert await store.edge_counts("w") == edges
    assert await store.chain_meta("w") == meta


async def test_a_loop_longer_than_ever_learned_is_anomalous(
    redis_client: Redis, keys: Keys
) -> None:
    """The self-edge of a legitimately repeating call looks normal; repeating it back to back
    more often than ever learned (above floor(1.5 × longest) + 2) is anomalous. Repeats are
    counted per action (each node here is its own action)."""
    store = _store(redis_client, keys)

    def run(run_id: str, nodes: list[str]) -> list[ObserveItem]:
        return [item._replace(action=f"svc.{item.node}") for item in _run(run_id, nodes)]

    for r in range(40):
        await store.observe([ChainBatch("lp", run(f"r{r}", ["a"] + ["b"] * (1 + r % 4) + ["c"]))])
    [answers] = await store.observe([ChainBatch("lp", run("x", ["a"] + ["b"] * 12 + ["c"]))])
    # longest learned: 4 b's = 3 back-to-back repeats → limit floor(4.5) + 2 = 6
    assert [a.repeats for a in answers[1:8]] == [0, 1, 2, 3, 4, 5, 6]
    assert all(a.repeat_limit == 6 for a in answers[1:13])
    assert not any(a.anomalous for a in answers[:8])
    assert all(a.anomalous for a in answers[8:13])
    off = _store(redis_client, keys, repeat_factor=0.0)
    [again] = await off.observe([ChainBatch("lp", run("y", ["a"] + ["b"] * 12 + ["c"]))])
    assert not any(a.anomalous for a in again)


async def test_unlearnable_chain_with_a_learnable_step_order_is_judged_on_it(
    redis_client: Redis, keys: Keys
) -> None:
    """The default rule: a chain whose shapes never settle but whose steps keep one order
    (search → send, always) is judged on that order: a new shape of a known move passes, a move
    never learned is flagged and, past min_runs_locked, held back from learning."""
    store = _store(redis_client, keys, min_runs_soft=20, min_runs_locked=40, force_after_runs=20,
                   stability=1.1, stability_large=1.1)
    nodes = [f"n{i}" for i in range(40)]
    rnd = random.Random(5)
    for r in range(120):
        path = [rnd.choice(nodes) for _ in range(4)]
        items = [ObserveItem(f"r{r}-{i}", f"r{r}", node, end_of_run=i == 3,
                             action="mail.search" if i % 2 == 0 else "mail.send")
                 for i, node in enumerate(path)]
        await store.observe([ChainBatch("so", items, eligible=True)])
    meta = await store.chain_meta("so")
    assert meta["unl"] == "1" and meta["acl"] == "1" and meta["mode"] == "1"
    [[shape, skip, again]] = await store.observe([ChainBatch("so", [
        ObserveItem("p1", "probe", "brand-new", action="mail.search"),
        ObserveItem("p2", "probe", "n3", action="mail.search"),
        ObserveItem("p3", "probe2", "n4", action="mail.send"),
    ])])
    assert shape.to_new and not shape.anomalous
    assert skip.anomalous and skip.action == "flag" and skip.held  # search → search: never
    assert again.anomalous and again.held  # START → send: never learned either


async def test_chain_ttls_are_refreshed_when_due_not_at_every_call(
    redis_client: Redis, keys: Keys
) -> None:
    """observe.lua refreshes the seven chain keys' idle TTL when its last refresh (meta ``xp``)
    is older than a tenth of the TTL (here 600 s: 60 s), or when a key may have been created;
    otherwise a call writes no EXPIRE (one in 8 % of a one-event call's work). The meta counters
    are written back only where they changed, and every one is present after the first call."""
    store = _store(redis_client, keys, chain_ttl_s=600)
    ck = keys.chain_keys("t")
    t0 = 1_800_000_000_000
    await store.observe([ChainBatch("t", _run("r0", ["a", "b", "c"]))], now_ms=t0)
    meta = await store.chain_meta("t")
    for name in ("runs", "mode", "sig", "fb", "elig", "nn", "ne", "ovf", "chg", "forced",
                 "events", "nw", "nt", "unl", "nc", "aw", "at", "acl", "ht", "upd_ms"):
        assert name in meta, name
    assert meta["xp"] == str(t0) and meta["events"] == "3"
    for key in (ck.meta, ck.edges, ck.rows, ck.nodes, ck.coarse):
        assert 0 < await redis_client.ttl(key) <= 600, key
    await redis_client.persist(ck.edges)  # as if its TTL had been lost
    await store.observe([ChainBatch("t", _run("r1", ["a", "b", "c"]))], now_ms=t0 + 1_000)
    assert await redis_client.ttl(ck.edges) == -1  # not refreshed 1 s later
    meta = await store.chain_meta("t")
    assert meta["xp"] == str(t0) and meta["events"] == "6" and meta["upd_ms"] == str(t0 + 1_000)
    await store.observe([ChainBatch("t", _run("r2", ["a", "b", "c"]))], now_ms=t0 + 61_000)
    assert 0 < await redis_client.ttl(ck.edges) <= 600  # due: every key refreshed
    assert (await store.chain_meta("t"))["xp"] == str(t0 + 61_000)
