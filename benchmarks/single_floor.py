"""The floor of the single-event path: the pipeline's topology with no product logic in it.

    python -m benchmarks.single_floor [--rates 100,200,500] [--seconds 10] [--idle-seconds 6]
                                      [--json FILE]

What a single event with a waiting caller costs the processes it crosses when every step does
the least it can — the same parts, the same round trips, the same settings and the same Redis client (``ratchet.store.redis.connect``:
hiredis packing, lean pipelines) as the product:

* a **floor gateway** (aiohttp on uvloop, garbage collector tuned as the gateway's): reads the
  body, parses it (orjson), makes ONE Redis call (a one-line Lua script: the admission round
  trip's place), registers a waiter, sends the body to the ingest topic with an aiokafka
  producer configured as the gateway's (``acks="all"``, ``RATCHET_KAFKA_LINGER_MS``) and answers
  with the reply it receives on its Redis pub/sub channel;
* a **floor worker** (Faust, built by :func:`streams.app.create_app` — the product's app, its
  fetch wait, linger, acks and commit interval; uvloop, garbage collector tuned): per envelope
  ONE Redis call (the decide round trip's place), the verdict sent to the verdicts topic, ONE
  pipeline that stores the verdict and publishes the reply (the save round trip's place), the
  message acknowledged once Kafka has the verdict; an idle ``feedback`` agent, as the product's;
* redis-server and Tansu, started here.

A load generator opens ``POST`` requests at fixed rates (open loop, eight agents, like
``benchmarks.pipeline``'s single phase) and reports per rate the round trip p50/p99, the
messages the ingest topic held when the phase began, and each process's CPU µs per event with
its idle CPU (measured after the phases, no traffic) taken off. Tansu's memory store costs more
per request the more messages a partition holds (repeat a rate, ``--rates 200,200,200``, to
see it grow), so totals are given with and without the broker; Apache Kafka finds a fetch
offset through an index and does not grow this way.
The product's figures come from ``python -m benchmarks.pipeline`` (its single phases) run
beside this one: what the product adds is the difference. The floor worker takes one message at
a time, so it is a floor only while single events arrive one by one (200/s on this machine): at
rates where the product's worker decides the envelopes that arrived together in one batch
(500/s) the product costs less per event than this floor, which then falls behind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from benchmarks.pipeline import cpu_per_event, cpu_seconds, idle_cpu, open_loop, topic_offsets
from ratchet.sandbox.demo_report import percentile

#: The one-line scripts standing in for the admission and decide round trips.
_TOUCH = "return redis.call('INCR', KEYS[1])"
_AGENTS = 8


def _die_with_parent() -> None:
    """Ask Linux to end this child when the benchmark process that started it dies (a killed
    benchmark cannot run its ``finally``; its children live in sessions of their own)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"{name} is not set (this mode runs as a child of the benchmark)")
    return value


# --- the floor gateway ---------------------------------------------------------------------


def run_gateway() -> None:
    """Serve ``POST /e`` on FLOOR_PORT until stopped."""
    import uvloop
    from aiohttp import web
    from aiokafka import AIOKafkaProducer

    from ratchet.config.settings import get_settings
    from ratchet.store.redis import connect
    from streams.tuning import tune_gc

    settings = get_settings()
    redis_url, bootstrap = _env("FLOOR_REDIS_URL"), _env("FLOOR_BOOTSTRAP")
    topic, channel = _env("FLOOR_INGEST"), _env("FLOOR_CHANNEL")
    waiters: dict[bytes, asyncio.Future[bytes]] = {}

    async def listen(app: web.Application) -> None:
        pubsub = app["redis"].pubsub()
        await pubsub.subscribe(channel)
        app["pubsub"] = pubsub

        async def loop() -> None:
            while True:  # as gateway.replies reads it: one get with a timeout at a time
                msg = await pubsub.get_message(timeout=1.0, ignore_subscribe_messages=True)
                if msg is not None and msg.get("type") == "message":
                    data: bytes = msg["data"]
                    fut = waiters.pop(data[:32], None)
                    if fut is not None and not fut.done():
                        fut.set_result(data[32:])

        app["listener"] = asyncio.create_task(loop())

    async def startup(app: web.Application) -> None:
        app["redis"] = connect(redis_url)
        app["touch"] = app["redis"].register_script(_TOUCH)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                    linger_ms=settings.kafka_linger_ms)
        await producer.start()
        app["producer"] = producer
        await listen(app)

    async def cleanup(app: web.Application) -> None:
        app["listener"].cancel()
        await app["producer"].stop()
        await app["pubsub"].aclose()
        await app["redis"].aclose()

    async def post(request: web.Request) -> web.Response:
        body = await request.read()
        event = orjson.loads(body)
        agent: str = event["agent_id"]
        await request.app["touch"](keys=[f"floor:a:{agent}"])
        eid: bytes = event["event_id"].encode()
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        waiters[eid] = fut
        try:
            await request.app["producer"].send_and_wait(topic, body, key=agent.encode())
            reply = await asyncio.wait_for(fut, 2.0)
        finally:
            waiters.pop(eid, None)
        return web.Response(body=reply, content_type="application/json")

    app = web.Application()
    app.router.add_post("/e", post)
    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    tune_gc(settings.gateway_gc_gen0)
    web.run_app(app, host="127.0.0.1", port=int(_env("FLOOR_PORT")),
                loop=uvloop.new_event_loop(), print=None, access_log=None)


# --- the floor worker ----------------------------------------------------------------------


def run_worker() -> None:
    """A Faust worker of the product's app with one minimal ingest agent."""
    import faust
    from faust.types import StreamT

    from ratchet.config.settings import get_settings
    from ratchet.store.redis import connect
    from streams.app import create_app
    from streams.tuning import tune_gc, use_uvloop

    settings = get_settings()
    redis_url, channel = _env("FLOOR_REDIS_URL"), _env("FLOOR_CHANNEL")
    use_uvloop(settings.worker_uvloop)
    app, topics = create_app(settings)

    @app.agent(topics.ingest, name="ingest")
    async def ingest(stream: StreamT[bytes]) -> None:
        redis = connect(redis_url)
        touch = redis.register_script(_TOUCH)
        tune_gc(settings.worker_gc_gen0)
        manual = stream.noack()  # type: ignore[attr-defined]
        async for event in manual.events():
            ev = orjson.loads(event.value)
            eid: str = ev["event_id"]
            await touch(keys=[f"floor:c:{ev['agent_id']}"])
            verdict = orjson.dumps({"event_id": eid, "action": "allow", "score": 0.0})
            # the product's order: save and publish the reply, then the durable record
            pipe = redis.pipeline(transaction=False)
            pipe.set(f"floor:v:{eid}", verdict, ex=3600)
            pipe.publish(channel, eid.encode() + verdict)
            await pipe.execute()
            delivered = await topics.verdicts.send(key=event.key, value=verdict, force=True)
            await delivered
            await manual.ack(event)

    @app.agent(topics.feedback, name="feedback")
    async def feedback(stream: StreamT[bytes]) -> None:
        # the product's worker reads the feedback topic too: its fetches cover both topics
        async for _ in stream.noack().events():  # type: ignore[attr-defined]
            pass

    worker = faust.Worker(app, loglevel="warning", quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()


# --- the load generator ----------------------------------------------------------------------


async def _phase(base: str, rate: float, seconds: float) -> dict[str, Any]:
    import aiohttp

    n = int(rate * seconds)
    posts: list[tuple[str, bytes, dict[str, str]]] = []
    for i in range(n):
        body = orjson.dumps({"event_id": uuid.uuid4().hex, "agent_id": f"single-{i % _AGENTS}",
                             "run_id": f"run-{i // 6}", "service": "crm",
                             "action": "record.read", "payload": {"id": i}})
        posts.append((base + "/e", body, {}))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
        lat, statuses = await open_loop(session, posts, rate)
    return {"rate_per_second": rate, "sent": n, "statuses": statuses,
            "round_trip_ms": {"p50": round(percentile(lat, 50), 2),
                              "p99": round(percentile(lat, 99), 2)}}


class _VerdictReader:
    """A consumer of the verdicts topic as ``benchmarks.pipeline``'s collector configures it."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.seen = 0
        self.task = asyncio.create_task(self._drain())

    @classmethod
    async def start(cls, bootstrap: str, topic: str) -> _VerdictReader:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                    auto_offset_reset="latest", fetch_max_wait_ms=50,
                                    max_partition_fetch_bytes=8 * 1024 * 1024)
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        return cls(consumer)

    async def _drain(self) -> None:
        async for _ in self.consumer:
            self.seen += 1

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()


async def _ready(base: str, timeout_s: float, children: Sequence[Any]) -> None:
    """Send a first event until it is answered (the worker joined its group); a child that
    exits first stops the wait with its log's tail."""
    import aiohttp

    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            for child in children:
                if not child.running:
                    raise SystemExit(f"the floor {child.name} exited while starting:\n"
                                     f"{child.log()[-2000:]}")
            body = orjson.dumps({"event_id": uuid.uuid4().hex, "agent_id": "single-0",
                                 "run_id": "warm", "service": "crm", "action": "record.read",
                                 "payload": {}})
            try:
                async with session.post(base + "/e", data=body) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    tails = "\n".join(f"--- {c.name} ---\n{c.log()[-1500:]}" for c in children)
    raise SystemExit(f"the floor stack answered nothing within {timeout_s:.0f} s\n{tails}")


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from ratchet.kafka.topics import ensure_topics
    from ratchet.sandbox.process import FAST_GROUP_ENV, ChildProcess, worker_env
    from ratchet.sandbox.servers import RedisServer, TansuServer, free_port

    suffix = uuid.uuid4().hex[:8]
    with RedisServer() as redis, TansuServer() as tansu:
        ingest, verdicts = f"floor-{suffix}-ingest", f"floor-{suffix}-verdicts"
        partitions = 8
        await ensure_topics(tansu.bootstrap, [ingest, verdicts, f"floor-{suffix}-feedback"],
                            partitions)
        port = free_port()
        env = worker_env(
            None, kafka_bootstrap=tansu.bootstrap, redis_url=redis.url,
            topic_ingest=ingest, topic_verdicts=verdicts, topic_feedback=f"floor-{suffix}-feedback",
            topic_partitions=partitions, worker_id=f"floor-{suffix}", log_level="WARNING")
        env.update(FAST_GROUP_ENV)
        env.update(FLOOR_REDIS_URL=redis.url, FLOOR_BOOTSTRAP=tansu.bootstrap,
                   FLOOR_INGEST=ingest, FLOOR_CHANNEL=f"floor-{suffix}", FLOOR_PORT=str(port))
        me = ("-m", "benchmarks.single_floor")
        gateway = ChildProcess(env, name="floor-gateway", argv=(*me, "--serve", "gateway"))
        worker = ChildProcess(env, name="floor-worker", argv=(*me, "--serve", "worker"))
        base = f"http://127.0.0.1:{port}"
        reader = None
        try:
            gateway.start()
            worker.start()
            procs = {"redis": redis.proc.pid if redis.proc else 0,
                     "tansu": tansu.proc.pid if tansu.proc else 0,
                     "gateway": gateway.proc.pid if gateway.proc else 0,
                     "worker": worker.proc.pid if worker.proc else 0}
            await _ready(base, 90, (gateway, worker))
            if args.verdict_reader:
                reader = await _VerdictReader.start(tansu.bootstrap, verdicts)
            await _phase(base, 50, 2)  # warm: connections, the scripts' first calls
            phases = []
            for rate in [float(r) for r in args.rates.split(",") if r.strip()]:
                print(f"floor: {rate:.0f}/s for {args.seconds:.0f} s…", file=sys.stderr)
                held = sum((await topic_offsets(tansu.bootstrap, ingest)).values())
                cpu0 = {k: cpu_seconds(p) for k, p in procs.items()}
                t0 = time.perf_counter()
                phase = await _phase(base, rate, args.seconds)
                await asyncio.sleep(0.5)
                phase["wall_seconds"] = round(time.perf_counter() - t0, 3)
                phase["ingest_messages_held_at_start"] = held
                phase["cpu_seconds"] = {k: round(cpu_seconds(p) - cpu0[k], 3)
                                        for k, p in procs.items()}
                phases.append(phase)
            print(f"floor: idle CPU for {args.idle_seconds:.0f} s…", file=sys.stderr)
            idle = await idle_cpu(procs, args.idle_seconds)
        finally:
            if reader is not None:
                await reader.stop()
            gateway.stop()
            worker.stop()
    for phase in phases:
        phase["cpu_us_per_event"] = cpu_per_event(phase["cpu_seconds"], idle,
                                                  phase["wall_seconds"], phase["sent"])
        phase["cpu_us_per_event_total"] = round(sum(phase["cpu_us_per_event"].values()), 1)
        phase["cpu_us_per_event_without_broker"] = round(
            sum(v for k, v in phase["cpu_us_per_event"].items() if k != "tansu"), 1)
    return {"benchmark": "single_floor", "verdict_reader": bool(args.verdict_reader),
            "idle_cpu_percent": idle, "phases": phases,
            "load_average": os.getloadavg()[0]}


def render(r: dict[str, Any]) -> str:
    lines = ["idle CPU % of a core: " + ", ".join(f"{k} {v:.1f}"
                                                  for k, v in r["idle_cpu_percent"].items())]
    for p in r["phases"]:
        rt = p["round_trip_ms"]
        lines.append(
            f"floor {p['rate_per_second']:.0f}/s: p50 {rt['p50']:.1f} ms, p99 {rt['p99']:.1f} ms, "
            f"statuses {p['statuses']}; ingest messages held {p['ingest_messages_held_at_start']:,}; "
            "CPU µs/event (idle taken off): "
            + ", ".join(f"{k} {v:,.1f}" for k, v in p["cpu_us_per_event"].items())
            + f"; without the broker {p['cpu_us_per_event_without_broker']:,.1f}, "
            f"with it {p['cpu_us_per_event_total']:,.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.single_floor",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--rates", default="100,200,500",
                   help="single events per second, one phase each, comma-separated")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    p.add_argument("--idle-seconds", type=float, default=6.0,
                   help="how long idle CPU is measured after the phases")
    p.add_argument("--verdict-reader", action="store_true",
                   help="read the verdicts topic as benchmarks.pipeline's collector does "
                        "(a consumer in this process, 50 ms fetch wait): its broker cost shows")
    p.add_argument("--serve", choices=("gateway", "worker"), help=argparse.SUPPRESS)
    p.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    args = p.parse_args(argv)
    if args.serve is not None:
        _die_with_parent()
        (run_gateway if args.serve == "gateway" else run_worker)()
        return 0
    # a SIGTERM (timeout, CI) ends the run through its finally blocks: servers and children stop
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    r = asyncio.run(measure(args))
    print(render(r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
