"""The gateway's admission round trip of one single event: CPU per call, single Redis and Cluster.

    python -m benchmarks.admission_rtt [--calls 2000] [--repeat 5] [--src DIR] [--json FILE]

What ``AdmissionStore.round_trip`` costs the gateway's process per request when the caller is
known (the speculative path of every single event: failure counter, key grant, the project's
side of the key, the agent's secret, one ``ratelimit.lua`` and one ``event_ids_claim.lua``
call), measured as process CPU time (best of ``--repeat`` rounds of ``--calls`` sequential
calls, so the machine's neighbours matter less than in wall-clock figures), on a redis-server
and on a 3-master Redis Cluster started for the run, both through the client factory. At 200
single events/s a gateway spends this 200 times a second; ``--src DIR`` imports Ratchet from
another source tree (a worktree of main) for a before/after pair run back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from typing import Any

import orjson


async def _measure(url: str, cluster: bool, calls: int, repeat: int) -> dict[str, float]:
    from models.ratelimit import parse_tiers
    from ratchet.store.admission import AdmissionStore
    from ratchet.store.keys import Keys
    from ratchet.store.ratelimit import RateLimiter
    from ratchet.store.redis import connect

    client = connect(url, cluster=cluster)
    keys = Keys(f"bench{uuid.uuid4().hex[:8]}")
    store = AdmissionStore(client, keys, client, window_s=3600)
    tier = next(iter(parse_tiers("bench:1000000000:1000").values()))
    limiter = RateLimiter(client, keys)
    project, agent = "prj_bench", "agent-1"
    await client.hset(keys.agent(project, agent), "secret", "s" * 32)
    try:
        async def once(i: int) -> None:
            await store.round_trip(
                failures_key=keys.auth_failures("127.0.0.1"), key_sha="a" * 64,
                project_id=project, key_side=(keys.project(project), "api_key_sha256"),
                agents=[agent],
                rate=limiter.call(project, tier, "ingest", 1, int(time.time() * 1000)),
                claims=[(f"ev-{i}-{uuid.uuid4().hex}", "fp")])

        for i in range(50):  # warm: connections open, scripts loaded
            await once(i)
        best_cpu = best_wall = float("inf")
        for _ in range(repeat):
            cpu, wall = time.process_time(), time.perf_counter()
            for i in range(calls):
                await once(i)
            best_cpu = min(best_cpu, time.process_time() - cpu)
            best_wall = min(best_wall, time.perf_counter() - wall)
        return {"cpu_us_per_call": round(best_cpu / calls * 1e6, 1),
                "wall_us_per_call": round(best_wall / calls * 1e6, 1)}
    finally:
        await client.aclose()


def run(calls: int, repeat: int) -> dict[str, Any]:
    from ratchet.sandbox.servers import RedisClusterServer, RedisServer

    with RedisServer() as single, RedisClusterServer(masters=3) as cluster:
        return {
            "single_redis": asyncio.run(_measure(single.url, False, calls, repeat)),
            "redis_cluster": asyncio.run(_measure(cluster.url, True, calls, repeat)),
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.admission_rtt", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--src", metavar="DIR", help="import Ratchet from this source tree")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    if args.src:
        sys.path.insert(0, os.path.abspath(args.src))
    result: dict[str, Any] = run(args.calls, args.repeat)
    result["src"] = args.src or "this tree"
    result["load_average"] = round(os.getloadavg()[0], 1)
    for name in ("single_redis", "redis_cluster"):
        r = result[name]
        print(f"{result['src']}: admission round trip on {name.replace('_', ' ')}: "
              f"{r['cpu_us_per_call']:,.1f} µs CPU, {r['wall_us_per_call']:,.1f} µs wall per call "
              f"(load {result['load_average']})")
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
