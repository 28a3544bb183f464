"""Helpers of the gateway tests (their fixtures are in tests/integration/conftest.py).

The gateway runs in-process (aiohttp ``TestServer`` on a free port) against the real Redis and
Tansu of tests/conftest.py, in its own key prefix and its own topics per test. ``FakeWorker`` is
test code only: it plays the Faust worker (reads ``ingest``, stores verdicts with VerdictStore,
answers on ``verdicts``) so the wait path and approvals can be tested without the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Self

from aiohttp.test_utils import TestServer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from redis.asyncio import Redis

from gateway.app import AUTO_DECOMPRESS, build_app
from models.envelope import (
    TRACE_HEADER,
    VerdictEnvelope,
    agent_key,
    decode_ingest,
    encode_verdicts,
)
from models.verdict import Edge, Reason, Verdict
from models.verdict_wire import encode_compact
from ratchet.config.settings import Settings
from ratchet.platform.provisioning import create_agent, create_project
from ratchet.sandbox.client import RatchetClient
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient, connect_from_settings
from ratchet.store.replies import ReplyPublisher
from ratchet.store.verdicts import VerdictStore

__all__ = [
    "FakeWorker",
    "Gateway",
    "Tenant",
    "event",
    "own_gateway",
    "read_topic",
    "start_gateway",
]


def event(agent_id: str = "agent-1", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()), "agent_id": agent_id, "run_id": "run-1",
        "service": "crm", "action": "contacts.read", "payload": {"id": 7, "q": "é"},
    }
    body.update(over)
    return body


@dataclass
class Gateway:
    server: TestServer
    settings: Settings
    redis: RedisClient
    keys: Keys

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")


@dataclass
class Tenant:
    project_id: str
    api_key: str
    agent_id: str
    secret: str
    client: RatchetClient


async def start_gateway(settings: Settings) -> TestServer:
    server = TestServer(build_app(settings), host="127.0.0.1", auto_decompress=AUTO_DECOMPRESS)
    await server.start_server()
    return server


async def make_tenant(gw: Gateway, agent_id: str = "agent-1", tier: str | None = None) -> Tenant:
    """A new project (on ``tier``; the default tier when None) with one agent."""
    project_id, api_key = await create_project(gw.redis, gw.keys, "test project", tier)
    agent_id, secret = await create_agent(gw.redis, gw.keys, project_id, agent_id)
    client = RatchetClient(gw.url, api_key, agent_id, secret, project_id=project_id)
    return Tenant(project_id, api_key, agent_id, secret, client)


async def read_topic(
    bootstrap: str, topic: str, *, expect: int | None = None, idle_s: float = 1.0,
    timeout_s: float = 10.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` from the beginning: until ``expect`` arrived, or ``idle_s``
    passed without a new one (group-less consumer: no slow group join on Tansu)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    out: list[ConsumerRecord[bytes, bytes]] = []
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while time.monotonic() < deadline:
            got = await consumer.getmany(timeout_ms=200)
            for records in got.values():
                out.extend(records)
                last = time.monotonic()
            if expect is not None and len(out) >= expect:
                await asyncio.sleep(0.3)  # and nothing more should follow
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    out.extend(records)
                break
            if expect is None and time.monotonic() - last > idle_s:
                break
    finally:
        await consumer.stop()
    return out


def verdict_for(ev: Any, project_id: str, trace_id: str) -> Verdict:
    action = str(ev.payload.get("decide", "allow"))
    return Verdict(
        event_id=ev.event_id, agent_id=ev.agent_id, run_id=ev.run_id, chain="crm",
        mode="locked", anomalous=action != "allow", score=12.5, threshold=3.0,
        edge=Edge("START", "n1", 0.0, 0.0, 0.0), action=action,
        reasons=(Reason("markov", action, {"test": True}),) if action != "allow" else (),
        decided_at=time.time(), trace_id=trace_id, project_id=project_id,
    )


class FakeWorker:
    """Test double of the Faust worker: ``payload.decide`` chooses the action; ``payload.slow``
    events are never answered."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        assert settings.kafka_bootstrap
        self.settings = settings
        self.store = VerdictStore(redis, Keys(settings.key_prefix))
        self.replies = ReplyPublisher(redis, Keys(settings.key_prefix))
        self.consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                         group_id=None, enable_auto_commit=False)
        self.producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=1)
        self.task: asyncio.Task[None] | None = None
        self.trace_headers: list[str] = []

    async def __aenter__(self) -> Self:
        await self.producer.start()
        await self.consumer.start()
        await self.consumer.topics()
        topic = self.settings.topic_ingest
        tps = [TopicPartition(topic, p) for p in self.consumer.partitions_for_topic(topic) or ()]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        self.task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            got = await self.consumer.getmany(timeout_ms=100)
            for records in got.values():
                for rec in records:
                    await self._answer(rec)

    async def _answer(self, rec: ConsumerRecord[bytes, bytes]) -> None:
        assert rec.value is not None
        env = decode_ingest(rec.value)
        self.trace_headers.append(dict(rec.headers)[TRACE_HEADER].decode())
        verdicts = tuple(verdict_for(ev, env.project_id, env.trace_id)
                         for ev in env.events if not ev.payload.get("slow"))
        if not verdicts:
            return
        await self.store.save_many(verdicts, self.settings.verdict_ttl_s)
        out = VerdictEnvelope(env.project_id, env.agent_id, env.trace_id, verdicts,
                              env.received_at)
        await self.producer.send_and_wait(
            self.settings.topic_verdicts, encode_verdicts(out),
            key=agent_key(env.project_id, env.agent_id),
            headers=[(TRACE_HEADER, env.trace_id.encode())],
        )
        if env.reply:  # as the worker does: the waiting caller's gateway gets them on its route
            await self.replies.publish([(env.reply, encode_compact(
                env.project_id, env.agent_id, env.trace_id, env.received_at, verdicts))])

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.consumer.stop()
        await self.producer.stop()


async def wait_for(predicate: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@asynccontextmanager
async def own_gateway(settings: Settings) -> AsyncIterator[Gateway]:
    """Start a gateway for ``settings`` (usually ``gw_settings.replace(...)``); always stopped."""
    server = await start_gateway(settings)
    assert settings.redis_url
    redis = connect_from_settings(settings)  # a cluster client when the gateway has one
    try:
        yield Gateway(server, settings, redis, Keys(settings.key_prefix))
    finally:
        await redis.aclose()
        await server.close()


async def head_without_body(url: str, method: str, path: str, api_key: str,
                            content_length: int, extra_headers: str = "") -> bytes:
    """The response head the gateway at ``url`` answers to a request that announces a body of
    ``content_length`` bytes and sends none of it (a gateway that read before answering would
    wait: the 5 s timeout fails the test)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api_key}"
                     f"\r\nContent-Type: application/json\r\n{extra_headers}"
                     f"Content-Length: {content_length}\r\n\r\n".encode())
        await writer.drain()
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()
