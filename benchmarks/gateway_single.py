"""The gateway alone on the single-event path: ``POST /v1/events`` up to the Kafka acknowledgement.

    python -m benchmarks.gateway_single [--rates 100,200,500] [--seconds 8] [--src DIR]
                                        [--uvloop 1|0] [--json FILE]

Starts redis-server, Tansu and one gateway child (no worker: nothing waits for a verdict), then
per rate sends pre-signed single events open loop (``POST /v1/events``, answered 202 once the
envelope is on Kafka) and reports, per rate: the answer's p50/p99, the gateway's CPU per event
(from /proc, its idle CPU taken off) and the Redis requests the server read per event (INFO
``total_reads_processed``; only the gateway talks to this Redis). The first events teach the
gateway the key and the secret; they are not counted. ``--src DIR`` runs the gateway from another
source tree (e.g. a worktree of main) for a before/after pair; ``--uvloop 0`` runs it on
asyncio's default loop (``RATCHET_GATEWAY_UVLOOP``; leave it unset for a tree without it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from typing import Any

import aiohttp
import orjson
from redis.asyncio import Redis

from benchmarks.pipeline import cpu_seconds, gateway_child, idle_cpu
from models.signing import sign
from ratchet.kafka.topics import ensure_topics
from ratchet.platform.provisioning import create_agent, create_project
from ratchet.sandbox.demo_report import percentile
from ratchet.sandbox.process import wait_http_ready, worker_env
from ratchet.sandbox.servers import RedisServer, TansuServer, free_port
from ratchet.store.keys import Keys


def _body(project_id: str, agent: str, secret: str, i: int) -> tuple[bytes, dict[str, str]]:
    ev = {"event_id": str(uuid.uuid4()), "agent_id": agent, "run_id": f"{agent}-r{i // 6}",
          "service": "status", "action": "check", "payload": {"ok": True, "n": i}}
    ts = int(time.time())
    return orjson.dumps(ev), {"X-Ratchet-Signature": sign(secret, project_id, ev, ts),
                              "X-Ratchet-Timestamp": str(ts), "Content-Type": "application/json"}


async def _reads(redis: Redis) -> int:
    return int((await redis.info("stats"))["total_reads_processed"])


async def phase(base: str, session: aiohttp.ClientSession, auth: dict[str, str],
                bodies: list[tuple[bytes, dict[str, str]]], rate: float) -> dict[str, Any]:
    lat: list[float] = []
    statuses: dict[str, int] = {}

    async def one(i: int, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        body, headers = bodies[i]
        t0 = time.perf_counter()
        async with session.post(base + "/v1/events", data=body, headers={**auth, **headers}) as r:
            await r.read()
            statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
            if r.status == 202:
                lat.append((time.perf_counter() - t0) * 1000)

    start = time.perf_counter() + 0.05
    await asyncio.gather(*(one(i, start + i / rate) for i in range(len(bodies))))
    return {"rate_per_second": rate, "sent": len(bodies), "statuses": statuses,
            "p50_ms": round(percentile(lat, 50), 2), "p99_ms": round(percentile(lat, 99), 2)}


async def run(args: argparse.Namespace, redis_url: str, bootstrap: str) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    port = free_port()
    env = worker_env(
        redis_url=redis_url, kafka_bootstrap=bootstrap, key_prefix=f"gs{suffix}",
        topic_ingest=f"gs-{suffix}-ingest", topic_verdicts=f"gs-{suffix}-verdicts",
        topic_feedback=f"gs-{suffix}-feedback", topic_audit=f"gs-{suffix}-audit",
        topic_partitions=8, gateway_host="127.0.0.1", gateway_port=port, log_level="WARNING",
        rate_limit_tiers="bench:1000000000:1000", default_tier="bench",
    )
    if args.uvloop is not None:  # a tree without the setting refuses the unknown variable
        env["RATCHET_GATEWAY_UVLOOP"] = args.uvloop
    await ensure_topics(bootstrap, [f"gs-{suffix}-{t}" for t in ("ingest", "verdicts",
                                                                  "feedback", "audit")], 8)
    redis = Redis.from_url(redis_url)
    keys = Keys(f"gs{suffix}")
    project_id, api_key = await create_project(redis, keys, "gateway single")
    agents = {}
    for i in range(8):
        agents[f"a{i}"] = (await create_agent(redis, keys, project_id, f"a{i}"))[1]
    names = sorted(agents)
    gateway = gateway_child(env, args.src).start()
    assert gateway.proc is not None
    pid = gateway.proc.pid
    rows = []
    try:
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {api_key}"}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as session:
            await wait_http_ready(base + "/readyz", gateway, 60)
            warm = [_body(project_id, a, agents[a], i) for i, a in enumerate(names * 4)]
            await phase(base, session, auth, warm, 50)
            idle = (await idle_cpu({"gateway": pid}, args.idle_seconds))["gateway"]
            for rate in [float(r) for r in args.rates.split(",") if r.strip()]:
                n = int(rate * args.seconds)
                bodies = [_body(project_id, names[i % 8], agents[names[i % 8]], i)
                          for i in range(n)]
                load = os.getloadavg()[0]
                cpu0, reads0, t0 = cpu_seconds(pid), await _reads(redis), time.perf_counter()
                row = await phase(base, session, auth, bodies, rate)
                wall = time.perf_counter() - t0
                used = cpu_seconds(pid) - cpu0
                row["redis_requests_per_event"] = round(
                    (await _reads(redis) - reads0 - 1) / n, 2)
                row["gateway_cpu_us_per_event"] = round(
                    max(0.0, used - idle / 100 * wall) / n * 1e6, 1)
                row["load_average_at_start"] = load
                rows.append(row)
                loop = args.uvloop or "default"
                print(f"{args.src or 'this tree'} (uvloop {loop}) {rate:.0f}/s "
                      f"(load {load:.1f}): gateway CPU {row['gateway_cpu_us_per_event']:,.1f} "
                      f"µs/event, Redis requests/event {row['redis_requests_per_event']:.2f}, "
                      f"202 p50 {row['p50_ms']:.1f} ms p99 {row['p99_ms']:.1f} ms, "
                      f"statuses {row['statuses']}", flush=True)
    finally:
        gateway.stop()
        await redis.aclose()
    return {"src": args.src or "this tree", "uvloop": args.uvloop,
            "gateway_idle_cpu_percent": idle, "phases": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gateway_single", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", default="100,200,500")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--idle-seconds", type=float, default=3.0)
    p.add_argument("--src", metavar="DIR", help="run the gateway from this source tree")
    p.add_argument("--uvloop", choices=("1", "0"), default=None,
                   help="RATCHET_GATEWAY_UVLOOP for the gateway (unset: its default)")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    with RedisServer() as server, TansuServer() as broker:
        result = asyncio.run(run(args, server.url, broker.bootstrap))
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
