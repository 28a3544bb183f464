"""The worker's runtime knobs, measured: event loop (asyncio / uvloop) and garbage-collector tuning.

    python -m benchmarks.runtime [--pings 20000] [--events 30000] [--json FILE]

  * one Redis round trip (``PING`` through redis.asyncio, sequential): wall µs and this process's
    CPU µs per round trip, on the default asyncio loop and on uvloop, alternating (A B A B);
  * ``Engine.decide`` with guardrails (1,000-event batches of the engine benchmark's traffic):
    this process's CPU µs per event with Python's default GC and with the worker's tuning
    (``gc.freeze()`` after start-up + gen-0 threshold ``RATCHET_WORKER_GC_GEN0``), alternating,
    each on a fresh key namespace; also how many gen-0/1/2 collections ran.
On a shared machine compare the pairs, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import uvloop
from redis.asyncio import Redis

from benchmarks.engine import by_agent_batches, make_events
from benchmarks.report import emit
from ratchet.engine.engine import Engine
from ratchet.sandbox.servers import redis_for
from ratchet.store.keys import Keys
from streams.tuning import DEFAULT_GEN0, tune_gc


async def _pings(url: str, n: int) -> tuple[float, float]:
    client = Redis.from_url(url)
    try:
        await client.ping()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(n):
            await client.ping()
        return ((time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6)
    finally:
        await client.aclose()


def _run(factory: Callable[[], asyncio.AbstractEventLoop], coro: Any) -> Any:
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


async def _decide(url: str, prefix: str, n: int) -> float:
    client = Redis.from_url(url)
    try:
        engine = Engine.create(client, keys=Keys(prefix), guardrails=True)
        batches = by_agent_batches(make_events(n, agents=16, seed=5), 1000)
        await engine.decide(batches[0][:1])
        cpu = time.process_time()
        for b in batches:
            await engine.decide(b)
        return (time.process_time() - cpu) / n * 1e6
    finally:
        await client.aclose()


def bench(url: str, pings: int, events: int, rounds: int) -> dict[str, Any]:
    res: dict[str, Any] = {"pings": pings, "events": events, "rounds": rounds}
    loops: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    cpus: dict[str, list[float]] = {name: [] for name in loops}
    walls: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(rounds):
        for name, factory in loops.items():
            wall, cpu = _run(factory, _pings(url, pings))
            cpus[name].append(cpu)
            walls[name].append(wall)
    for name in loops:
        res[f"ping_{name}"] = (
            f"median wall {statistics.median(walls[name]):.1f} us, "
            f"cpu {statistics.median(cpus[name]):.1f} us "
            f"(cpu per round: {', '.join(f'{c:.1f}' for c in cpus[name])})")
    frozen = False
    for rnd in range(1, rounds + 1):
        for mode in ("default", "tuned"):
            if mode == "tuned" and not frozen:
                tune_gc(DEFAULT_GEN0)
                frozen = True
            elif mode == "default":
                gc.unfreeze()
                gc.set_threshold(700, 10, 10)
                frozen = False
            before = [s["collections"] for s in gc.get_stats()]
            us = _run(asyncio.new_event_loop, _decide(url, f"gc{mode}{rnd}", events))
            after = [s["collections"] for s in gc.get_stats()]
            res[f"decide_gc_{mode}_{rnd}"] = (
                f"{us:.1f} us/event, collections gen0/1/2 "
                f"{'/'.join(str(a - b) for a, b in zip(after, before))}")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pings", type=int, default=20_000)
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--rounds", type=int, default=3, help="alternations of each pair")
    ap.add_argument("--redis-url")
    ap.add_argument("--json", help="write results as JSON to this file")
    args = ap.parse_args(argv)
    with redis_for(args.redis_url) as url:
        print("runtime benchmark...", file=sys.stderr)
        res = bench(url, args.pings, args.events, args.rounds)
    emit(res, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
