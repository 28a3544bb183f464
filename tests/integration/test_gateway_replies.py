"""Many gateways: a waiting caller's verdict reaches the gateway it is on, and only that one.

Two gateways and a worker as child processes on a real redis-server and Tansu. Each gateway
exports ``ratchet_gateway_verdict_bytes_read_total`` (bytes of verdict messages it read) and
``ratchet_gateway_waited_verdicts_total``; before reply routes, every gateway read the whole
``verdicts`` topic, so the idle gateway's counter grew with the other's traffic.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from models.verdict import Edge, Reason, Verdict
from models.verdict_wire import encode_compact
from ratchet.kafka.topics import make_admin
from ratchet.platform.provisioning import create_agent, create_project
from ratchet.sandbox.client import RatchetClient
from ratchet.sandbox.process import FAST_GROUP_ENV, ChildProcess, gateway_process, worker_env
from ratchet.sandbox.servers import free_port
from ratchet.store.keys import Keys

pytestmark = pytest.mark.kafka


@dataclass
class Pair:
    """Gateways ``a`` and ``b`` (and a worker once started) on one Redis, Kafka and project."""

    env: dict[str, str]
    redis: Redis
    keys: Keys
    session: aiohttp.ClientSession
    project: str
    api_key: str
    secret: str
    ports: dict[str, int]
    procs: dict[str, ChildProcess] = field(default_factory=dict)

    def base(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def client(self, name: str) -> RatchetClient:
        return RatchetClient(self.base(name), self.api_key, "ops-bot", self.secret,
                             project_id=self.project, session=self.session)

    async def start_gateway(self, name: str) -> None:
        env = dict(self.env, RATCHET_GATEWAY_PORT=str(self.ports[name]))
        proc = self.procs[name] = gateway_process(env, name=f"gateway-{name}").start()
        deadline = time.monotonic() + 30
        while True:
            try:
                async with self.session.get(self.base(name) + "/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline and proc.running, proc.log()[-3000:]
            await asyncio.sleep(0.2)

    def start_worker(self) -> None:
        self.procs["worker"] = ChildProcess(self.env, name="worker").start()

    async def worker_ready(self, via: str) -> None:
        """Probe through gateway ``via`` until the worker has joined its group and answers."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answer = await self.client(via).send(_event("probe"), wait_ms=2000)
            if answer.status == 200:
                return
            assert answer.status == 202, answer.body
        raise AssertionError("no verdict within 60 s\n" + self.procs["worker"].log()[-3000:])

    async def counters(self, name: str) -> dict[str, float]:
        async with self.session.get(self.base(name) + "/metrics") as r:
            text = await r.text()
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "ratchet_gateway_errors_total":
                    out[f"errors:{s.labels['kind']}"] = s.value
                elif s.name in ("ratchet_gateway_verdict_bytes_read_total",
                                "ratchet_gateway_waited_verdicts_total"):
                    out[s.name] = s.value
        return out

    async def reply_channels(self) -> set[bytes]:
        return set(await self.redis.pubsub_channels(f"{self.keys.prefix}:*:reply"))


def _event(service: str = "helpdesk", **over: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "run_id": f"run-{uuid.uuid4().hex[:8]}",
            "service": service, "action": "lookup", "payload": {"ticket": 7},
            "end_of_run": True, **over}


@pytest.fixture
async def pair(redis_url: str, kafka_bootstrap: str, key_prefix: str) -> AsyncIterator[Pair]:
    suffix = uuid.uuid4().hex[:8]
    env = worker_env(
        redis_url=redis_url, kafka_bootstrap=kafka_bootstrap, key_prefix=key_prefix,
        topic_ingest=f"ingest-{suffix}", topic_verdicts=f"verdicts-{suffix}",
        topic_feedback=f"feedback-{suffix}", topic_audit=f"audit-{suffix}", topic_partitions=2,
        worker_id=f"replies-{suffix}", worker_web_port=0, gateway_host="127.0.0.1",
        max_wait_ms=5000,
    )
    env.update(FAST_GROUP_ENV)
    keys = Keys(key_prefix)
    redis = Redis.from_url(redis_url)
    project, api_key = await create_project(redis, keys, "replies test")
    _, secret = await create_agent(redis, keys, project, "ops-bot")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        p = Pair(env, redis, keys, session, project, api_key, secret,
                 {"a": free_port(), "b": free_port()})
        try:
            await p.start_gateway("a")
            await p.start_gateway("b")
            yield p
        finally:
            for proc in p.procs.values():
                proc.stop()
            await redis.aclose()


def _delta(after: dict[str, float], before: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


BYTES = "ratchet_gateway_verdict_bytes_read_total"
WAITED = "ratchet_gateway_waited_verdicts_total"
BAD = "errors:bad_verdict_message"


async def test_a_waiter_gets_its_verdict_and_the_other_gateway_reads_none_of_it(
    pair: Pair,
) -> None:
    pair.start_worker()
    await pair.worker_ready(via="a")
    a0, b0 = await pair.counters("a"), await pair.counters("b")
    # bulk traffic through b (nobody waits), waiting callers on a
    bulk = [_event() for _ in range(40)]
    answer = await pair.client("b").send_batch(bulk)
    assert answer.status == 200 and answer.body["accepted"] == 40, answer.body
    waited = []
    for _ in range(5):
        ev = _event()
        got = await pair.client("a").send(ev, wait_ms=5000)
        assert got.status == 200, (got.status, got.body)
        assert got.body["status"] == "decided" and got.body["verdict"]["event_id"] == ev["event_id"]
        waited.append(got.body["verdict"])
    # every bulk verdict is decided and stored (so b had every chance to read them)
    for ev in bulk:
        stored = await pair.client("b")._call("GET", f"/v1/verdicts/{ev['event_id']}",
                                             params={"wait_ms": "5000"})
        assert stored.status == 200, stored.body
    # the waiter's verdict is the stored one, field for field (compact wire → same HTTP JSON)
    for verdict in waited:
        stored = await pair.client("b").verdict(verdict["event_id"])
        assert stored.status == 200
        assert stored.body["verdict"] == verdict
    a1, b1 = await pair.counters("a"), await pair.counters("b")
    assert _delta(a1, a0, WAITED) == 5
    assert 0 < _delta(a1, a0, BYTES) < 5 * 1000  # its own replies, a few hundred bytes each
    assert _delta(b1, b0, BYTES) == 0 and _delta(b1, b0, WAITED) == 0, (b0, b1)
    assert _delta(a1, a0, BAD) == 0 and _delta(b1, b0, BAD) == 0


async def _topics(bootstrap: str) -> set[str]:
    admin = make_admin(bootstrap, None)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_a_restarted_gateway_leaks_no_channel_or_topic(
    pair: Pair, kafka_bootstrap: str
) -> None:
    channels = await pair.reply_channels()
    assert len(channels) == 2, channels
    topics = await _topics(kafka_bootstrap)
    for _ in range(2):
        pair.procs["a"].kill()  # kill -9: no clean unsubscribe
        await pair.start_gateway("a")
    deadline = time.monotonic() + 10
    while (now := await pair.reply_channels()) and len(now) != 2:
        assert time.monotonic() < deadline, now
        await asyncio.sleep(0.1)
    assert len(now) == 2 and len(now & channels) == 1, (channels, now)  # b's, and a's new one
    assert await _topics(kafka_bootstrap) == topics
    pair.start_worker()
    await pair.worker_ready(via="a")  # the restarted gateway's waiters are answered


async def test_a_waiter_whose_gateway_dies_gets_its_verdict_by_lookup(pair: Pair) -> None:
    ev = _event()
    # no worker yet: the caller on a waits; a is killed while it waits
    waiting = asyncio.create_task(pair.client("a").send(ev, wait_ms=5000))
    await asyncio.sleep(1.0)
    assert not waiting.done()
    pair.procs["a"].kill()
    with pytest.raises(aiohttp.ClientError):
        await waiting
    pair.start_worker()
    found = await pair.client("b")._call("GET", f"/v1/verdicts/{ev['event_id']}",
                                        params={"wait_ms": "5000"})
    deadline = time.monotonic() + 60
    while found.status == 404 and time.monotonic() < deadline:
        found = await pair.client("b")._call("GET", f"/v1/verdicts/{ev['event_id']}",
                                            params={"wait_ms": "5000"})
    assert found.status == 200, (found.status, found.body)
    assert found.body["verdict"]["event_id"] == ev["event_id"]
    assert found.body["verdict"]["action"] in ("allow", "flag", "pause", "reject")


def _crafted(project: str, event_id: str) -> bytes:
    v = Verdict(event_id, "ops-bot", "r", "chain", "locked", True, 20.0, 12.0,
                Edge("^", "n1", 0.01, 1.0, 100.0), "flag", (Reason("markov", "flag", {"bits": 20.0}),),
                time.time(), trace_id="t", project_id=project)
    return encode_compact(project, "ops-bot", "t", time.time(), [v])


async def test_an_unknown_wire_version_is_counted_and_the_listener_carries_on(pair: Pair) -> None:
    a0, b0 = await pair.counters("a"), await pair.counters("b")
    channels = await pair.reply_channels()
    assert len(channels) == 2
    for ch in channels:
        await pair.redis.publish(ch, msgspec.msgpack.encode([9, pair.project, "ops-bot", "t", 0.0, []]))
        await pair.redis.publish(ch, b"\xc1 not msgpack")
    a1 = await pair.counters("a")
    deadline = time.monotonic() + 5
    while _delta(a1, a0, BAD) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        a1 = await pair.counters("a")
    b1 = await pair.counters("b")
    assert _delta(a1, a0, BAD) == 2 and _delta(b1, b0, BAD) == 2, (a0, a1, b0, b1)
    # still listening: a waiter on a is answered by the next readable reply on its route
    ev = _event()
    waiting = asyncio.create_task(pair.client("a").send(ev, wait_ms=5000))
    await asyncio.sleep(0.5)
    for ch in channels:
        await pair.redis.publish(ch, _crafted(pair.project, ev["event_id"]))
    got = await waiting
    assert got.status == 200, (got.status, got.body)
    assert got.body["verdict"]["action"] == "flag"
    assert got.body["verdict"]["reasons"] == [
        {"source": "markov", "action": "flag", "detail": {"bits": 20.0}}]
