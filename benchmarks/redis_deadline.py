"""What a command timeout costs the client: redis-py's per-operation timers vs the deadline.

    python -m benchmarks.redis_deadline [--round-trips 3000] [--commands 1,5] [--rounds 8]
                                        [--loop uvloop|asyncio] [--json FILE]

Starts its own redis-server and sends round trips of ``--commands`` pipelined ``GET``s, one after
the other, through two clients on it, rounds alternating: one as the client factory made it
before (redis-py's ``socket_timeout``: ``asyncio.wait_for`` around every send, ``asyncio.timeout``
around every reply read) and one made by :func:`ratchet.store.redis.connect` now (one timer per
busy connection, :mod:`ratchet.store.deadline`). Both give up after the same 5 s without an
answer. Reported per pipeline size: the client's CPU µs per round trip (``process_time``), min
and median over the rounds, and the ratio of the medians (this run, same machine: the machines
here are shared and noisy, so the ratio is the result).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from benchmarks.report import emit
from ratchet.sandbox.servers import RedisServer
from ratchet.store.pool import WaitingConnectionPool
from ratchet.store.redis import _hiredis_packing, connect

__all__ = ["main"]

TIMEOUT_S = 5.0


def _per_operation(url: str) -> Redis:
    """The factory's client before the deadline: the same pool, packing and retry, with
    redis-py's ``socket_timeout``."""
    pool = WaitingConnectionPool.from_url(
        url, max_connections=1000, wait_s=TIMEOUT_S, socket_timeout=TIMEOUT_S,
        socket_connect_timeout=TIMEOUT_S, retry=Retry(NoBackoff(), 1),
        retry_on_error=[RedisConnectionError])
    pool.connection_class = _hiredis_packing(pool.connection_class)
    client = Redis(connection_pool=pool)
    client.auto_close_connection_pool = True
    return client


async def _cpu_per_round_trip(make: Callable[[], Redis], round_trips: int, commands: int) -> float:
    client = make()
    try:
        await client.set("bench:k", "v")
        for _ in range(200):  # warm: connection open, code paths hot
            await client.get("bench:k")
        start = time.process_time()
        for _ in range(round_trips):
            pipe = client.pipeline(transaction=False)
            for _ in range(commands):
                pipe.get("bench:k")
            await pipe.execute()
        return (time.process_time() - start) / round_trips * 1e6
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--round-trips", type=int, default=3000, help="round trips per round")
    p.add_argument("--commands", default="1,5", help="pipeline sizes, comma-separated")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    p.add_argument("--json", metavar="FILE")
    a = p.parse_args(argv)
    sizes = [int(x) for x in a.commands.split(",")]
    runner: Callable[..., object] = asyncio.run
    if a.loop == "uvloop":
        import uvloop

        runner = uvloop.run
    res: dict[str, object] = {"round_trips": a.round_trips, "rounds": a.rounds, "loop": a.loop}
    with RedisServer() as server:
        kinds: dict[str, Callable[[], Redis]] = {
            "per_operation": lambda: _per_operation(server.url),
            "deadline": lambda: connect(server.url, timeout_s=TIMEOUT_S),
        }
        samples: dict[tuple[str, int], list[float]] = {(k, n): [] for k in kinds for n in sizes}
        for r in range(a.rounds):
            print(f"round {r + 1}/{a.rounds}…", flush=True)
            for n in sizes:
                for kind, make in kinds.items():
                    samples[(kind, n)].append(
                        runner(_cpu_per_round_trip(make, a.round_trips, n)))  # type: ignore[arg-type]
    for n in sizes:
        before, after = samples[("per_operation", n)], samples[("deadline", n)]
        res[f"cpu_us_per_round_trip_{n}_commands_per_operation"] = {
            "min": round(min(before), 1), "median": round(statistics.median(before), 1)}
        res[f"cpu_us_per_round_trip_{n}_commands_deadline"] = {
            "min": round(min(after), 1), "median": round(statistics.median(after), 1)}
        res[f"ratio_{n}_commands_deadline_to_per_operation"] = round(
            statistics.median(after) / statistics.median(before), 3)
    emit(res, a.json)


if __name__ == "__main__":
    main()
