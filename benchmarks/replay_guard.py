"""What replay protection costs at the gateway, as ratios against the same gateway without it.

    python -m benchmarks.replay_guard [--bulk-events 40000] [--singles 3000] [--rounds 2]
                                      [--json FILE]

Starts redis-server and Tansu (unless RATCHET_REDIS_URL / RATCHET_KAFKA_BOOTSTRAP are set) and two
gateway child processes on them: **guarded** (defaults: every event id bound to its first body,
``RATCHET_EVENT_ID_WINDOW_S=86400``) and **unguarded** (``RATCHET_EVENT_ID_WINDOW_S=0``, the
ceiling). No worker runs: this measures the ingest path up to Kafka's acknowledgement.

* **bulk**: pre-signed ``POST /v1/events:batch`` bodies of 100 events, 16 in flight;
* **single**: ``POST /v1/events``, 32 in flight — on the unguarded gateway, on the guarded one,
  and on the guarded one with a fresh ``Idempotency-Key`` per request (reserve + finish scripts).

The phases alternate between the gateways for ``--rounds`` rounds and the best round of each is
kept, so a noisy neighbour hurts both sides alike. Report: events/s and ratio to the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any, cast

import aiohttp
import orjson
from redis.asyncio import Redis

from models.signing import sign
from ratchet.config.settings import get_settings
from ratchet.kafka.topics import ensure_topics
from ratchet.platform.provisioning import create_agent, create_project
from ratchet.sandbox.process import gateway_process, wait_http_ready, worker_env
from ratchet.sandbox.servers import RedisServer, TansuServer, free_port
from ratchet.store.keys import Keys

AGENT = "bench-agent"


def _event(project_id: str, secret: str, i: int, ts: int) -> dict[str, Any]:
    event_id, payload = str(uuid.uuid4()), {"id": i, "q": "status"}
    ev: dict[str, Any] = {"event_id": event_id, "agent_id": AGENT, "run_id": f"r{i // 10}",
                          "service": "crm", "action": "contacts.read", "payload": payload}
    return {**ev, "signature": sign(secret, project_id, ev, ts), "timestamp": ts}


def _single(ev: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = {k: v for k, v in ev.items() if k not in ("signature", "timestamp")}
    return orjson.dumps(body), {"X-Ratchet-Signature": ev["signature"],
                                "X-Ratchet-Timestamp": str(ev["timestamp"])}


async def _drive(session: aiohttp.ClientSession, url: str, requests: list[tuple[bytes,
                 dict[str, str]]], concurrency: int, ok: int) -> float:
    """Send every request with ``concurrency`` in flight; seconds taken."""
    queue = list(reversed(requests))

    async def lane() -> None:
        while queue:
            body, headers = queue.pop()
            async with session.post(url, data=body, headers=headers) as r:
                if r.status != ok:
                    raise SystemExit(f"{url}: {r.status} {(await r.text())[:300]}")
                await r.read()

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return time.perf_counter() - start


async def run(args: argparse.Namespace, redis_url: str, bootstrap: str) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    prefix = f"rg{suffix}"
    topics = {"topic_ingest": f"rg-{suffix}-ingest", "topic_verdicts": f"rg-{suffix}-verdicts",
              "topic_feedback": f"rg-{suffix}-feedback"}
    await ensure_topics(bootstrap, list(topics.values()), 4)
    redis = Redis.from_url(redis_url)
    try:
        keys = Keys(prefix)
        project_id, api_key = await create_project(redis, keys, "bench")
        _, secret = await create_agent(redis, keys, project_id, AGENT)
    finally:
        await redis.aclose()
    auth = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    ports = {"guarded": free_port(), "unguarded": free_port()}
    gateways = {
        name: gateway_process(worker_env(
            redis_url=redis_url, kafka_bootstrap=bootstrap, key_prefix=prefix,
            topic_partitions=4, gateway_host="127.0.0.1", gateway_port=port,
            log_level="WARNING", event_id_window_s=86_400 if name == "guarded" else 0,
            # a tier far above what one machine can send: the bucket is checked, never binding
            rate_limit_tiers="bench:1000000000:1000", default_tier="bench",
            **cast(dict[str, Any], topics)), name=f"gateway-{name}").start()
        for name, port in ports.items()
    }
    results: dict[str, list[float]] = {}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256),
                                         timeout=aiohttp.ClientTimeout(total=300)) as session:
            for name, gw in gateways.items():
                await wait_http_ready(f"http://127.0.0.1:{ports[name]}/readyz", gw, 60)
            for rnd in range(args.rounds):
                for phase, gw_name, key in (
                    ("bulk_unguarded", "unguarded", False), ("bulk_guarded", "guarded", False),
                    ("single_unguarded", "unguarded", False), ("single_guarded", "guarded", False),
                    ("single_guarded_idempotency_key", "guarded", True),
                ):
                    ts = int(time.time())
                    base = f"http://127.0.0.1:{ports[gw_name]}"
                    if phase.startswith("bulk"):
                        n = args.bulk_events
                        evs = [_event(project_id, secret, i, ts) for i in range(n)]
                        reqs = [(orjson.dumps({"events": evs[i:i + 100]}), auth)
                                for i in range(0, n, 100)]
                        seconds = await _drive(session, base + "/v1/events:batch", reqs, 16, 200)
                    else:
                        n = args.singles
                        reqs = []
                        for i in range(n):
                            body, sig = _single(_event(project_id, secret, i, ts))
                            extra = {"Idempotency-Key": uuid.uuid4().hex} if key else {}
                            reqs.append((body, {**auth, **sig, **extra}))
                        seconds = await _drive(session, base + "/v1/events", reqs, 32, 202)
                    results.setdefault(phase, []).append(n / seconds)
                    print(f"round {rnd + 1} {phase}: {n / seconds:,.0f} events/s",
                          file=sys.stderr)
    finally:
        for gw in gateways.values():
            gw.stop()
    best = {k: round(max(v), 1) for k, v in results.items()}
    return {
        "config": {"bulk_events": args.bulk_events, "singles": args.singles,
                   "rounds": args.rounds, "cpus": os.cpu_count()},
        "events_per_second": best,
        "ratios": {
            "bulk_guarded_vs_unguarded": round(best["bulk_guarded"] / best["bulk_unguarded"], 3),
            "single_guarded_vs_unguarded": round(
                best["single_guarded"] / best["single_unguarded"], 3),
            "single_idempotency_key_vs_unguarded": round(
                best["single_guarded_idempotency_key"] / best["single_unguarded"], 3),
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.replay_guard", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bulk-events", type=int, default=40_000)
    p.add_argument("--singles", type=int, default=3_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    settings = get_settings()
    with contextlib.ExitStack() as stack:
        redis_url = settings.redis_url or stack.enter_context(RedisServer()).url
        bootstrap = settings.kafka_bootstrap or stack.enter_context(TansuServer()).bootstrap
        result = asyncio.run(run(args, redis_url, bootstrap))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
