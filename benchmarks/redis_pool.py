"""What the waiting Redis pool costs: client CPU per command, redis-py's default pool vs ours.

``python -m benchmarks.redis_pool [--commands N] [--concurrency C] [--rounds R] [--json FILE]``
starts its own redis-server and times ``GET`` through two clients on it, rounds alternating: one
on redis-py's ``ConnectionPool`` (refuses a command at once when every connection is busy) and
one made by :func:`ratchet.store.redis.connect` (:mod:`ratchet.store.pool`: such a command
waits for a connection), and a third on redis-py's ``BlockingConnectionPool`` (which waits too,
taking a lock on every command). It prints the client's CPU time per command (``process_time``, less
sensitive to other load on the machine than wall time) for each and their ratio, same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from redis.asyncio import BlockingConnectionPool, Redis

from ratchet.sandbox.servers import RedisServer
from ratchet.store.redis import connect

__all__ = ["main"]


async def _cpu_per_command(client: Redis, commands: int, concurrency: int) -> float:
    """Client CPU microseconds per GET, ``concurrency`` coroutines sharing ``commands``."""
    await client.set("bench:k", "v")

    async def worker(n: int) -> None:
        for _ in range(n):
            await client.get("bench:k")

    start = time.process_time()
    await asyncio.gather(*(worker(commands // concurrency) for _ in range(concurrency)))
    return (time.process_time() - start) / commands * 1e6


async def _run(url: str, commands: int, concurrency: int, rounds: int) -> dict[str, list[float]]:
    default = Redis.from_url(url)
    waiting = connect(url)
    blocking = Redis(connection_pool=BlockingConnectionPool.from_url(url, max_connections=100))
    out: dict[str, list[float]] = {"default_pool_us": [], "waiting_pool_us": [],
                                   "blocking_pool_us": []}
    try:
        for _ in range(rounds):
            out["default_pool_us"].append(await _cpu_per_command(default, commands, concurrency))
            out["waiting_pool_us"].append(await _cpu_per_command(waiting, commands, concurrency))
            out["blocking_pool_us"].append(await _cpu_per_command(blocking, commands,
                                                                  concurrency))
    finally:
        await default.aclose()
        await waiting.aclose()
        await blocking.aclose()
        await blocking.connection_pool.disconnect()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    with RedisServer() as server:
        got = asyncio.run(_run(server.url, args.commands, args.concurrency, args.rounds))
    a = statistics.median(got["default_pool_us"])
    b = statistics.median(got["waiting_pool_us"])
    c = statistics.median(got["blocking_pool_us"])
    print(f"client CPU per GET, median of {args.rounds} rounds ({args.concurrency} concurrent): "
          f"redis-py default pool {a:.1f} µs, ours (waiting) {b:.1f} µs (ratio {b / a:.2f}), "
          f"redis-py BlockingConnectionPool {c:.1f} µs (ratio {c / a:.2f})")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({**got, "median_default_us": a, "median_waiting_us": b,
                       "median_blocking_us": c, "ratio_waiting": b / a,
                       "ratio_blocking": c / a}, out, indent=1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
