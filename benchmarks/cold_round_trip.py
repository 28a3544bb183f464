"""What one Redis round trip costs a client after it sat idle, against back to back.

    python -m benchmarks.cold_round_trip [--gaps 0,2,10,40] [--calls 400] [--commands 6]
                                         [--loop uvloop|asyncio] [--json FILE]

Starts a redis-server (unless RATCHET_REDIS_URL is set) and sends one pipeline of
``--commands`` ``GET``s (the size of the gateway's admission round trip) ``--calls`` times per
gap: back to back (gap 0) and after sleeping each gap in milliseconds. Reported per gap: this
process's CPU µs per round trip (``time.process_time`` taken after the sleep returns, so only
the round trip itself is counted) and the wall time. Single events at 25–200/s reach every
process of the pipeline after such a gap; a round trip measured back to back (as
``benchmarks.event_loop`` does) is the warm lower bound. The ratio between the two is the
machine's, not Ratchet's: here (a 2-core VM under nested virtualization) a process woken after
10 ms of idleness pays ≈ 3x the CPU for the same work (docs/performance.md, "Single events").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from typing import Any

import orjson

from ratchet.store.redis import connect


async def _measure(url: str, gaps_ms: list[float], calls: int, commands: int) -> list[dict[str, Any]]:
    redis = connect(url)
    try:
        await redis.set("cold-round-trip:x", "1")
        out = []
        for gap in gaps_ms:
            n = calls * (5 if gap == 0 else 1)
            cpu = wall = 0.0
            for _ in range(n):
                if gap:
                    await asyncio.sleep(gap / 1000)
                c, w = time.process_time(), time.perf_counter()
                pipe = redis.pipeline(transaction=False)
                for _ in range(commands):
                    pipe.get("cold-round-trip:x")
                await pipe.execute()
                cpu += time.process_time() - c
                wall += time.perf_counter() - w
            out.append({"gap_ms": gap, "calls": n, "cpu_us": round(cpu / n * 1e6, 1),
                        "wall_us": round(wall / n * 1e6, 1)})
        await redis.delete("cold-round-trip:x")
        return out
    finally:
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cold_round_trip", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gaps", default="0,2,10,40", help="idle gaps before each call, ms")
    p.add_argument("--calls", type=int, default=400, help="calls per gap (5x back to back)")
    p.add_argument("--commands", type=int, default=6, help="commands per pipeline")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    try:
        gaps = [float(g) for g in args.gaps.split(",") if g.strip()]
    except ValueError:
        p.error(f"--gaps takes comma-separated milliseconds, got {args.gaps!r}")
    if not gaps or any(g < 0 for g in gaps) or args.calls < 1 or args.commands < 1:
        p.error("--gaps must be non-negative and --calls, --commands at least 1")
    load = os.getloadavg()[0]
    with contextlib.ExitStack() as stack:
        url = os.environ.get("RATCHET_REDIS_URL")
        if not url:
            from ratchet.sandbox.servers import RedisServer
            url = stack.enter_context(RedisServer()).url
        coro = _measure(url, gaps, args.calls, args.commands)
        if args.loop == "uvloop":
            import uvloop
            rows = uvloop.run(coro)
        else:
            rows = asyncio.run(coro)
    warm = rows[0]["cpu_us"] if rows and rows[0]["gap_ms"] == 0 else None
    for r in rows:
        ratio = f"  ({r['cpu_us'] / warm:.2f}x back to back)" if warm else ""
        print(f"gap {r['gap_ms']:5.0f} ms: {r['cpu_us']:8.1f} µs CPU, {r['wall_us']:8.1f} µs wall "
              f"per round trip of {args.commands} commands{ratio}")
    print(f"({args.loop}; load average {load:.1f})")
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps({"loop": args.loop, "commands": args.commands,
                                  "load_average": load, "gaps": rows},
                                 option=orjson.OPT_INDENT_2) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
