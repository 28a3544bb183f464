"""Consumer lag measured from the real broker (Tansu): the function, the worker, the dispatcher."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from ratchet.config.settings import Settings
from ratchet.kafka.lag import LagMonitor, group_lag
from ratchet.kafka.topics import ensure_topics
from ratchet.sandbox.process import FAST_GROUP_ENV, ChildProcess, worker_env
from ratchet.sandbox.servers import TansuServer, free_port
from ratchet.webhooks.dispatch import WebhookDispatcher

pytestmark = pytest.mark.kafka

LAG = "ratchet_consumer_lag_messages"


def _name(kind: str) -> str:
    return f"lag-{kind}-{uuid.uuid4().hex[:8]}"


async def _produce(bootstrap: str, topic: str, n: int, partitions: int) -> Counter[int]:
    """``n`` messages spread round-robin over the partitions; returns how many each got."""
    per: Counter[int] = Counter()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(n):
            await producer.send_and_wait(topic, b"not an envelope", partition=i % partitions)
            per[i % partitions] += 1
    finally:
        await producer.stop()
    return per


def _gauge(group: str, topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        LAG, {"group": group, "topic": topic, "partition": str(partition)})


async def test_lag_is_what_the_group_has_not_committed(kafka_bootstrap: str) -> None:
    topic, group = _name("t"), _name("g")
    await ensure_topics(kafka_bootstrap, [topic], 3)
    per = await _produce(kafka_bootstrap, topic, 31, 3)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    probe = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None)
    await admin.start()
    await probe.start()
    try:
        # produced 31, consumed none: everything is lag for an "earliest" group ...
        lag = await group_lag(admin, probe, group, [topic], reset="earliest")
        assert {tp.partition: v for tp, v in lag.items()} == dict(per)
        assert sum(lag.values()) == 31
        # ... and nothing for a "latest" group, which starts at the end when it joins
        assert set((await group_lag(admin, probe, group, [topic], reset="latest")).values()) == {0}

        # a member commits 4 on partition 0: lag there drops by exactly 4
        member = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group,
                                  enable_auto_commit=False, auto_offset_reset="earliest",
                                  session_timeout_ms=6000, heartbeat_interval_ms=1000)
        await member.start()
        try:
            deadline = time.monotonic() + 30
            while not member.assignment():
                assert time.monotonic() < deadline, "the member never got partitions"
                await member.getmany(timeout_ms=200)
            await member.commit({TopicPartition(topic, 0): OffsetAndMetadata(4, "")})
        finally:
            await member.stop()
        lag = await group_lag(admin, probe, group, [topic], reset="latest")
        assert lag[TopicPartition(topic, 0)] == per[0] - 4
        assert lag[TopicPartition(topic, 1)] == 0  # never committed, "latest"
    finally:
        await probe.stop()
        await admin.close()

    monitor = LagMonitor(kafka_bootstrap, group, [topic], reset="earliest", interval_s=60)
    await monitor.start()
    try:
        await monitor.refresh()
    finally:
        await monitor.stop()
    assert _gauge(group, topic, 0) == per[0] - 4
    assert _gauge(group, topic, 1) == per[1]
    assert _gauge(group, topic, 2) == per[2]


async def _scrape_lag(url: str, group: str) -> dict[tuple[str, str], float]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        text = await resp.text()
    return {
        (s.labels["topic"], s.labels["partition"]): s.value
        for family in text_string_to_metric_families(text) if family.name == LAG
        for s in family.samples if s.labels.get("group") == group
    }


async def test_a_worker_exports_the_lag_of_what_it_cannot_decide(kafka_bootstrap: str) -> None:
    """Redis is down: the worker takes its partitions but decides (and commits) nothing, and its
    /metrics shows the whole backlog as ingest lag."""
    suffix = uuid.uuid4().hex[:8]
    ingest, feedback = f"ingest-{suffix}", f"feedback-{suffix}"
    await ensure_topics(kafka_bootstrap, [ingest, f"verdicts-{suffix}", feedback], 2)
    per = await _produce(kafka_bootstrap, ingest, 12, 2)
    port = free_port()
    env = worker_env(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_s=0.5,
        kafka_bootstrap=kafka_bootstrap, topic_ingest=ingest, topic_verdicts=f"verdicts-{suffix}",
        topic_feedback=feedback, topic_partitions=2, worker_id=f"lag-{suffix}",
        worker_web_port=port, consumer_lag_interval_s=0.5,
    )
    env.update(FAST_GROUP_ENV)
    worker = ChildProcess(env, name="worker").start()
    try:
        deadline = time.monotonic() + 60
        seen: dict[tuple[str, str], float] = {}
        while time.monotonic() < deadline:
            assert worker.running, worker.log()[-3000:]
            try:
                seen = await _scrape_lag(f"http://127.0.0.1:{port}/metrics", f"lag-{suffix}")
            except aiohttp.ClientError:
                seen = {}
            if len(seen) == 4:
                break
            await asyncio.sleep(0.5)
        assert seen == {(ingest, "0"): per[0], (ingest, "1"): per[1],
                        (feedback, "0"): 0, (feedback, "1"): 0}, worker.log()[-3000:]
    finally:
        worker.stop()


async def test_the_dispatcher_lag_drains_and_grows_while_it_is_down(
    kafka_bootstrap: str, redis_url: str, key_prefix: str
) -> None:
    topic = _name("verdicts")
    await ensure_topics(kafka_bootstrap, [topic], 2)
    s = Settings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, key_prefix=key_prefix,
                 topic_verdicts=topic, topic_partitions=2, consumer_lag_interval_s=0.2,
                 broker_session_timeout_s=6.0, broker_heartbeat_interval_s=1.0)
    group = _name("hooks")
    redis = Redis.from_url(redis_url)
    dispatcher = WebhookDispatcher(s, redis, group_id=group)
    try:
        await dispatcher.start()
        await _produce(kafka_bootstrap, topic, 10, 2)
        deadline = time.monotonic() + 30
        while True:  # consumed and committed: the gauge of both partitions back to 0
            values = [_gauge(group, topic, p) for p in (0, 1)]
            committed = await dispatcher.consumer.committed(TopicPartition(topic, 0))  # type: ignore[union-attr]
            if values == [0, 0] and committed:
                break
            assert time.monotonic() < deadline, f"lag stayed {values}"
            await asyncio.sleep(0.2)
    finally:
        await dispatcher.stop()
        await redis.aclose()
    per = await _produce(kafka_bootstrap, topic, 7, 2)  # the dispatcher is down now
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    probe = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None)
    await admin.start()
    await probe.start()
    try:
        lag = await group_lag(admin, probe, group, [topic], reset="latest")
    finally:
        await probe.stop()
        await admin.close()
    assert {tp.partition: v for tp, v in lag.items()} == dict(per)


async def test_the_monitor_outlives_a_broker_that_is_not_there_yet() -> None:
    """Started before its broker, the monitor counts failed measurements, does not raise, and
    reports the lag once the broker answers (a worker started before Kafka still exports it)."""
    port = free_port()
    group, topic = _name("g"), _name("t")
    monitor = LagMonitor(f"127.0.0.1:{port}", group, [topic], reset="earliest", interval_s=0.2)

    def errors() -> float:
        return REGISTRY.get_sample_value("ratchet_consumer_lag_errors_total",
                                         {"group": group}) or 0.0

    await monitor.start()
    broker: TansuServer | None = None
    try:
        deadline = time.monotonic() + 30
        while errors() < 2:
            assert time.monotonic() < deadline, "no failed measurement was counted"
            await asyncio.sleep(0.1)
        assert _gauge(group, topic, 0) is None
        broker = TansuServer(port=port).start()
        await ensure_topics(broker.bootstrap, [topic], 1)
        await _produce(broker.bootstrap, topic, 5, 1)
        deadline = time.monotonic() + 30  # its own: the first phase may take most of a slow box's
        while _gauge(group, topic, 0) != 5:
            assert time.monotonic() < deadline, f"lag stayed {_gauge(group, topic, 0)}"
            await asyncio.sleep(0.1)
    finally:
        await monitor.stop()
        if broker is not None:
            broker.stop()
