"""Reply routes compared: Redis pub/sub channel against a Kafka partition owned by one gateway.

    python -m benchmarks.replies [--rate 500] [--seconds 4] [--idle-seconds 4] [--json FILE]

How the verdict of a waiting caller can reach the one gateway it is on (docs/operations.md):

* ``redis``: the worker ``PUBLISH``es the compact reply to the gateway's channel, the gateway's
  subscription receives it (what Ratchet does, :mod:`ratchet.store.replies`);
* ``kafka``: the worker produces it to the gateway's partition of a replies topic (``acks=1``,
  linger 1 ms, the workers' producer settings), the gateway's consumer reads only that partition
  (fetch wait 50 ms, the old verdict listener's).

For each: replies of a real compact verdict body sent at ``--rate`` for ``--seconds`` (open
loop), CPU µs per reply of the server (redis-server or Tansu, from /proc) and of this process
(producer and consumer together), publish → receive latency p50/p99, and the CPU share of both
while idle (nothing sent; the Kafka consumer keeps polling). Starts its own redis-server and
Tansu. Noisy shared machines: compare the two rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, cast

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks.pipeline import cpu_seconds
from models.verdict import Edge, Verdict
from models.verdict_wire import encode_compact
from ratchet.kafka.topics import ensure_topics
from ratchet.sandbox.demo_report import percentile
from ratchet.sandbox.servers import RedisServer, TansuServer
from ratchet.store.redis import connect

BODY = encode_compact("p_1234abcd", "support-bot-7", uuid.uuid4().hex, time.time(), [Verdict(
    str(uuid.uuid4()), "support-bot-7", "run-000123", "p_1234abcd/support-bot-7/helpdesk",
    "locked", False, 0.4151, 11.2, Edge("3f9a1c2b7d4e5f60", "a1b2c3d4e5f60718", 0.75, 30.0, 40.0),
    "allow", (), time.time(), project_id="p_1234abcd", chain_tag="7d4e5f603f9a1c2b")])


async def _measure(
    server_pid: int, send: Callable[[bytes], Awaitable[Any]], received: list[float],
    rate: float, seconds: float, idle_s: float,
) -> dict[str, Any]:
    await asyncio.sleep(1.0)  # settle
    s0, p0 = cpu_seconds(server_pid), time.process_time()
    await asyncio.sleep(idle_s)
    s1, p1 = cpu_seconds(server_pid), time.process_time()
    n = int(rate * seconds)
    sent: list[float] = []
    start = time.perf_counter()
    for i in range(n):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        sent.append(time.perf_counter())
        await send(orjson.dumps(i) + b" " + BODY)
    deadline = time.perf_counter() + 5
    while len(received) < n and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    s2, p2 = cpu_seconds(server_pid), time.process_time()
    lat = [(r - s) * 1000 for s, r in zip(sent, received)]
    return {
        "replies": n, "received": len(received), "reply_bytes": len(BODY),
        "server_cpu_us_per_reply": round((s2 - s1) * 1e6 / n, 1),
        "client_cpu_us_per_reply": round((p2 - p1) * 1e6 / n, 1),
        "latency_ms": {"p50": round(percentile(lat, 50), 2), "p99": round(percentile(lat, 99), 2)},
        "idle_cpu_percent": {"server": round(100 * (s1 - s0) / idle_s, 2),
                             "client": round(100 * (p1 - p0) / idle_s, 2)},
    }


async def redis_route(url: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    sub, pub = connect(url), connect(url)
    ps = sub.pubsub()
    await ps.subscribe("bench:reply")
    while (await ps.get_message(timeout=0.2)) is None:
        pass
    received: list[float] = []

    async def listen() -> None:
        while True:
            m = await ps.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if m is not None:
                received.append(time.perf_counter())

    task = asyncio.create_task(listen())
    try:
        return await _measure(pid, lambda b: pub.publish("bench:reply", b), received,
                              args.rate, args.seconds, args.idle_seconds)
    finally:
        task.cancel()
        await cast(Any, ps).aclose()  # untyped before redis-py 8.2
        await sub.aclose()
        await pub.aclose()


async def kafka_route(bootstrap: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    topic = f"bench-replies-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [topic], 8)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=1)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, fetch_max_wait_ms=50)
    await producer.start()
    await consumer.start()
    tp = TopicPartition(topic, 3)
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    await consumer.position(tp)
    received: list[float] = []

    async def listen() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            now = time.perf_counter()
            received.extend(now for records in batches.values() for _ in records)

    async def send(body: bytes) -> None:
        await producer.send(topic, body, partition=3)  # queued; linger batches as the worker's

    task = asyncio.create_task(listen())
    try:
        return await _measure(pid, send, received, args.rate, args.seconds, args.idle_seconds)
    finally:
        task.cancel()
        await producer.stop()
        await consumer.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rate", type=float, default=500.0, help="replies per second")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--idle-seconds", type=float, default=4.0)
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    with RedisServer() as redis, TansuServer() as tansu:
        assert redis.proc is not None and tansu.proc is not None
        rows = {"redis_pubsub": asyncio.run(redis_route(redis.url, redis.proc.pid, args)),
                "kafka_partition": asyncio.run(kafka_route(tansu.bootstrap, tansu.proc.pid, args))}
    for name, r in rows.items():
        print(f"{name}: {r['received']}/{r['replies']} replies of {r['reply_bytes']} B at "
              f"{args.rate:.0f}/s: server {r['server_cpu_us_per_reply']} µs/reply, producer+consumer "
              f"{r['client_cpu_us_per_reply']} µs/reply, latency p50 {r['latency_ms']['p50']} ms "
              f"p99 {r['latency_ms']['p99']} ms; idle CPU server {r['idle_cpu_percent']['server']} %, "
              f"client {r['idle_cpu_percent']['client']} %")
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
