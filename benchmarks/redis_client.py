"""What the client spends on one Redis round trip: the factory's client now and before.

    python -m benchmarks.redis_client [--round-trips 3000] [--commands 1,5] [--rounds 8]
                                      [--loop uvloop|asyncio] [--json FILE]

Starts its own redis-server and sends round trips of ``--commands`` pipelined ``GET``s, one after
the other, through four clients on it, rounds alternating, all with the factory's packing and
retry and a 5 s timeout:

* ``before`` — as :func:`ratchet.store.redis.connect` made it until Dec 3: redis-py's
  ``socket_timeout`` (``asyncio.wait_for`` around every send, ``asyncio.timeout`` around every
  reply read) and redis-py's own pool paths (its lock, connect-retry wrapper and hooks on every
  command; the pipeline's release run as a task of its own by ``asyncio.shield``);
* ``deadline`` — the same pool paths, timeouts by one timer per busy connection
  (:mod:`ratchet.store.deadline`);
* ``pool`` — the deadline and the pool's short paths (:mod:`ratchet.store.pool`), pipelines
  executed by redis-py (the factory's client from Dec 3 until the lean pipeline);
* ``now`` — :func:`ratchet.store.redis.connect` as it is: as ``pool``, plain pipelines executed
  by :class:`ratchet.store.pipeline.LeanPipeline` (one write, the replies, no per-execute hooks).

Reported per pipeline size: the client's CPU µs per round trip (``process_time``), min and median
over the rounds, and each variant's median as a ratio to ``before``'s, and ``now``'s to
``pool``'s (this run, same machine: the machines here are shared and noisy, so the ratios are
the result).
"""


from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from benchmarks.report import emit
from ratchet.sandbox.servers import RedisServer
from ratchet.store.deadline import DeadlineConnection, with_deadline
from ratchet.store.pool import WaitingConnectionPool
from ratchet.store.redis import _hiredis_packing, connect

__all__ = ["main"]

TIMEOUT_S = 5.0


class _StockPaths(WaitingConnectionPool):
    """The factory's pool with redis-py's own get and release paths (as before Dec 3)."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        return await ConnectionPool.get_connection(self)  # type: ignore[no-untyped-call,no-any-return]

    async def release(self, connection: AbstractConnection) -> None:  # type: ignore[override]
        if isinstance(connection, DeadlineConnection):
            connection.mark_idle()
        await ConnectionPool.release(self, connection)


def _stock(url: str, *, deadline: bool) -> Redis:
    """A client on redis-py's pool paths: with redis-py's ``socket_timeout`` (``deadline``
    False: the factory's client before Dec 3) or with the deadline."""
    pool = _StockPaths.from_url(
        url, max_connections=1000, wait_s=TIMEOUT_S,
        socket_timeout=None if deadline else TIMEOUT_S, socket_connect_timeout=TIMEOUT_S,
        retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError])
    cls = _hiredis_packing(pool.connection_class)
    pool.connection_class = with_deadline(cls, TIMEOUT_S) if deadline else cls
    client = Redis(connection_pool=pool)
    client.auto_close_connection_pool = True
    return client


def _redis_py_pipelines(url: str) -> Redis:
    """The factory's pool and connections, pipelines executed by redis-py's ``Pipeline``."""
    client = Redis(connection_pool=connect(url, timeout_s=TIMEOUT_S).connection_pool)
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
            "before": lambda: _stock(server.url, deadline=False),
            "deadline": lambda: _stock(server.url, deadline=True),
            "pool": lambda: _redis_py_pipelines(server.url),
            "now": lambda: connect(server.url, timeout_s=TIMEOUT_S),
        }
        samples: dict[tuple[str, int], list[float]] = {(k, n): [] for k in kinds for n in sizes}
        for r in range(a.rounds):
            print(f"round {r + 1}/{a.rounds}…", flush=True)
            for n in sizes:
                for kind, make in kinds.items():
                    samples[(kind, n)].append(
                        runner(_cpu_per_round_trip(make, a.round_trips, n)))  # type: ignore[arg-type]
    for n in sizes:
        base = statistics.median(samples[("before", n)])
        for kind in kinds:
            got = samples[(kind, n)]
            res[f"cpu_us_per_round_trip_{n}_commands_{kind}"] = {
                "min": round(min(got), 1), "median": round(statistics.median(got), 1)}
            if kind != "before":
                res[f"ratio_{n}_commands_{kind}_to_before"] = round(
                    statistics.median(got) / base, 3)
        res[f"ratio_{n}_commands_now_to_pool"] = round(
            statistics.median(samples[("now", n)]) / statistics.median(samples[("pool", n)]), 3)
    emit(res, a.json)


if __name__ == "__main__":
    main()
