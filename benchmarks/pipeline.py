"""The whole pipeline under load, with the same-run raw ceilings it is built from.

    python -m benchmarks.pipeline [--events 200000] [--gateways 1,2] [--workers 1,2]
                                  [--redis-cluster] [--rate 500] [--single-seconds 10]
                                  [--no-ceilings] [--json FILE]

Starts redis-server (a 3-master Redis Cluster with ``--redis-cluster``) and Tansu (unless
RATCHET_REDIS_URL / RATCHET_KAFKA_BOOTSTRAP are set), then for each configuration — the
``--gateways`` and ``--workers`` lists zipped, e.g. ``--gateways 1,2 --workers 1,2`` runs (1,1)
then (2,2) on the same servers, each on fresh topics and keys — that many gateways and workers
as child processes (load spread round robin over the gateways), and measures:

* **bulk**: synthetic agents' events (ratchet.sandbox.traffic) pre-signed into ``POST /v1/events:batch``
  bodies (one agent per request, one request in flight per agent), from the first request to
  the last verdict on the ``verdicts`` topic: sustained events/s end to end
  (HTTP → Kafka → worker → Redis → verdicts topic);
* **single**: ``POST /v1/events?wait_ms=2000`` opened at a fixed rate (default 500/s, open loop):
  p50/p99 of the HTTP round trip (the verdict is in the answer), and the ingest-to-verdict time
  the verdict envelopes carry;
* **verdict bytes per gateway**: ``ratchet_gateway_verdict_bytes_read_total`` and
  ``ratchet_gateway_waited_verdicts_total`` scraped from every gateway after the run: the bytes
  each gateway read to answer its waiting callers, per verdict of the run and per verdict its
  callers waited for (a gateway that reads every verdict reads the whole topic);
* **ceilings** (first configuration only; ``--no-ceilings`` skips them), same run, same machine: aiokafka producing and consuming messages of the bulk
  envelopes' size and count (events/s if Kafka were all there is), and ``Engine.decide`` on the
  same events in batches on the same Redis (events/s if the engine were all there is).

The bulk phase runs under the project's default guardrail policy, whose velocity windows use
the wall clock: hours of generated traffic arrive in about a minute, so velocity rules can
pause part of it (the output's ``policy`` line gives the compression and the verdicts by action).
CPU seconds of every process (from /proc) show where the time goes. Machines here are shared
and noisy: ratios within one run say more than absolute numbers.
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
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

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


def _single_body(project_id: str, agent: str, secret: str, i: int) -> tuple[bytes, dict[str, str]]:
    event_id, payload = str(uuid.uuid4()), {"ok": True, "n": i}
    ev = {"event_id": event_id, "agent_id": agent, "run_id": f"{agent}-s{i // 6}",
          "service": "status", "action": "check", "payload": payload, "end_of_run": i % 6 == 5}
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


async def single_phase(
    bases: Sequence[str], session: aiohttp.ClientSession, auth: dict[str, str], project_id: str,
    agents: dict[str, str], rate: float, seconds: float, collector: VerdictCollector,
) -> dict[str, Any]:
    n = int(rate * seconds)
    names = sorted(agents)
    prepared = [_single_body(project_id, names[i % len(names)], agents[names[i % len(names)]], i)
                for i in range(n)]
    lat: list[float] = []
    statuses: dict[str, int] = {}
    mark = len(collector.envelopes)

    async def one(i: int, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        body, headers = prepared[i]
        t0 = time.perf_counter()
        async with session.post(bases[i % len(bases)] + "/v1/events?wait_ms=2000", data=body,
                                headers={**auth, **headers}) as r:
            await r.read()
            statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
            if r.status == 200:
                lat.append((time.perf_counter() - t0) * 1000)

    t_start = time.perf_counter() + 0.1
    await asyncio.gather(*(one(i, t_start + i / rate) for i in range(n)))
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
    gateways = [gateway_process(dict(env, RATCHET_GATEWAY_PORT=str(port)), name=f"gateway{g}")
                .start() for g, port in enumerate(ports)]
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
                bulk = await bulk_phase(bases, session, auth, bodies, counts, collector, len(raw))
                bulk["actions"] = dict(Counter(
                    vs[0].action for e in raw if (vs := collector.by_event.get(e["event_id"]))))
                cpu1 = {name: cpu_seconds(pid) for name, pid in procs.items()}
                print(f"single: {args.rate:.0f}/s for {args.single_seconds:.0f}s…",
                      file=sys.stderr)
                single = await single_phase(
                    bases, session, auth, project_id, {a: secrets[a] for a in singles},
                    args.rate, args.single_seconds, collector,
                )
                cpu2 = {name: cpu_seconds(pid) for name, pid in procs.items()}
                counters1 = [await gateway_counters(session, b) for b in bases]
                verdicts_run = collector.verdicts_seen - seen0
                topic_bytes = collector.bytes_seen - bytes0
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
                   "cpus": os.cpu_count(), "envelope_bytes_mean": round(
                       sum(map(len, envelope_bodies)) / len(envelope_bodies))},
        "bulk": bulk,
        "bulk_cpu_seconds": bulk_cpu,
        "bulk_cpu_us_per_event": {k: round(v * 1e6 / len(raw), 1) for k, v in bulk_cpu.items()},
        "single": single,
        "single_cpu_seconds": {k: round(cpu2[k] - cpu1[k], 2) for k in cpu0},
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
        "policy": _policy_note(raw, bulk),
    }


def _policy_note(raw: Sequence[dict[str, Any]], bulk: dict[str, Any]) -> str:
    """Which guardrail policy the bulk phase ran under, and how compressed its time was."""
    span = max(e["ts"] for e in raw) - min(e["ts"] for e in raw)
    return (f"default guardrail policy (velocity on, wall-clock windows): {span:,.0f} s of "
            f"generated traffic sent in {bulk['seconds']:,.0f} s "
            f"({span / max(bulk['seconds'], 1e-9):,.0f}x real time, the rate velocity windows "
            f"see); "
            f"bulk verdicts by action: {bulk['actions']}")


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
         f"p99 {s['received_to_decided_ms']['p99']:.1f} ms; statuses {s['statuses']}"),
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
        f"{tag} CPU µs per bulk event: "
        + ", ".join(f"{k} {v:.0f}" for k, v in r["bulk_cpu_us_per_event"].items())
        + f" (sum {sum(r['bulk_cpu_us_per_event'].values()):.0f})",
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


def render_ratios(results: Sequence[dict[str, Any]]) -> str:
    """Each configuration against the first one of the same run."""
    first = results[0]
    base_eps = first["bulk"]["events_per_second"]
    base_cpu = sum(first["bulk_cpu_us_per_event"].values())
    lines = []
    for r in results[1:]:
        cfg = r["config"]
        cpu = sum(r["bulk_cpu_us_per_event"].values())
        lines.append(
            f"ratio ({cfg['gateways']},{cfg['workers']}) / ({first['config']['gateways']},"
            f"{first['config']['workers']}): bulk events/s {r['bulk']['events_per_second'] / base_eps:.2f}, "
            f"CPU µs per bulk event {cpu / base_cpu:.2f}")
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
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--rate", type=float, default=500.0, help="single events per second")
    p.add_argument("--single-seconds", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--no-ceilings", action="store_true", help="skip the Kafka/engine ceilings")
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
