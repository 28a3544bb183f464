"""Engine scripts on a real redis-server: concurrency, decay, modes, protected learning, bounds."""

from __future__ import annotations

import asyncio

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
    store = _store(redis_client, keys, decay_low=0, decay_mid=0, decay_high=0)
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
    store = _store(redis_client, keys, checkpoint_runs=10)
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


async def test_high_volume_edges_decay_one_percent(redis_client: Redis, keys: Keys) -> None:
    store = _store(redis_client, keys, checkpoint_runs=30)
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


async def test_non_eligible_chain_never_locks(redis_client: Redis, keys: Keys) -> None:
    store = _store(redis_client, keys, min_runs_soft=20, min_runs_locked=40, force_after_runs=20)
    last = None
    for r in range(120):
        [ans] = await store.observe([ChainBatch("n", _run(f"r{r}", ["a", "b"]))])
        last = ans[-1]
    assert last is not None and last.mode == 1


async def test_forced_promotion_widens_sigma(redis_client: Redis, keys: Keys) -> None:
    store = _store(
        redis_client, keys, min_runs_soft=10, min_runs_locked=30, force_after_runs=30,
        stability=0.1, stability_large=0.1, checkpoint_runs=10, sigma_multiplier=3.0,
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
