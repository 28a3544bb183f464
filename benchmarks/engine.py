"""Engine throughput on Redis, as a ratio to the same-run ceiling of a minimal batched Lua script.

    python -m benchmarks.engine [--events 200000] [--batch 200] [--client plain|product]
                                [--json FILE] [--redis-url URL]

Measures, on one redis-server (started here unless --redis-url is given):
  * ceiling:    a minimal Lua script doing one HINCRBY per event, same batch size, same concurrency;
  * lua:        ``lua/observe.lua`` through the store adapter (node ids precomputed);
  * engine:     ``Engine.decide`` end to end (skeleton hashing + chain grouping + Lua + verdicts),
                and the same with node labels off (``labels_cost_ratio`` = with / without);
  * single:     ``Engine.decide`` with one event per call (what batching buys);
  * CPU:        this process's and Redis's CPU µs per event of the ceiling, lua and engine
                phases, and the ratios by CPU (``*_to_ceiling_cpu``: ceiling CPU / phase CPU);
  * memory:     Redis bytes per chain for a chain of ~100 nodes (MEMORY USAGE of its keys).
The ratios, not the absolute numbers, are the result: machines here are shared and noisy.
Every phase uses redis-py's default client on the asyncio loop (the setting the ≥ 0.3 target
was set with); ``--client product`` gives every phase the client a worker uses instead
(``ratchet.store.redis.connect``: commands packed by hiredis, lean pipelines) on uvloop, as a
worker runs. The product client lowers both the engine's CPU per event and the ceiling's (whose
cost is mostly client overhead), so the ratio moves either way within the ceiling's run-to-run
noise; runs of both are in docs/operations.md.
The engine here is the Markov chain alone (``guardrails=False``); benchmarks/guardrails.py
measures the guardrails next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import uvloop
from redis.asyncio import Redis

from benchmarks.report import emit
from models.events import IngestEvent
from ratchet.engine.engine import Engine
from ratchet.sandbox.servers import redis_for
from ratchet.store.chains import ChainBatch, ObserveItem
from ratchet.store.keys import Keys
from ratchet.store.redis import connect

CEILING_LUA = """
-- ceiling.lua: the least a batched counting script can do: one HINCRBY per event.
-- KEYS[1] hash; ARGV: fields. Output: number of fields counted.
for i = 1, #ARGV do redis.call('HINCRBY', KEYS[1], ARGV[i], 1) end
return #ARGV
"""

_STEPS = ["search", "fetch", "read", "write", "notify", "review", "plan", "summarize"]


def _payload(rng: random.Random, step: str) -> dict[str, Any]:
    body: dict[str, Any] = {"query": "x", "limit": rng.randint(1, 50), "step": step}
    if rng.random() < 0.3:
        body["filters"] = {"owner": "me", "tags": ["a", "b"]}
    if step in ("write", "notify"):
        body["target"] = {"id": rng.randint(1, 10**6), "kind": "doc"}
    return body


def make_events(n: int, *, agents: int, seed: int = 1) -> list[IngestEvent]:
    """Runs of 4–12 calls by ``agents`` agents of one project, interleaved by agent."""
    rng = random.Random(seed)
    out: list[IngestEvent] = []
    run_no = 0
    while len(out) < n:
        agent = f"agent-{rng.randrange(agents)}"
        run_no += 1
        length = rng.randint(4, 12)
        for i in range(length):
            step = _STEPS[(i + rng.randint(0, 1)) % len(_STEPS)]
            out.append(
                IngestEvent(
                    event_id=f"e{len(out)}", agent_id=agent, run_id=f"r{run_no}",
                    service="tools", action=f"tools.{step}", payload=_payload(rng, step),
                    project_id="bench", end_of_run=i == length - 1,
                )
            )
    return out[:n]


def by_agent_batches(events: list[IngestEvent], size: int) -> list[list[IngestEvent]]:
    """Envelope-like batches: consecutive events of one agent, up to ``size``."""
    pending: dict[str, list[IngestEvent]] = {}
    out: list[list[IngestEvent]] = []
    for ev in events:
        bucket = pending.setdefault(ev.agent_id, [])
        bucket.append(ev)
        if len(bucket) >= size:
            out.append(bucket)
            pending[ev.agent_id] = []
    out.extend(b for b in pending.values() if b)
    return out


async def _drive(jobs: Sequence[Callable[[], Awaitable[Any]]], concurrency: int) -> float:
    """Run the jobs with ``concurrency`` in flight (ordered per worker lane); seconds taken."""
    lanes = [jobs[i::concurrency] for i in range(concurrency)]

    async def lane(items: Sequence[Callable[[], Awaitable[Any]]]) -> None:
        for job in items:
            await job()

    started = time.perf_counter()
    await asyncio.gather(*(lane(items) for items in lanes))
    return time.perf_counter() - started


async def _redis_cpu(client: Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _measured(
    client: Redis, jobs: Sequence[Callable[[], Awaitable[Any]]], concurrency: int
) -> tuple[float, float, float]:
    """:func:`_drive` plus the CPU it cost: (wall s, this process's CPU s, Redis's CPU s).
    CPU per event is what a loaded, shared machine distorts least (wall time includes waiting
    for the neighbours)."""
    redis0, cpu0 = await _redis_cpu(client), time.process_time()
    wall = await _drive(jobs, concurrency)
    return wall, time.process_time() - cpu0, await _redis_cpu(client) - redis0


async def bench(url: str, n: int, batch: int, concurrency: int,
                client_kind: str = "plain") -> dict[str, Any]:
    client = connect(url, timeout_s=60.0) if client_kind == "product" else Redis.from_url(url)
    results: dict[str, Any] = {"events": n, "batch": batch, "concurrency": concurrency,
                               "client": client_kind}
    try:
        events = make_events(n, agents=64)
        batches = by_agent_batches(events, batch)

        # ceiling: one HINCRBY per event, one script call per batch, same shapes
        ceiling = client.register_script(CEILING_LUA)
        tag = uuid.uuid4().hex[:8]
        ceiling_jobs = [
            (lambda b=b, i=i: ceiling(keys=[f"ceil:{{{tag}{i % 64}}}"],
                                      args=[f"{e.run_id}\t{e.action}" for e in b]))
            for i, b in enumerate(batches)
        ]
        t, ceil_py, ceil_redis = await _measured(client, ceiling_jobs, concurrency)
        results["ceiling_events_per_s"] = round(n / t)

        # the observe script alone (nodes precomputed)
        engine = Engine.create(client, keys=Keys(f"bl{tag}"), guardrails=False)
        prepared = []
        for b in batches:
            chain = engine.chain_of(b[0])
            items = [ObserveItem(e.event_id, e.run_id, engine.node_of(e), False, e.end_of_run)
                     for e in b]
            prepared.append(ChainBatch(chain.tag, items))
        lua_jobs = [functools.partial(engine.store.observe, [cb]) for cb in prepared]
        t, lua_py, lua_redis = await _measured(client, lua_jobs, concurrency)
        results["lua_events_per_s"] = round(n / t)

        # the whole engine call per batch; the same without node labels (docs/explain.md),
        # alternated and best of two each, so the label cost is a same-run ratio
        best: dict[bool, float] = {}
        cpu: dict[bool, tuple[float, float]] = {}
        for rep, labelled in ((0, False), (0, True), (1, True), (1, False)):
            eng = Engine.create(client, keys=Keys(f"be{tag}{rep}{int(labelled)}"),
                                guardrails=False, labels=labelled)
            t, py, rd = await _measured(
                client, [functools.partial(eng.decide, b) for b in batches], concurrency)
            best[labelled] = min(t, best.get(labelled, t))
            if labelled not in cpu or py + rd < sum(cpu[labelled]):
                cpu[labelled] = (py, rd)
            if labelled and rep == 0:
                first = eng.chain_of(batches[0][0]).tag
                label_key = Keys(f"be{tag}01").chain_labels(first)
                results["labels_per_chain"] = int(await client.hlen(label_key))
                results["labels_bytes_per_chain"] = int(
                    await client.memory_usage(label_key, samples=0) or 0)
        results["engine_events_per_s"] = round(n / best[True])
        results["engine_no_labels_events_per_s"] = round(n / best[False])
        results["labels_cost_ratio"] = round(best[False] / best[True], 3)

        # one event per call (no batching), on a slice
        engine3 = Engine.create(client, keys=Keys(f"bs{tag}"), guardrails=False)
        single = events[: max(2000, n // 20)]
        single_jobs = [functools.partial(engine3.decide, [e]) for e in single]
        t = await _drive(single_jobs, concurrency)
        results["single_event_calls_per_s"] = round(len(single) / t)

        results["engine_to_ceiling"] = round(
            results["engine_events_per_s"] / results["ceiling_events_per_s"], 3
        )
        results["lua_to_ceiling"] = round(
            results["lua_events_per_s"] / results["ceiling_events_per_s"], 3
        )
        # CPU per event (this process / Redis) and the same ratios by CPU: robust to neighbours
        us = 1e6 / n
        results["ceiling_cpu_us_per_event"] = f"{ceil_py * us:.1f} / {ceil_redis * us:.1f}"
        results["lua_cpu_us_per_event"] = f"{lua_py * us:.1f} / {lua_redis * us:.1f}"
        results["engine_cpu_us_per_event"] = f"{cpu[True][0] * us:.1f} / {cpu[True][1] * us:.1f}"
        results["engine_to_ceiling_cpu"] = round((ceil_py + ceil_redis) / sum(cpu[True]), 3)
        results["lua_to_ceiling_cpu"] = round((ceil_py + ceil_redis) / (lua_py + lua_redis), 3)
        results["batching_speedup"] = round(
            results["engine_events_per_s"] / results["single_event_calls_per_s"], 1
        )
        results["bytes_per_chain_100_nodes"] = await chain_memory(client, tag)
    finally:
        await client.aclose()
    return results


async def chain_memory(client: Redis, tag: str) -> dict[str, int]:
    """Bytes of one chain with ~100 nodes and ~4 successors each (plus one live run)."""
    keys = Keys(f"mem{tag}")
    engine = Engine.create(client, keys=keys, guardrails=False)
    rng = random.Random(3)
    nodes = [uuid.UUID(int=rng.getrandbits(128)).hex[:16] for _ in range(100)]
    succ = {n: rng.sample(nodes, 4) for n in nodes}
    chain_tag = "m" + tag
    for r in range(300):
        cur = rng.choice(nodes)
        items = []
        for i in range(12):
            items.append(ObserveItem(f"m{r}-{i}", f"run{r}", cur, end_of_run=i == 11))
            cur = rng.choice(succ[cur])
        await engine.store.observe([ChainBatch(chain_tag, items)])
    ck = keys.chain_keys(chain_tag)
    sizes = {}
    for name, key in zip(("meta", "edges", "rows", "nodes", "window", "snapshot"), ck.as_list()):
        sizes[name] = int(await client.memory_usage(key, samples=0) or 0)
    meta = await engine.store.chain_meta(chain_tag)
    run_bytes = int(await client.memory_usage(keys.run(chain_tag, "run299"), samples=0) or 0)
    return {
        "nodes": int(meta["nn"]),
        "edges": int(meta["ne"]),
        "chain_bytes": sum(sizes.values()),
        "per_run_bytes_12_events": run_bytes,
        **{f"{k}_bytes": v for k, v in sizes.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=200, help="events per script call")
    ap.add_argument("--concurrency", type=int, default=4, help="calls in flight")
    ap.add_argument("--client", choices=("plain", "product"), default="plain",
                    help="plain: redis-py's default client on asyncio (default); product: the "
                         "worker's client (ratchet.store.redis.connect) on uvloop")
    ap.add_argument("--redis-url")
    ap.add_argument("--json", help="write results as JSON to this file")
    args = ap.parse_args(argv)
    with redis_for(args.redis_url) as url:
        print(f"engine benchmark: {args.events} events, batch {args.batch}, "
              f"{args.client} client...", file=sys.stderr)
        job = bench(url, args.events, args.batch, args.concurrency, args.client)
        res = uvloop.run(job) if args.client == "product" else asyncio.run(job)
    emit(res, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
