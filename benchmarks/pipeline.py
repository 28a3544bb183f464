"""The whole pipeline under load, with the same-run raw ceilings it is built from.

    python -m benchmarks.pipeline [--events 200000] [--gateways 1,2] [--workers 1,2]
                                  [--redis-cluster] [--rates 100,200,500]
                                  [--single-seconds 10] [--policy raised|default]
                                  [--gateway-src DIR] [--no-ceilings] [--json FILE]

Starts redis-server (a 3-master Redis Cluster with ``--redis-cluster``) and Tansu (unless
RATCHET_REDIS_URL / RATCHET_KAFKA_BOOTSTRAP are set), then for each configuration — the
``--gateways`` and ``--workers`` lists zipped, e.g. ``--gateways 1,2 --workers 1,2`` runs (1,1)
then (2,2) on the same servers, each on fresh topics and keys — that many gateways and workers
as child processes (load spread round robin over the gateways), and measures:

* **bulk**: synthetic agents' events (ratchet.sandbox.traffic) pre-signed into ``POST /v1/events:batch``
  bodies (one agent per request, one request in flight per agent), from the first request to
  the last verdict on the ``verdicts`` topic: sustained events/s end to end
  (HTTP → Kafka → worker → Redis → verdicts topic);
* **single**: ``POST /v1/events?wait_ms=2000`` opened at fixed rates (``--rates``, default
  100, 200 and 500/s, open loop) by eight agents whose chains are past shadow first
  (``--single-mature`` runs each, sent in bulk outside the measured windows; 0: young chains): p50/p99 of the HTTP round trip (the verdict is in the answer),
  the ingest-to-verdict time the verdict envelopes carry, the Redis requests the server read per
  event (every process) and the CPU per event of every process;
* **verdict bytes per gateway**: ``ratchet_gateway_verdict_bytes_read_total`` and
  ``ratchet_gateway_waited_verdicts_total`` scraped from every gateway after the run: the bytes
  each gateway read to answer its waiting callers, per verdict of the run and per verdict its
  callers waited for (a gateway that reads every verdict reads the whole topic);
* **ceilings** (first configuration only; ``--no-ceilings`` skips them), same run, same machine: aiokafka producing and consuming messages of the bulk
  envelopes' size and count (events/s if Kafka were all there is), and ``Engine.decide`` on the
  same events in batches on the same Redis (events/s if the engine were all there is).

Traffic is replayed far faster than real time while the velocity guardrail counts over
wall-clock windows, so under the default policy it would flag most events (unrepresentative
verdicts and work). The bench project therefore gets velocity limits at their maximum (the
rules still run and keep their state; ``--policy default`` keeps the default policy); the
``policy`` line gives the compression and the verdicts by action. CPU seconds of every process
(from /proc) show where the time goes; each process's idle CPU (measured after the phases, no
traffic) is reported separately and taken off the per-event figures. ``--gateway-src DIR``
runs the gateway from another source tree (a worktree of main) for a before/after pair in one
sitting. Machines here are shared and noisy: ratios within one run say more than absolute
numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from models.envelope import IngestEnvelope, encode_ingest
from models.events import parse_event
from models.signing import sign
from ratchet.config.settings import get_settings
from ratchet.engine.engine import Engine
from ratchet.kafka.topics import ensure_topics
from ratchet.platform.provisioning import create_agent, create_project
from ratchet.sandbox.demo_report import percentile
from ratchet.sandbox.harness import VerdictCollector
from ratchet.sandbox.process import (
    FAST_GROUP_ENV,
    ChildProcess,
    gateway_process,
    wait_http_ready,
    worker_env,
)
from ratchet.sandbox.servers import RedisClusterServer, RedisServer, TansuServer, free_port
from ratchet.sandbox.traffic import iter_events
from ratchet.store.keys import Keys
from ratchet.store.policies import save_policy
from ratchet.store.redis import connect

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (and its reaped children)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def _strip(ev: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ev.items() if k not in ("label", "project_id")}


def _signed(ev: dict[str, Any], project_id: str, secret: str, ts: int) -> dict[str, Any]:
    out = _strip(ev)
    out["signature"] = sign(secret, project_id, out, ts)
    out["timestamp"] = ts
    return out


def _single_event(agent: str, i: int) -> dict[str, Any]:
    """The single agents' traffic: runs of six status checks."""
    return {"event_id": str(uuid.uuid4()), "agent_id": agent, "run_id": f"{agent}-s{i // 6}",
            "service": "status", "action": "check", "payload": {"ok": True, "n": i},
            "end_of_run": i % 6 == 5}


def _mature_bodies(project_id: str, secrets: Mapping[str, str], sessions: int,
                   batch: int) -> tuple[dict[str, list[bytes]], dict[str, list[int]]]:
    """Batch bodies of ``sessions`` runs per single agent (run ids apart from the phases')."""
    ts = int(time.time()) + 60
    bodies: dict[str, list[bytes]] = {}
    counts: dict[str, list[int]] = {}
    for agent, secret in secrets.items():
        evs = []
        for i in range(6 * sessions):
            ev = _single_event(agent, i)
            ev["run_id"] = f"{agent}-m{i // 6}"
            evs.append(_signed(ev, project_id, secret, ts))
        bodies[agent] = [orjson.dumps({"events": evs[i: i + batch]})
                         for i in range(0, len(evs), batch)]
        counts[agent] = [min(batch, len(evs) - i) for i in range(0, len(evs), batch)]
    return bodies, counts


def _single_body(project_id: str, agent: str, secret: str, i: int) -> tuple[bytes, dict[str, str]]:
    ev = _single_event(agent, i)
    ts = int(time.time())
    sig = sign(secret, project_id, ev, ts)
    return orjson.dumps(ev), {"X-Ratchet-Signature": sig, "X-Ratchet-Timestamp": str(ts)}


async def bulk_phase(
    bases: Sequence[str], session: aiohttp.ClientSession, auth: dict[str, str],
    bodies: dict[str, list[bytes]], counts: dict[str, list[int]], collector: VerdictCollector,
    total: int,
) -> dict[str, Any]:
    async def agent_loop(agent: str, base: str) -> None:
        for body in bodies[agent]:
            async with session.post(base + "/v1/events:batch", data=body,
                                    headers=auth) as r:
                answer = await r.json()
                if r.status != 200 or answer.get("rejected"):
                    raise SystemExit(f"bulk request failed: {r.status} {str(answer)[:500]}")

    start_seen = collector.verdicts_seen
    started = time.perf_counter()
    await asyncio.gather(*(agent_loop(a, bases[i % len(bases)]) for i, a in enumerate(bodies)))
    accepted_s = time.perf_counter() - started
    ok = await collector.wait_count(start_seen + total, 300)
    seconds = time.perf_counter() - started
    return {"events": total, "requests": sum(len(v) for v in bodies.values()),
            "accepted_seconds": round(accepted_s, 3), "seconds": round(seconds, 3),
            "complete": ok, "events_per_second": round(total / seconds, 1),
            "ingest_events_per_second": round(total / accepted_s, 1)}


async def open_loop(
    session: aiohttp.ClientSession, posts: Sequence[tuple[str, bytes, Mapping[str, str]]],
    rate: float,
) -> tuple[list[float], dict[str, int]]:
    """POST each ``(url, body, headers)`` at its own slot of a fixed rate, from 0.1 s on, whatever
    the answers before it (open loop): the round trips (ms) of the 200 answers, and how many
    answers each status had."""
    lat: list[float] = []
    statuses: dict[str, int] = {}

    async def one(i: int, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        url, body, headers = posts[i]
        t0 = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as r:
            await r.read()
            statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
            if r.status == 200:
                lat.append((time.perf_counter() - t0) * 1000)

    start = time.perf_counter() + 0.1
    await asyncio.gather(*(one(i, start + i / rate) for i in range(len(posts))))
    return lat, statuses


async def single_phase(
    bases: Sequence[str], session: aiohttp.ClientSession, auth: dict[str, str], project_id: str,
    agents: dict[str, str], rate: float, seconds: float, collector: VerdictCollector,
) -> dict[str, Any]:
    n = int(rate * seconds)
    names = sorted(agents)
    posts = []
    for i in range(n):
        body, headers = _single_body(project_id, names[i % len(names)],
                                     agents[names[i % len(names)]], i)
        posts.append((bases[i % len(bases)] + "/v1/events?wait_ms=2000", body,
                      {**auth, **headers}))
    mark = len(collector.envelopes)
    lat, statuses = await open_loop(session, posts, rate)
    await asyncio.sleep(0.5)
    # gateway received → worker decided (the verdict's own clock), independent of how often
    # this benchmark's collector polls the verdicts topic
    server = [
        (v.decided_at - r.envelope.received_at) * 1000 for r in collector.envelopes[mark:]
        if r.envelope.project_id == project_id and r.envelope.received_at
        for v in r.envelope.verdicts
    ]
    return {
        "rate_per_second": rate, "sent": n, "statuses": statuses,
        "round_trip_ms": {"p50": round(percentile(lat, 50), 2),
                          "p99": round(percentile(lat, 99), 2),
                          "max": round(max(lat), 2) if lat else None},
        "received_to_decided_ms": {"p50": round(percentile(server, 50), 2),
                                 "p99": round(percentile(server, 99), 2)},
    }


async def kafka_ceiling(bootstrap: str, messages: Sequence[bytes], per_message: float,
                        partitions: int) -> dict[str, Any]:
    topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [topic], partitions)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=10,
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks=1,
                                max_request_size=8 * 1024 * 1024)
    await consumer.start()
    await producer.start()
    try:
        started = time.perf_counter()

        async def consume() -> None:
            got = 0
            while got < len(messages):
                batch = await consumer.getmany(timeout_ms=200)
                got += sum(len(v) for v in batch.values())

        reader = asyncio.ensure_future(consume())
        for i, m in enumerate(messages):
            await producer.send(topic, m, key=str(i % 64).encode())
        await producer.flush()
        await asyncio.wait_for(reader, 120)
        seconds = time.perf_counter() - started
    finally:
        await producer.stop()
        await consumer.stop()
    return {"messages": len(messages), "seconds": round(seconds, 3),
            "messages_per_second": round(len(messages) / seconds, 1),
            "events_per_second": round(len(messages) * per_message / seconds, 1)}


async def engine_ceiling(redis_url: str, bodies: Sequence[bytes], cluster: bool) -> dict[str, Any]:
    """``Engine.decide`` per envelope (same batches the worker sees), on the same Redis."""
    from models.envelope import decode_ingest

    envelopes = [decode_ingest(b) for b in bodies]
    client = connect(redis_url, cluster=cluster)
    try:
        engine = Engine.create(client, keys=Keys(f"bench{uuid.uuid4().hex[:8]}"))
        n = sum(len(e.events) for e in envelopes)
        started = time.perf_counter()
        for env in envelopes:
            await engine.decide(env.events)
        seconds = time.perf_counter() - started
    finally:
        await client.aclose()
    return {"events": n, "seconds": round(seconds, 3), "events_per_second": round(n / seconds, 1)}


async def topic_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The end offset of every partition of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()  # fetches the cluster's metadata
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic)
                                                           or ())]
        ends = await consumer.end_offsets(parts)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def ingest_bytes(bootstrap: str, topic: str, start: dict[int, int],
                      end: dict[int, int]) -> dict[str, Any]:
    """Messages, value bytes and events (decoded) of ``topic`` between two offset maps: what the
    gateways wrote to the ingest topic during a phase, whatever their wire version."""
    from models.envelope import decode_ingest

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False,
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    messages = size = events = 0
    try:
        parts = [TopicPartition(topic, p) for p in end if end[p] > start.get(p, 0)]
        consumer.assign(parts)
        for tp in parts:
            consumer.seek(tp, start.get(tp.partition, 0))
        left = {tp: end[tp.partition] for tp in parts}
        while left:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for rec in records:
                    if rec.offset < left.get(tp, -1):
                        messages += 1
                        size += len(rec.value or b"")
                        events += len(decode_ingest(rec.value or b"").events)
                if tp in left and await consumer.position(tp) >= left[tp]:
                    del left[tp]
    finally:
        await consumer.stop()
    return {"messages": messages, "bytes": size, "events": events,
            "bytes_per_event": round(size / max(events, 1), 1)}


async def gateway_counters(session: aiohttp.ClientSession, base: str) -> dict[str, float]:
    """The verdict-routing counters of one gateway's ``/metrics``."""
    async with session.get(base + "/metrics") as r:
        text = await r.text()
    wanted = {"ratchet_gateway_verdict_bytes_read": "bytes_read",
              "ratchet_gateway_waited_verdicts": "waited_verdicts"}
    out = {v: 0.0 for v in wanted.values()}
    for family in text_string_to_metric_families(text):
        if family.name in wanted:
            out[wanted[family.name]] = sum(
                s.value for s in family.samples if s.name.endswith("_total"))
    return out


async def run(args: argparse.Namespace, redis_url: str, bootstrap: str,
              procs: dict[str, int], n_gateways: int, n_workers: int,
              ceilings: bool) -> dict[str, Any]:
    settings = get_settings()
    suffix = uuid.uuid4().hex[:8]
    prefix = f"bench{suffix}"
    ports = [free_port() for _ in range(n_gateways)]
    env = worker_env(
        redis_url=redis_url, kafka_bootstrap=bootstrap, key_prefix=prefix,
        topic_ingest=f"bench-{suffix}-ingest", topic_verdicts=f"bench-{suffix}-verdicts",
        topic_feedback=f"bench-{suffix}-feedback", topic_partitions=args.partitions,
        worker_id=f"bench-{suffix}", worker_web_port=0, gateway_host="127.0.0.1",
        gateway_port=ports[0], log_level="WARNING", max_batch_events=args.batch,
        # a tier far above what one machine can send: the bucket call is measured, never binding
        rate_limit_tiers="bench:1000000000:1000", default_tier="bench",
        redis_cluster=int(args.redis_cluster),
    )
    env.update(FAST_GROUP_ENV)
    keys = Keys(prefix)
    redis = connect(redis_url, cluster=args.redis_cluster)
    try:
        project_id, api_key = await create_project(redis, keys, "bench")
        await bench_policy(redis, keys, project_id, args.policy)
        raw = list(iter_events(agents=args.agents, runs_per_agent=max(
            20, args.events // (args.agents * 9) + 1), warmup_runs=10**6, seed=args.seed,
            project_id=project_id))[: args.events]
        agent_ids = sorted({e["agent_id"] for e in raw})
        secrets = {a: (await create_agent(redis, keys, project_id, a))[1] for a in agent_ids}
        singles = [f"single-{i}" for i in range(8)]
        for a in singles:
            secrets[a] = (await create_agent(redis, keys, project_id, a))[1]
    finally:
        await redis.aclose()

    # pre-signed bulk bodies: one agent per request, in stream order per agent
    ts = int(time.time()) + 60
    per_agent: dict[str, list[dict[str, Any]]] = {a: [] for a in agent_ids}
    for ev in raw:
        per_agent[ev["agent_id"]].append(_signed(ev, project_id, secrets[ev["agent_id"]], ts))
    bodies = {a: [orjson.dumps({"events": evs[i: i + args.batch]})
                  for i in range(0, len(evs), args.batch)] for a, evs in per_agent.items()}
    counts = {a: [min(args.batch, len(evs) - i) for i in range(0, len(evs), args.batch)]
              for a, evs in per_agent.items()}
    # the envelopes the gateway will write for these requests (for the raw ceilings)
    envelope_bodies = [
        encode_ingest(IngestEnvelope(project_id, a, uuid.uuid4().hex, time.time(), tuple(
            parse_event(_strip(e), project_id) for e in evs[i: i + args.batch])))
        for a, evs in per_agent.items() for i in range(0, len(evs), args.batch)
    ]
    per_message = len(raw) / len(envelope_bodies)

    procs = dict(procs)
    gateways = [gateway_child(dict(env, RATCHET_GATEWAY_PORT=str(port)), args.gateway_src,
                              name=f"gateway{g}").start() for g, port in enumerate(ports)]
    workers = [ChildProcess(env, name=f"worker{i}").start() for i in range(n_workers)]
    for g, gw in enumerate(gateways):
        procs[f"gateway{g}"] = gw.proc.pid if gw.proc else 0
    for i, w in enumerate(workers):
        procs[f"worker{i}"] = w.proc.pid if w.proc else 0
    try:
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        auth = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256),
            timeout=aiohttp.ClientTimeout(total=120),
        ) as session:
            for base, gw in zip(bases, gateways):
                await wait_http_ready(base + "/readyz", gw, 30)
            async with VerdictCollector(bootstrap, f"bench-{suffix}-verdicts",
                                        from_beginning=False, fetch_wait_ms=50) as collector:
                # warm the workers up (group join) with single events until one is answered
                # through every gateway
                deadline = time.monotonic() + 90
                i = 0
                last = ""
                for base in bases:
                    while True:
                        body, headers = _single_body(project_id, singles[0], secrets[singles[0]], i)
                        i += 1
                        async with session.post(base + "/v1/events?wait_ms=1000", data=body,
                                                headers={**auth, **headers}) as r:
                            if r.status == 200:
                                break
                            last = f"{r.status} {(await r.text())[:300]}"
                        if time.monotonic() > deadline:
                            raise SystemExit(
                                f"no verdict through {base} within 90 s (last answer: {last})\n"
                                f"--- worker ---\n{workers[0].log()[-2000:]}\n--- gateways ---\n"
                                + "\n".join(g.log()[-2000:] for g in gateways))
                cpu0 = {name: cpu_seconds(pid) for name, pid in procs.items()}
                seen0, bytes0 = collector.verdicts_seen, collector.bytes_seen
                counters0 = [await gateway_counters(session, b) for b in bases]
                print(f"({n_gateways},{n_workers}) bulk: {len(raw):,} events, "
                      f"{sum(len(b) for b in bodies.values())} requests of ≤{args.batch}…",
                      file=sys.stderr)
                ingest_topic = f"bench-{suffix}-ingest"
                offsets0 = await topic_offsets(bootstrap, ingest_topic)
                bulk = await bulk_phase(bases, session, auth, bodies, counts, collector, len(raw))
                offsets1 = await topic_offsets(bootstrap, ingest_topic)
                bulk["actions"] = dict(Counter(
                    vs[0].action for e in raw if (vs := collector.by_event.get(e["event_id"]))))
                cpu1 = {name: cpu_seconds(pid) for name, pid in procs.items()}
                # read back after the bulk CPU is taken (this read costs Tansu and this process)
                bulk["ingest_topic"] = await ingest_bytes(bootstrap, ingest_topic, offsets0,
                                                          offsets1)
                if args.single_mature > 0:
                    # established single agents: their chains past shadow before the phases
                    # (decided in bulk, outside every CPU window)
                    single_secrets = {a: secrets[a] for a in singles}
                    m_bodies, m_counts = _mature_bodies(project_id, single_secrets,
                                                        args.single_mature, args.batch)
                    await bulk_phase(bases, session, auth, m_bodies, m_counts, collector,
                                     sum(sum(c) for c in m_counts.values()))
                single_from = {name: cpu_seconds(pid) for name, pid in procs.items()}
                single_runs = await single_phases(
                    bases, session, auth, project_id, {a: secrets[a] for a in singles},
                    args, collector, procs, redis_url, (bootstrap, ingest_topic),
                )
                single = single_runs[-1]
                cpu2 = {name: cpu_seconds(pid) for name, pid in procs.items()}
                counters1 = [await gateway_counters(session, b) for b in bases]
                verdicts_run = collector.verdicts_seen - seen0
                topic_bytes = collector.bytes_seen - bytes0
                idle = await idle_cpu(procs, args.idle_seconds)
    finally:
        for w in workers:
            w.stop()
        for gw in gateways:
            gw.stop()
    per_gateway = []
    for g, (c0, c1) in enumerate(zip(counters0, counters1)):
        read = c1["bytes_read"] - c0["bytes_read"]
        waited = c1["waited_verdicts"] - c0["waited_verdicts"]
        per_gateway.append({
            "gateway": g, "bytes_read": int(read), "waited_verdicts": int(waited),
            "bytes_per_verdict_of_run": round(read / max(verdicts_run, 1), 1),
            "bytes_per_waited_verdict": round(read / waited, 1) if waited else None,
        })
    kafka = engine = None
    if ceilings:
        print("ceilings…", file=sys.stderr)
        kafka = await kafka_ceiling(bootstrap, envelope_bodies, per_message, args.partitions)
        engine = await engine_ceiling(redis_url, envelope_bodies, args.redis_cluster)
    bulk_cpu = {k: round(cpu1[k] - cpu0[k], 2) for k in cpu0}
    return {
        "config": {"events": len(raw), "agents": args.agents, "batch": args.batch,
                   "gateways": n_gateways, "workers": n_workers,
                   "redis_cluster": bool(args.redis_cluster), "partitions": args.partitions,
                   "single_mature_runs": args.single_mature,
                   "cpus": os.cpu_count(), "envelope_bytes_mean": round(
                       sum(map(len, envelope_bodies)) / len(envelope_bodies))},
        "bulk": bulk,
        "bulk_cpu_seconds": bulk_cpu,
        "single": single,
        "single_cpu_seconds": {k: round(cpu2[k] - single_from[k], 2) for k in cpu0},
        "single_rates": single_runs,
        "idle_cpu_percent": idle,
        "bulk_cpu_us_per_event": cpu_per_event(bulk_cpu, idle, bulk["seconds"], bulk["events"]),
        "gateway_src": args.gateway_src or "this tree",
        "verdict_bytes": {"verdicts_in_run": verdicts_run, "verdicts_topic_bytes": topic_bytes,
                          "verdicts_topic_bytes_per_verdict": round(
                              topic_bytes / max(verdicts_run, 1), 1),
                          "per_gateway": per_gateway},
        "ceilings": {"kafka_produce_consume": kafka, "engine_decide": engine} if ceilings else None,
        "ratios": {
            "bulk_vs_kafka": round(bulk["events_per_second"] / kafka["events_per_second"], 3),
            "bulk_vs_engine": round(bulk["events_per_second"] / engine["events_per_second"], 3),
        } if kafka and engine else None,
        "targets": {"bulk_events_per_second": 20_000, "single_p99_ms": 25},
        "settings_note": f"key_prefix default {settings.key_prefix}",
        "policy": _policy_note(raw, bulk, args.policy),
    }


def _policy_note(raw: Sequence[dict[str, Any]], bulk: dict[str, Any], policy: str) -> str:
    """Which guardrail policy the bulk phase ran under, and how compressed its time was."""
    span = max(e["ts"] for e in raw) - min(e["ts"] for e in raw)
    which = ("velocity limits raised to their maximum (the rules run, compressed replay does not "
             "trip them)" if policy == "raised" else "default guardrail policy (velocity on)")
    return (f"{which}, wall-clock windows: {span:,.0f} s of "
            f"generated traffic sent in {bulk['seconds']:,.0f} s "
            f"({span / max(bulk['seconds'], 1e-9):,.0f}x real time, the rate velocity windows "
            f"see); "
            f"bulk verdicts by action: {bulk['actions']}")


# --- honest per-event costs: policy, idle CPU, single-event phases, before/after gateway --------

#: A policy whose velocity rules run but cannot trip on replay faster than real time (the limits
#: are the largest a policy accepts); every other guardrail keeps its default.
RAISED_VELOCITY = """
[guardrails.velocity.per_agent]
limit = 100000000
[guardrails.velocity.per_run]
limit = 100000000
"""


async def bench_policy(redis: Redis, keys: Keys, project_id: str, policy: str) -> None:
    """Store the bench project's policy: ``raised`` (see :data:`RAISED_VELOCITY`) or the
    default (nothing stored)."""
    if policy == "raised":
        await save_policy(redis, keys, project_id, RAISED_VELOCITY, actor="cli", now=time.time())


def gateway_child(env: dict[str, str], src: str | None, name: str = "gateway") -> ChildProcess:
    """The gateway child; from the source tree ``src`` (put first on its ``sys.path``) when set."""
    child = gateway_process(env, name=name)
    if src:
        child.argv = ("-c", f"import sys; sys.path.insert(0, {os.path.abspath(src)!r}); "
                            + child.argv[1])
    return child


async def idle_cpu(procs: dict[str, int], seconds: float) -> dict[str, float]:
    """CPU % of one core each process burns while no request arrives (polling, timers)."""
    before = {name: cpu_seconds(pid) for name, pid in procs.items()}
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    wall = time.perf_counter() - started
    return {name: round(100 * (cpu_seconds(pid) - before[name]) / wall, 2)
            for name, pid in procs.items()}


def cpu_per_event(cpu: dict[str, float], idle: dict[str, float], wall_s: float,
                  events: int) -> dict[str, float]:
    """µs of CPU per event per process, the process's idle CPU over ``wall_s`` taken off
    (never below 0)."""
    return {name: round(max(0.0, used - idle.get(name, 0.0) / 100 * wall_s) / events * 1e6, 1)
            for name, used in cpu.items()}


async def _redis_reads(redis_url: str) -> int:
    client = Redis.from_url(redis_url)
    try:
        return int((await client.info("stats"))["total_reads_processed"])
    finally:
        await client.aclose()


async def single_phases(
    bases: Sequence[str], session: aiohttp.ClientSession, auth: dict[str, str], project_id: str,
    agents: dict[str, str], args: argparse.Namespace, collector: VerdictCollector,
    procs: dict[str, int], redis_url: str, ingest: tuple[str, str],
) -> list[dict[str, Any]]:
    """One :func:`single_phase` per rate of ``--rates`` (or ``--rate``), each with the CPU of
    every process (µs per event, idle not yet taken off: see :func:`finish_single_cpu`) and
    the Redis requests the server read per event (every process: gateway and worker), and the
    messages the ingest topic held when the phase began (Tansu's memory store costs more per
    request the more messages a partition holds: ``benchmarks.single_floor``)."""
    rates = [args.rate] if args.rate else [float(r) for r in args.rates.split(",") if r.strip()]
    out = []
    for rate in rates:
        print(f"single: {rate:.0f}/s for {args.single_seconds:.0f}s…", file=sys.stderr)
        load = os.getloadavg()[0]
        held = sum((await topic_offsets(*ingest)).values())
        cpu0 = {name: cpu_seconds(pid) for name, pid in procs.items()}
        reads0 = await _redis_reads(redis_url)
        started = time.perf_counter()
        phase = await single_phase(bases, session, auth, project_id, agents, rate,
                                   args.single_seconds, collector)
        phase["wall_seconds"] = round(time.perf_counter() - started, 3)
        phase["load_average_at_start"] = load
        phase["ingest_messages_held_at_start"] = held
        phase["redis_requests_per_event"] = round(
            (await _redis_reads(redis_url) - reads0 - 1) / max(phase["sent"], 1), 2)
        phase["cpu_seconds"] = {name: round(cpu_seconds(pid) - cpu0[name], 3)
                                for name, pid in procs.items()}
        out.append(phase)
    return out


def finish_single_cpu(r: dict[str, Any]) -> None:
    """Per single-event phase: CPU µs per event per process with idle CPU taken off."""
    for phase in r.get("single_rates", []):
        phase["cpu_us_per_event"] = cpu_per_event(
            phase["cpu_seconds"], r["idle_cpu_percent"], phase["wall_seconds"], phase["sent"])


def cpu_lines(r: dict[str, Any]) -> list[str]:
    """Output lines of the per-event CPU figures (the load generator, ``bench``, left out of
    the sums: it is the client)."""
    finish_single_cpu(r)

    def per_process(costs: dict[str, float]) -> str:
        servers = {k: v for k, v in costs.items() if k != "bench"}
        ours = sum(v for k, v in servers.items() if k != "tansu")
        return (", ".join(f"{k} {v:,.1f}" for k, v in servers.items())
                + f"; Ratchet's processes {ours:,.1f}, with the broker {sum(servers.values()):,.1f}"
                f" (load generator {costs.get('bench', 0):,.1f})")

    lines = [f"gateway source: {r.get('gateway_src', 'this tree')}",
             "idle CPU % of a core: " + ", ".join(f"{k} {v:.1f}"
                                                  for k, v in r["idle_cpu_percent"].items()),
             "bulk CPU µs/event (idle taken off): " + per_process(r["bulk_cpu_us_per_event"])]
    for phase in r.get("single_rates", []):
        rt = phase["round_trip_ms"]
        lines.append(
            f"single {phase['rate_per_second']:.0f}/s (load {phase['load_average_at_start']:.1f}): p50 {rt['p50']:.1f} ms, p99 {rt['p99']:.1f} "
            f"ms, statuses {phase['statuses']}; Redis requests/event "
            f"{phase['redis_requests_per_event']:.2f}; ingest messages held "
            f"{phase.get('ingest_messages_held_at_start', 0):,}; CPU µs/event (idle taken off): "
            + per_process(phase["cpu_us_per_event"]))
    return lines


def render(r: dict[str, Any]) -> str:
    b, s, c = r["bulk"], r["single"], r["ceilings"]
    cfg = r["config"]
    tag = (f"[{cfg['gateways']} gateway(s), {cfg['workers']} worker(s), "
           f"{'Redis Cluster' if cfg['redis_cluster'] else 'single Redis'}]")
    vb = r["verdict_bytes"]
    lines = [
        (f"{tag} bulk end to end: {b['events_per_second']:,.0f} events/s ({b['events']:,} events, "
         f"batches of {cfg['batch']}; gateways accepted at "
         f"{b['ingest_events_per_second']:,.0f} events/s)   target ≥ 20,000"),
        (f"{tag} single events at {s['rate_per_second']:.0f}/s (wait path): round trip p50 "
         f"{s['round_trip_ms']['p50']:.1f} ms, p99 {s['round_trip_ms']['p99']:.1f} ms; "
         f"gateway-received→worker-decided p50 {s['received_to_decided_ms']['p50']:.1f} ms, "
         f"p99 {s['received_to_decided_ms']['p99']:.1f} ms   target p99 ≤ 25 ms"),
    ]
    if c is not None:
        lines += [
            (f"ceiling kafka produce+consume (same messages): "
             f"{c['kafka_produce_consume']['events_per_second']:,.0f} events/s "
             f"({c['kafka_produce_consume']['messages_per_second']:,.0f} msg/s)"),
            (f"ceiling engine.decide per envelope (same Redis): "
             f"{c['engine_decide']['events_per_second']:,.0f} events/s"),
            (f"ratios: bulk/kafka {r['ratios']['bulk_vs_kafka']:.2f}, "
             f"bulk/engine {r['ratios']['bulk_vs_engine']:.2f}"),
        ]
    lines += [
        f"{tag} policy: {r['policy']}",
        *(f"{tag} {line}" for line in cpu_lines(r)),
        (f"{tag} ingest topic during bulk: {b['ingest_topic']['messages']:,} messages, "
         f"{b['ingest_topic']['bytes']:,} B for {b['ingest_topic']['events']:,} events "
         f"({b['ingest_topic']['bytes_per_event']:.0f} B/event)"),
        (f"{tag} bulk CPU µs/event before idle is taken off: " + ", ".join(
            f"{k} {v / b['events'] * 1e6:,.1f}" for k, v in r["bulk_cpu_seconds"].items())),
        f"{tag} CPU seconds during bulk: "
        + ", ".join(f"{k} {v:.1f}" for k, v in r["bulk_cpu_seconds"].items()),
        f"{tag} CPU seconds during single: "
        + ", ".join(f"{k} {v:.1f}" for k, v in r["single_cpu_seconds"].items()),
        (f"{tag} verdicts topic: {vb['verdicts_in_run']:,} verdicts, "
         f"{vb['verdicts_topic_bytes']:,} B ({vb['verdicts_topic_bytes_per_verdict']:.0f} B/verdict)"),
    ]
    for g in vb["per_gateway"]:
        per_waited = ("-" if g["bytes_per_waited_verdict"] is None
                      else f"{g['bytes_per_waited_verdict']:,.0f}")
        lines.append(
            f"{tag} gateway{g['gateway']} read {g['bytes_read']:,} B of verdicts: "
            f"{g['bytes_per_verdict_of_run']:.1f} B per verdict of the run, {per_waited} B per "
            f"verdict its {g['waited_verdicts']:,} waiting callers got")
    return "\n".join(lines)


def _server_cpu(r: dict[str, Any]) -> float:
    """CPU µs per bulk event summed over the servers (the load generator left out)."""
    return float(sum(v for k, v in r["bulk_cpu_us_per_event"].items() if k != "bench"))


def render_ratios(results: Sequence[dict[str, Any]]) -> str:
    """Each configuration against the first one of the same run."""
    first = results[0]
    base_eps = first["bulk"]["events_per_second"]
    base_cpu = _server_cpu(first)
    lines = []
    for r in results[1:]:
        cfg = r["config"]
        lines.append(
            f"ratio ({cfg['gateways']},{cfg['workers']}) / ({first['config']['gateways']},"
            f"{first['config']['workers']}): bulk events/s "
            f"{r['bulk']['events_per_second'] / base_eps:.2f}, CPU µs per bulk event "
            f"{_server_cpu(r) / base_cpu:.2f}")
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--agents", type=int, default=24)
    p.add_argument("--batch", type=int, default=1000, help="events per bulk request")
    p.add_argument("--gateways", default="1",
                   help="gateways per configuration, comma-separated (zipped with --workers)")
    p.add_argument("--workers", default="1",
                   help="workers per configuration, comma-separated (zipped with --gateways)")
    p.add_argument("--redis-cluster", action="store_true",
                   help="start a 3-master Redis Cluster instead of one redis-server")
    p.add_argument("--no-ceilings", action="store_true", help="skip the Kafka/engine ceilings")
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--rate", type=float, default=None,
                   help="single events per second (one phase; overrides --rates)")
    p.add_argument("--rates", default="100,200,500",
                   help="single-event phases, events per second, comma-separated")
    p.add_argument("--idle-seconds", type=float, default=3.0,
                   help="idle window after the phases: CPU every process burns doing nothing")
    p.add_argument("--policy", choices=("raised", "default"), default="raised",
                   help="raised: velocity limits at their maximum (replay runs faster than real "
                        "time); default: the project default policy")
    p.add_argument("--gateway-src", metavar="DIR", default=None,
                   help="run the gateway from this source tree (e.g. a worktree of main) for "
                        "before/after comparisons in one run")
    p.add_argument("--single-seconds", type=float, default=10.0)
    p.add_argument("--single-mature", type=int, default=40, metavar="SESSIONS",
                   help="runs of six events each single agent sends in bulk before the "
                        "single phases, so its chain is past shadow as an established "
                        "agent's is (0: young chains)")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    gws, wks = _ints(args.gateways), _ints(args.workers)
    if len(gws) == 1 and len(wks) > 1:
        gws = gws * len(wks)
    if len(wks) == 1 and len(gws) > 1:
        wks = wks * len(gws)
    if len(gws) != len(wks) or not gws or min(gws + wks) < 1:
        p.error("--gateways and --workers need the same number of positive values")
    settings = get_settings()
    with contextlib.ExitStack() as stack:
        redis_url = settings.redis_url
        bootstrap = settings.kafka_bootstrap
        procs: dict[str, int] = {"bench": os.getpid()}
        if not redis_url:
            if args.redis_cluster:
                cluster = stack.enter_context(RedisClusterServer())
                redis_url = cluster.url
                for i, node in enumerate(cluster.nodes):
                    procs[f"redis{i}"] = node.proc.pid if node.proc else 0
            else:
                server = stack.enter_context(RedisServer())
                redis_url = server.url
                procs["redis"] = server.proc.pid if server.proc else 0
        if not bootstrap:
            broker = stack.enter_context(TansuServer())
            bootstrap = broker.bootstrap
            procs["tansu"] = broker.proc.pid if broker.proc else 0
        results = []
        for i, (g, w) in enumerate(zip(gws, wks)):
            result = asyncio.run(run(args, redis_url, bootstrap, procs, g, w,
                                     ceilings=i == 0 and not args.no_ceilings))
            print(render(result), flush=True)
            results.append(result)
    if len(results) > 1:
        print(render_ratios(results))
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(results if len(results) > 1 else results[0],
                                 option=orjson.OPT_INDENT_2) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
