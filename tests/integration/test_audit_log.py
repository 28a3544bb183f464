"""The audit log against a real Redis (and Tansu for the ``audit`` topic)."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from models.audit import GENESIS
from ratchet.config.settings import Settings
from ratchet.kafka.topics import ensure_topics
from ratchet.store.audit import AuditLog
from ratchet.store.keys import Keys
from tests.integration.gateway_support import (
    read_topic,
)


@pytest.fixture
async def audit(redis_client: Redis, keys: Keys) -> AuditLog:
    return AuditLog(redis_client, keys, Settings())


async def fill(audit: AuditLog, project: str, n: int) -> None:
    for i in range(n):
        await audit.append(project, "agent.created", "cli", f"agent:a{i}", {"i": i})


async def test_append_chains_entries(audit: AuditLog) -> None:
    a = await audit.append("p1", "project.created", "cli", "project:p1", {"name": "x"})
    b = await audit.append("p1", "agent.created", "apikey:0123456789ab", "agent:a", {})
    other = await audit.append("p2", "project.created", "system", "project:p2")
    assert (a.seq, a.prev_hash) == (1, GENESIS)
    assert (b.seq, b.prev_hash) == (2, a.hash)
    assert (other.seq, other.prev_hash) == (1, GENESIS)  # chains are per project
    assert b.at.endswith("Z") and b.at_ms >= a.at_ms
    assert (await audit.verify("p1")).ok and (await audit.verify("p2")).ok


async def test_concurrent_appends_from_many_clients_never_fork(
    redis_url: str, keys: Keys
) -> None:
    clients = [Redis.from_url(redis_url) for _ in range(6)]
    try:
        logs = [AuditLog(c, keys, Settings()) for c in clients]
        entries = await asyncio.gather(*(
            logs[i % len(logs)].append("p", "agent.created", "cli", f"agent:{i}", {"i": i})
            for i in range(60)
        ))
        assert sorted(e.seq for e in entries) == list(range(1, 61))
        assert len({e.prev_hash for e in entries}) == 60  # no two entries share a parent
        report = await logs[0].verify("p")
        assert report.ok, report.problems
        assert report.checked == 60
    finally:
        for c in clients:
            await c.aclose()


async def _rewrite(redis: Redis, keys: Keys, project: str, seq: int, **changes: object) -> None:
    key = keys.audit_entries(project)
    [raw] = await redis.zrange(key, seq, seq, byscore=True)
    entry = orjson.loads(raw)
    entry.update(changes)
    await redis.zremrangebyscore(key, seq, seq)
    await redis.zadd(key, {orjson.dumps(entry): seq})


async def test_verify_detects_an_edit(audit: AuditLog, redis_client: Redis, keys: Keys) -> None:
    await fill(audit, "p", 6)
    await _rewrite(redis_client, keys, "p", 4, details={"i": 999})
    report = await audit.verify("p")
    assert [(p.seq, p.kind) for p in report.problems] == [(4, "hash_mismatch")]


async def test_verify_detects_a_deletion(audit: AuditLog, redis_client: Redis, keys: Keys) -> None:
    await fill(audit, "p", 6)
    await redis_client.zremrangebyscore(keys.audit_entries("p"), 3, 3)
    report = await audit.verify("p")
    assert (3, "gap") in [(p.seq, p.kind) for p in report.problems]


async def test_verify_detects_a_reorder(audit: AuditLog, redis_client: Redis, keys: Keys) -> None:
    await fill(audit, "p", 6)
    key = keys.audit_entries("p")
    [two] = await redis_client.zrange(key, 2, 2, byscore=True)
    [five] = await redis_client.zrange(key, 5, 5, byscore=True)
    await redis_client.zadd(key, {two: 5, five: 2})  # swap their positions
    report = await audit.verify("p")
    assert {2, 5} <= {p.seq for p in report.problems}


async def test_verify_detects_a_truncated_tail(
    audit: AuditLog, redis_client: Redis, keys: Keys
) -> None:
    await fill(audit, "p", 6)
    await redis_client.zremrangebyscore(keys.audit_entries("p"), 6, 6)
    report = await audit.verify("p")
    assert [p.kind for p in report.problems] == ["head"]


async def test_retention_prunes_and_records_a_checkpoint(
    redis_client: Redis, keys: Keys
) -> None:
    now = [1_700_000_000.0]
    audit = AuditLog(redis_client, keys, Settings(audit_retention_days=1), clock=lambda: now[0])
    await fill(audit, "p", 3)
    now[0] += 2 * 86_400  # two days later the first three are past retention
    await fill(audit, "p", 2)
    page = await audit.page("p")
    assert [e.seq for e in page.entries] == [4, 5]
    checkpoint = await audit.checkpoint("p")
    assert checkpoint.next_seq == 4
    report = await audit.verify("p")
    assert report.ok, report.problems
    # pruning does not hide tampering with what is retained
    await _rewrite(redis_client, keys, "p", 5, actor="system")
    assert [(p.seq, p.kind) for p in (await audit.verify("p")).problems] == [(5, "hash_mismatch")]


async def test_a_project_keeps_at_most_its_cap_of_entries(
    redis_client: Redis, keys: Keys
) -> None:
    """Round 9: 18,507 policy changes in 20 s, each entry kept 365 days (≈ 61 GB a day at that
    rate in the shared Redis). The oldest entries past ``audit_max_entries`` are pruned on
    append, with a checkpoint, and the chain still verifies; another project is not touched."""
    audit = AuditLog(redis_client, keys, Settings(audit_max_entries=5))
    await fill(audit, "p", 8)
    await fill(audit, "q", 3)
    page = await audit.page("p")
    assert [e.seq for e in page.entries] == [4, 5, 6, 7, 8]
    assert (await audit.checkpoint("p")).next_seq == 4
    assert (await audit.verify("p")).ok
    assert [e.seq for e in (await audit.page("q")).entries] == [1, 2, 3]
    await fill(audit, "p", 1)
    assert [e.seq for e in (await audit.page("p")).entries] == [5, 6, 7, 8, 9]
    report = await audit.verify("p")
    assert report.ok, report.problems


async def test_page_by_time_and_cursor(redis_client: Redis, keys: Keys) -> None:
    now = [1_700_000_000.0]
    audit = AuditLog(redis_client, keys, Settings(), clock=lambda: now[0])
    for i in range(10):
        now[0] += 60
        await audit.append("p", "agent.created", "cli", f"agent:{i}")
    first = await audit.page("p", from_ms=(1_700_000_000 + 180) * 1000,
                             to_ms=(1_700_000_000 + 480) * 1000, limit=2)
    assert [e.seq for e in first.entries] == [3, 4] and first.next_cursor is not None
    second = await audit.page("p", to_ms=(1_700_000_000 + 480) * 1000,
                              cursor=first.next_cursor, limit=10)
    assert [e.seq for e in second.entries] == [5, 6, 7, 8] and second.next_cursor is None
    with pytest.raises(ValueError):
        await audit.page("p", cursor="abc")


@pytest.mark.kafka
async def test_entries_are_published_to_the_audit_topic(
    redis_client: Redis, keys: Keys, kafka_bootstrap: str, key_prefix: str
) -> None:
    topic = f"{key_prefix}-audit"
    await ensure_topics(kafka_bootstrap, [topic], 2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()

    async def sink(t: str, key: bytes, value: bytes) -> None:
        await producer.send_and_wait(t, value, key=key)

    try:
        audit = AuditLog(redis_client, keys, Settings(topic_audit=topic), sink=sink)
        await fill(audit, "p9", 3)
    finally:
        await producer.stop()
    records = await read_topic(kafka_bootstrap, topic, expect=3)
    assert [r.key for r in records] == [b"p9"] * 3
    assert sorted(orjson.loads(r.value or b"")["seq"] for r in records) == [1, 2, 3]


async def test_publish_failure_keeps_the_entry(audit: AuditLog) -> None:
    calls: list[str] = []

    async def broken(topic: str, key: bytes, value: bytes) -> None:
        calls.append(topic)
        raise ConnectionError("broker down")

    failing = AuditLog(audit.redis, audit.keys, Settings(audit_publish_attempts=2), sink=broken)
    entry = await failing.append("p", "baseline.reset", "cli", "chain:x")
    assert len(calls) == 2
    assert [e.seq for e in (await failing.page("p")).entries] == [entry.seq]
