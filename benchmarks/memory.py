"""Redis memory kept per event: stream synthetic traffic through the engine into a fresh Redis.

    python -m benchmarks.memory [--events 1000000] [--agents 24] [--batch 200] [--json FILE]

What the gateway and a worker do per batch, without Kafka and HTTP: the gateway's event-id
binding (``EventIds.claim``, kept ``RATCHET_EVENT_ID_WINDOW_S``), ``Engine.decide`` (guardrails on,
on the events' own timestamps, so velocity windows see realistic rates) →
``VerdictStore.save_many`` with the stored verdicts the worker would produce. Traffic: ``ratchet.sandbox.traffic`` (runs merged by
time, realistic payloads; anomalies after the warm-up). Redis is a fresh ``redis-server``
started here (or ``--redis-url``, whose database is used as is: give it an empty one).

Reports:
  * ``used_memory`` after the stream minus before, per event (everything still alive);
  * per key kind (chain state, run state + dedup answers, guardrail state, verdict buckets or keys,
    paused index, decision stream, ...): keys, bytes (``MEMORY USAGE`` on a sample of up to
    ``--sample`` keys of the kind, scaled by the kind's key count), bytes per event and the TTL
    the keys carry (median of the sample);
  * ``kept_24h_bytes_per_event``: what one event leaves in Redis for a day of traffic,
    Σ kinds bytes/event × min(TTL, 24 h) / 24 h (keys without TTL or with TTL ≥ 24 h count
    whole). At a steady rate R events/s, Redis holds about R × 86,400 × this.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from redis.asyncio import Redis

from benchmarks.report import emit
from models.events import IngestEvent, parse_event
from models.verdict_stored import encode_stored
from ratchet.engine.engine import Engine
from ratchet.sandbox.servers import redis_for
from ratchet.sandbox.traffic import iter_events
from ratchet.store.idempotency import EventIds
from ratchet.store.keys import Keys
from ratchet.store.verdicts import VerdictStore

DAY_S = 86_400

#: Key kinds by name (first match wins); prefix "mem" (the benchmark's key namespace).
KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("run state + dedup answers (observe)", re.compile(r"^mem:\{c:[^}]+\}:run:")),
    ("chain state (edges, rows, nodes, window, ...)", re.compile(r"^mem:\{c:")),
    ("guardrail run window", re.compile(r"^mem:\{g:[^}]+\}:run:.*:win$")),
    ("guardrail run nodes", re.compile(r"^mem:\{g:[^}]+\}:run:.*:(nodes|nb)$")),
    ("guardrail run state + dedup answers", re.compile(r"^mem:\{g:[^}]+\}:run:")),
    ("agent state (guardrail windows, cost, services)", re.compile(r"^mem:\{g:")),
    ("allow verdict buckets", re.compile(r"^mem:\{v:[^}]+\}:vb:a:")),
    ("other verdict buckets", re.compile(r"^mem:\{v:[^}]+\}:vb:n:")),
    ("verdict keys (one per verdict)", re.compile(r"^mem:v:")),
    ("event-id bindings (gateway)", re.compile(r"^mem:\{e:")),
    ("paused index", re.compile(r"^mem:\{p:[^}]+\}:paused$")),
    ("decision stream", re.compile(r"^mem:\{p:[^}]+\}:decisions$")),
)


def _kind(key: str) -> str:
    for name, pattern in KINDS:
        if pattern.search(key):
            return name
    return "other"


def _strip(ev: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ev.items() if k not in ("label", "project_id")}


def _batches(n: int, agents: int, size: int) -> Iterator[list[IngestEvent]]:
    """Per-agent batches of consecutive events, in stream order (the gateway's bulk envelopes:
    one agent each), ``size`` events at most; flushed when an agent's batch is full."""
    runs = max(20, n // (agents * 9) + 1)
    pending: dict[str, list[IngestEvent]] = defaultdict(list)
    stream = iter_events(agents=agents, runs_per_agent=runs, warmup_runs=150, seed=11,
                         project_id="memproj")
    for raw in itertools.islice(stream, n):
        ev = parse_event(_strip(raw), "memproj")
        bucket = pending[ev.agent_id]
        bucket.append(ev)
        if len(bucket) >= size:
            yield bucket
            pending[ev.agent_id] = []
    yield from (b for b in pending.values() if b)


async def _stream(client: Redis, n: int, agents: int, size: int, verdict_ttl_s: int) -> int:
    keys = Keys("mem")
    engine = Engine.create(client, keys=keys, guardrails=True, event_time=True)
    store = VerdictStore(client, keys)
    event_ids = EventIds(client, keys, window_s=DAY_S)
    lanes: list[list[list[IngestEvent]]] = [[] for _ in range(4)]
    done = 0

    async def lane(batches: list[list[IngestEvent]]) -> None:
        nonlocal done
        for batch in batches:
            await event_ids.claim(batch)
            verdicts = await engine.decide(batch)
            bodies = [encode_stored(v) for v in verdicts]
            await store.save_many(verdicts, verdict_ttl_s, bodies=bodies)
            done += len(batch)

    # an agent's batches stay on one lane (its order holds); lanes run concurrently, in chunks so
    # the generator's events are not all held at once
    chunk = 2_000
    pending: list[list[IngestEvent]] = []
    for batch in _batches(n, agents, size):
        pending.append(batch)
        if len(pending) >= chunk:
            for b in pending:
                lanes[hash(b[0].agent_id) % 4].append(b)
            await asyncio.gather(*(lane(list(lane_batches)) for lane_batches in lanes))
            lanes = [[] for _ in range(4)]
            pending = []
            print(f"  {done} events", file=sys.stderr)
    for b in pending:
        lanes[hash(b[0].agent_id) % 4].append(b)
    await asyncio.gather(*(lane(list(lane_batches)) for lane_batches in lanes))
    return done


async def _kinds(client: Redis, sample: int) -> dict[str, dict[str, Any]]:
    names: dict[str, list[str]] = defaultdict(list)
    async for raw in client.scan_iter(match="mem:*", count=5_000):
        key = raw.decode()
        names[_kind(key)].append(key)
    out: dict[str, dict[str, Any]] = {}
    for kind, keys in sorted(names.items()):
        picked = keys if len(keys) <= sample else keys[:: max(1, len(keys) // sample)][:sample]
        pipe = client.pipeline(transaction=False)
        for k in picked:
            pipe.memory_usage(k, samples=0)
            pipe.ttl(k)
        got = await pipe.execute()
        sizes = [int(x or 0) for x in got[0::2]]
        ttls = [int(t) for t in got[1::2]]
        total = sum(sizes) * len(keys) / len(picked)
        out[kind] = {"keys": len(keys), "bytes": round(total),
                     "ttl_s": round(statistics.median(ttls)) if ttls else None}
    return out


async def bench(url: str, n: int, agents: int, size: int, sample: int) -> dict[str, Any]:
    client = Redis.from_url(url)
    try:
        before = int((await client.info("memory"))["used_memory"])
        started = time.perf_counter()
        events = await _stream(client, n, agents, size, DAY_S)
        took = time.perf_counter() - started
        after = int((await client.info("memory"))["used_memory"])
        kinds = await _kinds(client, sample)
    finally:
        await client.aclose()
    kept = 0.0
    for info in kinds.values():
        per_event = info["bytes"] / events
        info["bytes_per_event"] = round(per_event, 1)
        ttl = info["ttl_s"]
        share = 1.0 if ttl is None or ttl < 0 or ttl >= DAY_S else ttl / DAY_S
        info["kept_24h_bytes_per_event"] = round(per_event * share, 1)
        kept += per_event * share
    return {
        "events": events,
        "seconds": round(took, 1),
        "used_memory_delta_bytes": after - before,
        "used_memory_bytes_per_event": round((after - before) / events, 1),
        "kept_24h_bytes_per_event": round(kept, 1),
        "kinds": kinds,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--agents", type=int, default=24)
    ap.add_argument("--batch", type=int, default=200, help="events per engine call (per agent)")
    ap.add_argument("--sample", type=int, default=2_000, help="keys sampled per kind")
    ap.add_argument("--redis-url")
    ap.add_argument("--json", help="write results as JSON to this file")
    args = ap.parse_args(argv)
    with redis_for(args.redis_url) as url:
        print(f"memory benchmark: {args.events} events...", file=sys.stderr)
        res = asyncio.run(bench(url, args.events, args.agents, args.batch, args.sample))
    emit(res, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
