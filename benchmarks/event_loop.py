"""asyncio's default event loop against uvloop on the gateway's own Redis round trip.

    python -m benchmarks.event_loop [--calls 3000] [--repeat 3] [--json FILE]

Starts a redis-server (unless RATCHET_REDIS_URL is set) and runs the single-event admission
round trip (:meth:`ratchet.store.admission.AdmissionStore.round_trip`: lockout counter, grant,
secret, rate limit, event-id claim in one pipeline) ``--calls`` times in a row on each loop,
alternating loops ``--repeat`` times; and, for comparison, the same reads and writes the way
``main`` made them (four round trips in a row) on asyncio's loop. Reported per loop: this process's CPU µs per round trip
(``time.process_time``: the client's work, not the server's) and the wall time per round trip,
best of the repeats. This is how ``RATCHET_GATEWAY_UVLOOP`` was chosen (docs/operations.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import uvloop

from models.events import IngestEvent
from models.ratelimit import INGEST, parse_tiers
from ratchet.platform.provisioning import agent_secrets
from ratchet.store.admission import AdmissionStore
from ratchet.store.idempotency import EventIds
from ratchet.store.keys import Keys
from ratchet.store.ratelimit import RateLimiter
from ratchet.store.redis import connect


async def _four_round_trips(redis: Any, keys: Keys, limiter: RateLimiter, tier: Any,
                            ids: EventIds, i: int) -> None:
    """What ``main`` did for a single event: the same reads and writes, one after another."""
    failures = keys.auth_failures("ip")
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(failures)
        pipe.ttl(failures)
        pipe.get(keys.api_key("sha"))
        await pipe.execute()
    await limiter.take("prj", tier, INGEST, 1, int(time.time() * 1000))
    await agent_secrets(redis, keys, "prj", ["a"])
    await ids.claim([IngestEvent(f"e{i}", "a", "r", "s", "x", {}, "prj")])


async def _round_trips(url: str, calls: int, sequential: bool = False) -> tuple[float, float]:
    redis = connect(url)
    keys = Keys(f"loop{uuid.uuid4().hex[:8]}")
    store = AdmissionStore(redis, keys, redis, window_s=60)
    limiter = RateLimiter(redis, keys)
    tier = parse_tiers("bench:1000000000:1000")["bench"]
    ids = EventIds(redis, keys, window_s=60)
    await redis.set(keys.api_key("sha"), "prj")
    await redis.hset(keys.agent("prj", "a"), "secret", "s")
    try:
        for i in range(50):  # connections made, scripts loaded
            await store.round_trip(failures_key=keys.auth_failures("ip"), key_sha="sha",
                                   project_id="prj", agents=["a"],
                                   rate=limiter.call("prj", tier, INGEST, 1, 0),
                                   claims=[(f"w{i}", "fp")])
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(calls):
            if sequential:
                await _four_round_trips(redis, keys, limiter, tier, ids, i)
                continue
            await store.round_trip(
                failures_key=keys.auth_failures("ip"), key_sha="sha", project_id="prj",
                agents=["a"], rate=limiter.call("prj", tier, INGEST, 1, int(time.time() * 1000)),
                claims=[(f"e{i}", "fp")])
        return time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await redis.aclose()


def _on(factory: Callable[[], asyncio.AbstractEventLoop], url: str, calls: int,
        sequential: bool) -> tuple[float, float]:
    loop = factory()
    try:
        return loop.run_until_complete(_round_trips(url, calls, sequential))
    finally:
        loop.close()


def run(url: str, calls: int, repeat: int) -> dict[str, Any]:
    loops: dict[str, tuple[Callable[[], asyncio.AbstractEventLoop], bool]] = {
        "asyncio, four round trips (main)": (asyncio.new_event_loop, True),
        "asyncio, one round trip": (asyncio.new_event_loop, False),
        "uvloop, one round trip": (uvloop.new_event_loop, False)}
    best = {name: (float("inf"), float("inf")) for name in loops}
    for _ in range(repeat):
        for name, (factory, sequential) in loops.items():
            cpu, wall = _on(factory, url, calls, sequential)
            best[name] = (min(best[name][0], cpu), min(best[name][1], wall))
    return {name: {"cpu_us_per_round_trip": round(cpu / calls * 1e6, 1),
                   "wall_us_per_round_trip": round(wall / calls * 1e6, 1)}
            for name, (cpu, wall) in best.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.event_loop", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    load = os.getloadavg()[0]
    with contextlib.ExitStack() as stack:
        url = os.environ.get("RATCHET_REDIS_URL")
        if not url:
            from ratchet.sandbox.servers import RedisServer
            url = stack.enter_context(RedisServer()).url
        result = run(url, args.calls, args.repeat)
    for name, row in result.items():
        print(f"{name}: admission {row['cpu_us_per_round_trip']} µs CPU (client), "
              f"{row['wall_us_per_round_trip']} µs wall (load average {load:.1f})")
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps({"load_average": load, "loops": result},
                                 option=orjson.OPT_INDENT_2) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
