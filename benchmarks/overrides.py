"""What per-project engine overrides cost the engine: ``Engine.decide`` with and without them.

    python -m benchmarks.overrides [--events 100000] [--batch 200] [--rounds 3] [--json FILE]

Same events and batches as ``benchmarks/engine.py`` (one project, 64 agents), the Markov chain
alone, each variant on a fresh key namespace of one redis-server:
  * off:       ``Engine.create(project_overrides=False)`` (replay, benchmarks) — the ceiling;
  * on:        ``project_overrides=True`` (what workers run), no override stored;
  * override:  ``project_overrides=True`` with an override stored for the project.
Rounds alternate the variants and the best round of each counts (a shared, noisy machine).
Also counted, from Redis ``INFO commandstats``: the override version checks per event — the
``HGET`` calls of ``on`` minus those of ``off`` (the Lua scripts' own HGETs count in both): the
cache asks once per project and ``refresh_s``, not per event.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import uuid
from typing import Any

from redis.asyncio import Redis

from benchmarks.engine import _drive, by_agent_batches, make_events
from benchmarks.report import emit
from ratchet.engine.engine import Engine
from ratchet.sandbox.servers import redis_for
from ratchet.store.engine_overrides import save_override
from ratchet.store.keys import Keys


async def _hget_calls(client: Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_hget", {}).get("calls", 0))


async def bench(url: str, n: int, batch: int, concurrency: int, rounds: int) -> dict[str, Any]:
    client = Redis.from_url(url)
    events = make_events(n, agents=64)
    batches = by_agent_batches(events, batch)
    best: dict[str, float] = {}
    hget: dict[str, int] = {}
    try:
        for _ in range(rounds):
            for variant in ("off", "on", "override"):
                keys = Keys(f"bo{uuid.uuid4().hex[:8]}")
                if variant == "override":
                    await save_override(client, keys, "bench", {"floor_bits": 13.0},
                                        actor="cli", now=0.0)
                engine = Engine.create(client, keys=keys, guardrails=False,
                                       project_overrides=variant != "off")
                before = await _hget_calls(client)
                t = await _drive([functools.partial(engine.decide, b) for b in batches],
                                 concurrency)
                hget[variant] = await _hget_calls(client) - before
                best[variant] = max(best.get(variant, 0.0), n / t)
    finally:
        await client.aclose()
    return {
        "events": n, "batch": batch, "rounds": rounds,
        "off_events_per_s": round(best["off"]),
        "on_events_per_s": round(best["on"]),
        "override_events_per_s": round(best["override"]),
        "on_to_off": round(best["on"] / best["off"], 3),
        "override_to_off": round(best["override"] / best["off"], 3),
        "version_checks": hget["on"] - hget["off"],
        "version_checks_per_event": round((hget["on"] - hget["off"]) / n, 6),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--redis-url")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    with redis_for(args.redis_url) as url:
        print(f"overrides benchmark: {args.events} events × 3 variants × {args.rounds} rounds...",
              file=sys.stderr)
        res = asyncio.run(bench(url, args.events, args.batch, args.concurrency, args.rounds))
    emit(res, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
