"""The gateway alone on the bulk path: ``POST /v1/events:batch`` up to the Kafka acknowledgement.

    python -m benchmarks.gateway_bulk [--events 40000] [--batch 1000] [--agents 24]
                                      [--rounds 3] [--src DIR] [--against DIR]
                                      [--set RATCHET_NAME=VALUE] [--py-spy FILE] [--json FILE]

What ``bulk_cpu_us_per_event.gateway0`` of ``python -m benchmarks.pipeline`` measures, without
the worker beside it: redis-server, Tansu and one gateway child (no worker: nobody reads the
ingest topic), then per round a fresh project whose agents' events (ratchet.sandbox.traffic,
the pipeline's seed) are pre-signed into 1,000-event bodies exactly as the pipeline sends them
(one agent per request, one request in flight per agent). As in the pipeline, one single event
first teaches the gateway the project's API key, and each agent's first body finds its secret
not yet remembered (admission then takes two Redis round trips); the later bodies take one.
Per round: the gateway's CPU µs per event (from /proc, its idle CPU taken off), the answers'
statuses and the accepted events/s. ``--src DIR`` runs the gateway from another source tree;
``--against DIR`` runs a second gateway from DIR (e.g. a worktree of main) beside it, on the same
servers, the rounds interleaved (ABBA), for a before/after pair measured back to back on a noisy
machine (each round's ratio, and their median); ``--set NAME=VALUE`` sets a
gateway setting (e.g. ``RATCHET_GATEWAY_GC_GEN0``); ``--py-spy FILE`` samples
the gateway with py-spy during the bulk rounds (collapsed stacks, for flame graphs or grep).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import aiohttp
import orjson
from redis.asyncio import Redis

from benchmarks.pipeline import TICKS, cpu_seconds, gateway_child, idle_cpu
from models.signing import sign
from ratchet.kafka.topics import ensure_topics
from ratchet.platform.provisioning import create_agent, create_project
from ratchet.sandbox.process import wait_http_ready, worker_env
from ratchet.sandbox.servers import RedisServer, TansuServer, free_port
from ratchet.sandbox.traffic import iter_events
from ratchet.store.keys import Keys


def system_seconds(pid: int) -> float:
    """System (kernel) CPU seconds of a process: page faults, ``brk``/``mmap``, socket I/O."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[12]) / TICKS
    except OSError:
        return 0.0


async def _project(redis: Redis, keys: Keys, args: argparse.Namespace, ts: int) -> tuple[
        str, str, dict[str, str], list[list[bytes]]]:
    """A fresh project: (project id, API key, agent secrets, bodies per agent in stream order)."""
    project_id, api_key = await create_project(redis, keys, "gateway bulk")
    raw = list(iter_events(agents=args.agents, runs_per_agent=max(
        20, args.events // (args.agents * 9) + 1), warmup_runs=10**6, seed=args.seed,
        project_id=project_id))[: args.events]
    agents = sorted({e["agent_id"] for e in raw} | {"single-0"})
    secrets = {a: (await create_agent(redis, keys, project_id, a))[1] for a in agents}
    per_agent: dict[str, list[dict[str, Any]]] = {}
    for e in raw:
        ev = {k: v for k, v in e.items() if k not in ("label", "project_id")}
        ev["signature"] = sign(secrets[ev["agent_id"]], project_id, ev, ts)
        ev["timestamp"] = ts
        per_agent.setdefault(ev["agent_id"], []).append(ev)
    bodies = [[orjson.dumps({"events": evs[i: i + args.batch]})
               for i in range(0, len(evs), args.batch)] for evs in per_agent.values()]
    return project_id, api_key, secrets, bodies


async def _teach_key(session: aiohttp.ClientSession, base: str, project_id: str, api_key: str,
                     secret: str) -> None:
    """One single event (as the pipeline's warm-up): the gateway learns the API key."""
    ev = {"event_id": str(uuid.uuid4()), "agent_id": "single-0", "run_id": "s0",
          "service": "status", "action": "check", "payload": {"ok": True}}
    ts = int(time.time())
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
               "X-Ratchet-Signature": sign(secret, project_id, ev, ts),
               "X-Ratchet-Timestamp": str(ts)}
    async with session.post(base + "/v1/events", data=orjson.dumps(ev), headers=headers) as r:
        if r.status != 202:
            raise SystemExit(f"warm-up event refused: {r.status} {(await r.text())[:300]}")


async def _bulk(session: aiohttp.ClientSession, base: str, api_key: str,
                bodies: list[list[bytes]]) -> dict[str, int]:
    auth = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    statuses: dict[str, int] = {}

    async def agent_loop(agent_bodies: list[bytes]) -> None:
        for body in agent_bodies:
            async with session.post(base + "/v1/events:batch", data=body, headers=auth) as r:
                answer = await r.json()
                key = str(r.status) if not answer.get("rejected") else f"{r.status}+rejected"
                statuses[key] = statuses.get(key, 0) + 1

    await asyncio.gather(*(agent_loop(b) for b in bodies))
    return statuses


def _py_spy(pid: int, path: str) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(exe):
        raise SystemExit("--py-spy needs py-spy (pip install py-spy)")
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
                             "--output", path, "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _round(base: str, pid: int, idle: float,
                 prepared: tuple[str, str, dict[str, str], list[list[bytes]]], events: int,
                 ) -> dict[str, Any]:
    project_id, api_key, secrets, bodies = prepared
    # fresh connections per round: a gateway closes the ones left idle during another's round
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256),
                                     timeout=aiohttp.ClientTimeout(total=120)) as session:
        await _teach_key(session, base, project_id, api_key, secrets["single-0"])
        load = os.getloadavg()[0]
        cpu0, sys0, t0 = cpu_seconds(pid), system_seconds(pid), time.perf_counter()
        statuses = await _bulk(session, base, api_key, bodies)
        wall = time.perf_counter() - t0
    used = cpu_seconds(pid) - cpu0
    kernel = system_seconds(pid) - sys0
    return {"events": events, "statuses": statuses,
            "events_per_second": round(events / wall, 1),
            "gateway_cpu_us_per_event": round(
                max(0.0, used - idle / 100 * wall) / events * 1e6, 1),
            "gateway_system_us_per_event": round(kernel / events * 1e6, 1),
            "load_average_at_start": load}


async def run(args: argparse.Namespace, redis_url: str, bootstrap: str) -> list[dict[str, Any]]:
    """One gateway per source tree (this tree, and ``--against``'s), rounds interleaved."""
    suffix = uuid.uuid4().hex[:8]
    topics = [f"gb-{suffix}-{t}" for t in ("ingest", "verdicts", "feedback", "audit")]
    srcs: list[str | None] = [args.src] + [os.path.abspath(d) for d in args.against]
    ports = [free_port() for _ in srcs]
    env = worker_env(
        redis_url=redis_url, kafka_bootstrap=bootstrap, key_prefix=f"gb{suffix}",
        topic_ingest=topics[0], topic_verdicts=topics[1], topic_feedback=topics[2],
        topic_audit=topics[3], topic_partitions=args.partitions, gateway_host="127.0.0.1",
        gateway_port=ports[0], log_level="WARNING", max_batch_events=args.batch,
        rate_limit_tiers="bench:1000000000:1000", default_tier="bench",
    )
    env.update(dict(item.split("=", 1) for item in args.set))
    await ensure_topics(bootstrap, topics, args.partitions)
    redis = Redis.from_url(redis_url)
    keys = Keys(f"gb{suffix}")
    gateways = [gateway_child(dict(env, RATCHET_GATEWAY_PORT=str(port)), src,
                              name=f"gateway{g}").start()
                for g, (src, port) in enumerate(zip(srcs, ports, strict=True))]
    pids = [gw.proc.pid if gw.proc else 0 for gw in gateways]
    results: list[dict[str, Any]] = [{"src": src or "this tree", "rounds": []} for src in srcs]
    spy = None
    try:
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        for base, gw in zip(bases, gateways, strict=True):
            await wait_http_ready(base + "/readyz", gw, 60)
        idle = await idle_cpu({str(g): pid for g, pid in enumerate(pids)}, args.idle_seconds)
        for g, result in enumerate(results):
            result["gateway_idle_cpu_percent"] = idle[str(g)]
        if args.py_spy:
            spy = _py_spy(pids[0], args.py_spy)
            await asyncio.sleep(1.0)  # py-spy attaches
        for n in range(args.rounds):
            # ABBA…: neither tree always goes first
            order = list(range(len(srcs)))
            for g in order if n % 2 == 0 else order[::-1]:
                prepared = await _project(redis, keys, args, int(time.time()) + 60)
                events = sum(len(orjson.loads(b)["events"]) for bs in prepared[3] for b in bs)
                row = await _round(bases[g], pids[g], idle[str(g)], prepared, events)
                row["round"] = n + 1
                results[g]["rounds"].append(row)
                print(f"{results[g]['src']} round {n + 1} (load "
                      f"{row['load_average_at_start']:.1f}): gateway CPU "
                      f"{row['gateway_cpu_us_per_event']:.1f} µs/event (system "
                      f"{row['gateway_system_us_per_event']:.1f}), "
                      f"{row['events_per_second']:,.0f} events/s accepted, statuses "
                      f"{row['statuses']}", flush=True)
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        for gw in gateways:
            gw.stop()
        await redis.aclose()
    for result in results:
        figures = [r["gateway_cpu_us_per_event"] for r in result["rounds"]]
        result["median_us_per_event"] = statistics.median(figures)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gateway_bulk", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=40_000, help="events per round")
    p.add_argument("--batch", type=int, default=1000, help="events per bulk request")
    p.add_argument("--agents", type=int, default=24)
    p.add_argument("--rounds", type=int, default=3, help="rounds, each on a fresh project")
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--idle-seconds", type=float, default=2.0)
    p.add_argument("--src", metavar="DIR", help="run the gateway from this source tree")
    p.add_argument("--against", action="append", default=[], metavar="DIR",
                   help="also run a gateway from DIR (e.g. a worktree of main), rounds "
                        "interleaved with the first one's (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="RATCHET_NAME=VALUE",
                   help="a setting of the gateway (repeatable), e.g. RATCHET_GATEWAY_GC_GEN0=0")
    p.add_argument("--py-spy", metavar="FILE", help="sample the gateway with py-spy into FILE")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    with RedisServer() as server, TansuServer() as broker:
        results = asyncio.run(run(args, server.url, broker.bootstrap))
    for result in results:
        print(f"{result['src']}: median gateway CPU {result['median_us_per_event']:.1f} µs/event "
              f"over {len(result['rounds'])} rounds")
    if len(results) > 1:
        for other in results[1:]:
            ratios = [a["gateway_cpu_us_per_event"] / b["gateway_cpu_us_per_event"]
                      for a, b in zip(results[0]["rounds"], other["rounds"], strict=True)
                      if b["gateway_cpu_us_per_event"]]
            print(f"{results[0]['src']} / {other['src']}: median of the rounds' ratios "
                  f"{statistics.median(ratios):.3f} ({', '.join(f'{r:.2f}' for r in ratios)})")
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(results if len(results) > 1 else results[0],
                                 option=orjson.OPT_INDENT_2) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
