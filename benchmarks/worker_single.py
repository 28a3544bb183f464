"""The worker's side of single events, alone: one envelope of one event at a time.

    python -m benchmarks.worker_single [--events 3000] [--warm 600] [--mature 40] [--repeat 3]
                                       [--redis-cluster] [--json FILE]

Starts a redis-server (unless RATCHET_REDIS_URL is set; a local 3-master Redis Cluster with
``--redis-cluster``, requests and Redis CPU then summed over the masters) and runs what a worker
does with a single event with a waiting caller — ``IngestProcessor.process`` of one envelope: the engine
(guardrails under the bench project's policy: velocity limits raised, so the rules run and keep
their state), the verdict save, the reply ``PUBLISH`` — for ``--events`` events in a row (no
Kafka, no gateway: the part of the path issue 12's "≤ 2 round trips in the worker" is about).
Synthetic agents (20) run sessions of 6 calls over a few services; ``--mature`` sessions per
agent are decided first in bulk envelopes (one agent's events, no waiting caller), so the chains
are past shadow as an established agent's are (0: young chains, every event observed dry and then
learned), then ``--warm`` single events. Reported, best of ``--repeat`` runs (each on fresh keys): Redis requests the server
read per event (``total_reads_processed``), the worker's CPU µs per event (``process_time``),
Redis's CPU µs per event (INFO ``used_cpu_user`` + ``used_cpu_sys``) and the wall time per event.
Run it from a worktree of ``main`` and from this one, alternately, for a before/after pair.
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
from typing import Any

import orjson

from benchmarks.redis_stats import cpu_seconds, reads_processed
from models.envelope import IngestEnvelope
from models.events import IngestEvent, parse_event
from models.guardrails import parse_policy_toml
from ratchet.engine.engine import Engine
from ratchet.store.keys import Keys
from ratchet.store.policies import FixedPolicy
from ratchet.store.redis import connect
from ratchet.store.replies import ReplyPublisher
from ratchet.store.verdicts import VerdictStore
from streams.tuning import use_uvloop
from streams.worker import IngestProcessor

RAISED_VELOCITY = """
[guardrails.velocity.per_agent]
limit = 100000000
[guardrails.velocity.per_run]
limit = 100000000
"""
SESSION = (("crm", "record.read"), ("crm", "record.search"), ("mail", "message.draft"),
           ("crm", "record.update"), ("mail", "message.send"), ("docs", "file.read"))


def _events(n: int, agents: int = 20) -> list[IngestEvent]:
    out = []
    for i in range(n):
        agent, step = i % agents, (i // agents) % len(SESSION)
        run = (i // agents) // len(SESSION)
        service, action = SESSION[step]
        out.append(parse_event({
            "event_id": uuid.uuid4().hex, "agent_id": f"agent{agent}", "run_id": f"r{run}",
            "service": service, "action": action,
            "payload": {"id": i % 97, "note": "x" * (i % 5)},
            "end_of_run": step == len(SESSION) - 1,
        }, "bench"))
    return out


async def _server_cpu(redis: Any) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _one_run(url: str, events: int, warm: int, mature: int = 0,
                   cluster_ports: Sequence[int] = ()) -> dict[str, float]:
    redis = connect(url, cluster=bool(cluster_ports))

    async def reads_now() -> int:
        if cluster_ports:
            return await reads_processed(cluster_ports)
        return int((await redis.info("stats"))["total_reads_processed"])

    async def cpu_now() -> float:
        return await (cpu_seconds(cluster_ports) if cluster_ports else _server_cpu(redis))

    keys = Keys(f"ws{uuid.uuid4().hex[:8]}")
    engine = Engine.create(redis, keys=keys,
                           policies=FixedPolicy(parse_policy_toml(RAISED_VELOCITY)))
    processor = IngestProcessor(engine, VerdictStore(redis, keys),
                                replies=ReplyPublisher(redis, keys))
    route = uuid.uuid4().hex
    bulk = mature * len(SESSION) * 20
    stream = _events(bulk + warm + events)
    by_agent: dict[str, list[IngestEvent]] = {}
    for ev in stream[:bulk]:
        by_agent.setdefault(ev.agent_id, []).append(ev)
    stream = stream[bulk:]
    for agent, evs in by_agent.items():
        for at in range(0, len(evs), 200):
            await processor.process([IngestEnvelope("bench", agent, uuid.uuid4().hex[:16],
                                                    time.time(), tuple(evs[at:at + 200]))])

    async def send(ev: IngestEvent) -> None:
        env = IngestEnvelope("bench", ev.agent_id, uuid.uuid4().hex[:16], time.time(), (ev,),
                             wait=True, reply=route)
        await processor.process([env])

    for ev in stream[:warm]:
        await send(ev)
    reads0 = await reads_now()
    server0 = await cpu_now()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for ev in stream[warm:]:
        await send(ev)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    server = await cpu_now() - server0
    # the two INFO requests of the measurement itself (one per node on a cluster)
    reads = await reads_now() - reads0 - (len(cluster_ports) if cluster_ports else 2)
    await redis.aclose()
    return {
        "redis_requests_per_event": round(reads / events, 3),
        "worker_cpu_us_per_event": round(cpu / events * 1e6, 1),
        "redis_cpu_us_per_event": round(server / events * 1e6, 1),
        "wall_us_per_event": round(wall / events * 1e6, 1),
    }


def run(url: str, events: int, warm: int, repeat: int, mature: int = 0,
        cluster_ports: Sequence[int] = ()) -> dict[str, Any]:
    runs = [asyncio.run(_one_run(url, events, warm, mature, cluster_ports))
            for _ in range(repeat)]
    best = {name: min(r[name] for r in runs) for name in runs[0]}
    return {"best": best, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.worker_single", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=3000)
    p.add_argument("--warm", type=int, default=600)
    p.add_argument("--mature", type=int, default=40,
                   help="sessions per agent decided in bulk first (chains past shadow)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                   help="event loop (the worker runs on uvloop unless RATCHET_WORKER_UVLOOP=0)")
    p.add_argument("--redis-cluster", action="store_true",
                   help="a local 3-master Redis Cluster instead of one redis-server (requests and "
                        "CPU summed over the masters; not with RATCHET_REDIS_URL)")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    if args.redis_cluster and os.environ.get("RATCHET_REDIS_URL"):
        p.error("--redis-cluster starts its own cluster: unset RATCHET_REDIS_URL")
    if args.loop == "uvloop":
        use_uvloop(True)
    load = os.getloadavg()[0]
    with contextlib.ExitStack() as stack:
        url = os.environ.get("RATCHET_REDIS_URL")
        ports: list[int] = []
        if args.redis_cluster:
            from ratchet.sandbox.servers import RedisClusterServer
            cluster = stack.enter_context(RedisClusterServer(masters=3))
            url, ports = cluster.url, cluster.ports
        elif not url:
            from ratchet.sandbox.servers import RedisServer
            url = stack.enter_context(RedisServer()).url
        result = run(url, args.events, args.warm, args.repeat, args.mature, ports)
    b = result["best"]
    print(f"worker, single events: {b['redis_requests_per_event']} Redis requests/event, "
          f"worker {b['worker_cpu_us_per_event']} µs CPU/event, redis "
          f"{b['redis_cpu_us_per_event']} µs CPU/event, wall {b['wall_us_per_event']} µs/event "
          f"(best of {args.repeat}; {args.loop}; {args.mature} sessions per agent first; "
          f"load average {load:.1f})")
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps({"load_average": load, "mature": args.mature, "loop": args.loop,
                                  **result}, option=orjson.OPT_INDENT_2)
                    + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
