"""What a consumer's fetch wait costs on the broker: idle CPU against single-message latency.

    python -m benchmarks.fetch_wait [--waits 500,50,10,5,2] [--idle-seconds 5] [--json FILE]

For each ``fetch_max_wait_ms``: one group-less consumer reads an idle topic for
``--idle-seconds`` (CPU share of the broker and of this process while nothing arrives), then one
message is produced every 37 ms and the produce → consume time is taken (p50 and max of 20).
Starts its own Tansu unless RATCHET_KAFKA_BOOTSTRAP is set (then only this process's CPU is
reported). This is how the workers' and the gateway's fetch waits were chosen (docs/operations.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from benchmarks.pipeline import cpu_seconds
from ratchet.kafka.topics import ensure_topics
from ratchet.sandbox.servers import TansuServer


async def measure(bootstrap: str, broker_pid: int, wait_ms: int, idle_s: float) -> dict[str, Any]:
    topic = f"bench-wait-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [topic], 8)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                fetch_max_wait_ms=wait_ms, auto_offset_reset="latest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await consumer.start()
    await producer.start()
    try:
        async def drain() -> None:
            while True:
                await consumer.getmany(timeout_ms=1000)

        idle = asyncio.ensure_future(drain())
        await asyncio.sleep(1.0)
        b0, s0 = cpu_seconds(broker_pid), time.process_time()
        await asyncio.sleep(idle_s)
        b1, s1 = cpu_seconds(broker_pid), time.process_time()
        idle.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await idle
        latencies: list[float] = []
        for _ in range(20):
            await asyncio.sleep(0.037)
            sent = time.perf_counter()
            await producer.send_and_wait(topic, b"x", key=b"k")
            while not await consumer.getmany(timeout_ms=2000):
                pass
            latencies.append((time.perf_counter() - sent) * 1000)
    finally:
        await producer.stop()
        await consumer.stop()
    latencies.sort()
    return {
        "fetch_wait_ms": wait_ms,
        "broker_idle_cpu_percent": round(100 * (b1 - b0) / idle_s, 2) if broker_pid else None,
        "consumer_idle_cpu_percent": round(100 * (s1 - s0) / idle_s, 2),
        "produce_to_consume_ms": {"p50": round(latencies[len(latencies) // 2], 2),
                                  "max": round(latencies[-1], 2)},
    }


async def run(bootstrap: str, broker_pid: int, waits: list[int], idle_s: float) -> list[dict[str, Any]]:
    out = []
    for wait in waits:
        row = await measure(bootstrap, broker_pid, wait, idle_s)
        print(f"fetch wait {wait:>4} ms: broker idle CPU {row['broker_idle_cpu_percent']}%, "
              f"consumer idle CPU {row['consumer_idle_cpu_percent']}%, produce→consume "
              f"p50 {row['produce_to_consume_ms']['p50']} ms (max "
              f"{row['produce_to_consume_ms']['max']})")
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--waits", default="500,50,10,5,2", help="fetch waits to try, ms, comma-separated")
    p.add_argument("--idle-seconds", type=float, default=5.0)
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    waits = [int(w) for w in args.waits.split(",") if w.strip()]
    load = os.getloadavg()[0]
    external = os.environ.get("RATCHET_KAFKA_BOOTSTRAP")
    if external:
        rows = asyncio.run(run(external, 0, waits, args.idle_seconds))
    else:
        with TansuServer() as tansu:
            assert tansu.proc is not None
            rows = asyncio.run(run(tansu.bootstrap, tansu.proc.pid, waits, args.idle_seconds))
    result = {"load_average_at_start": load, "cpus": os.cpu_count(), "results": rows}
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
