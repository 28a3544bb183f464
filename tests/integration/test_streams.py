"""Faust workers against a real Tansu broker and a real redis-server.

Each test gets its own topics, consumer group and key prefix; workers run as subprocesses
(``python -m ratchet.cli.worker worker``) in their own process groups and are always stopped.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from models.envelope import (
    TRACE_HEADER,
    FeedbackMessage,
    IngestEnvelope,
    agent_key,
    encode_feedback,
)
from models.events import IngestEvent, parse_event
from models.nodes import chain_for, node_id
from models.params import COUNT_SCALE, EngineParams
from models.skeleton import skeleton_hash
from models.verdict import Verdict
from ratchet.kafka.topics import ensure_topics
from ratchet.sandbox.harness import EnvelopeProducer, VerdictCollector
from ratchet.sandbox.process import FAST_GROUP_ENV, WorkerProcess, worker_env
from ratchet.sandbox.servers import RedisServer, free_port
from ratchet.store.chains import EngineStore
from ratchet.store.keys import Keys
from ratchet.store.verdicts import VerdictStore

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

PARTITIONS = 4
#: No decay, big caps, shadow forever: stored counts must equal a plain recount of the stream.
COUNTING_ENGINE = """
[engine]
decay_low = 0.0
decay_mid = 0.0
decay_high = 0.0
decay_rate = 0.0
min_runs_soft = 1000000
min_runs_locked = 1000000
node_cap = 100000
edge_cap = 100000
"""
#: Critical chains lock after a handful of runs, so a novel event is paused.
LOCKING_ENGINE = """
[engine]
checkpoint_runs = 2
min_runs_soft = 2
min_runs_locked = 4
stability = 1.0
stability_large = 1.0
"""


@dataclass
class Pipeline:
    """Topics, worker environment and the workers of one test."""

    redis_url: str
    bootstrap: str
    key_prefix: str
    tmp: Path
    engine_toml: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def topics(self) -> dict[str, str]:
        return {
            "topic_ingest": f"ingest-{self.suffix}",
            "topic_verdicts": f"verdicts-{self.suffix}",
            "topic_feedback": f"feedback-{self.suffix}",
        }

    @property
    def keys(self) -> Keys:
        return Keys(self.key_prefix)

    def env(self) -> dict[str, str]:
        extra: dict[str, Any] = dict(self.topics)
        if self.engine_toml:
            path = self.tmp / "engine.toml"
            path.write_text(self.engine_toml)
            extra["engine_config"] = str(path)
        env = worker_env(
            redis_url=self.redis_url,
            kafka_bootstrap=self.bootstrap,
            key_prefix=self.key_prefix,
            worker_id=f"test-workers-{self.suffix}",
            worker_web_port=0,
            topic_partitions=PARTITIONS,
            log_level="INFO",
            **extra,
        )
        env.update(FAST_GROUP_ENV)
        env.update(self.extra_env)
        return env

    async def create_topics(self) -> None:
        await ensure_topics(self.bootstrap, self.topics.values(), PARTITIONS)

    def start_worker(self, name: str = "worker") -> WorkerProcess:
        w = WorkerProcess(self.env(), name=name).start()
        self.workers.append(w)
        return w

    def stop(self) -> None:
        for w in self.workers:
            w.stop(timeout_s=10)

    def logs(self) -> str:
        return "\n".join(f"--- {w.name} ---\n{w.log()[-4000:]}" for w in self.workers)


@pytest.fixture
def pipeline(redis_url: str, kafka_bootstrap: str, key_prefix: str, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(redis_url, kafka_bootstrap, key_prefix, tmp_path)
    try:
        yield p
    finally:
        p.stop()


def event(agent: str, run: str, i: int, *, shape: str = "a", end: bool = False,
          priority: str = "normal", project: str = "proj") -> IngestEvent:
    payloads = {
        "a": {"id": i, "q": "text"},
        "b": {"ids": [1, 2], "limit": 5},
        "c": {"to": "user-7", "body": "hi"},  # no e-mail: the default PII rule would flag it
        "novel": {"dump": {"table": "users", "all": True}},
    }
    return parse_event(
        {
            "event_id": f"{agent}-{run}-{i}-{uuid.uuid4().hex[:6]}",
            "agent_id": agent,
            "run_id": run,
            "service": "crm",
            "action": f"op.{shape}",
            "priority": priority,
            "payload": payloads[shape],
            "end_of_run": end,
        },
        project,
    )


def run_events(agent: str, run: str, shapes: str = "abc", **kw: Any) -> list[IngestEvent]:
    return [
        event(agent, run, i, shape=s, end=i == len(shapes) - 1, **kw)
        for i, s in enumerate(shapes)
    ]


def envelope(events: list[IngestEvent]) -> IngestEnvelope:
    return IngestEnvelope(
        events[0].project_id, events[0].agent_id, uuid.uuid4().hex, time.time(), tuple(events)
    )


def plain_recount(events: list[IngestEvent], node_of: dict[str, str]) -> dict[str, Counter[str]]:
    """Transitions a plain reading of the stream implies, per chain tag (no decay, no caps)."""
    counts: dict[str, Counter[str]] = {}
    last: dict[tuple[str, str], str] = {}
    seen: set[str] = set()
    for ev in events:
        if ev.event_id in seen:
            continue
        seen.add(ev.event_id)
        tag, node = node_of[ev.event_id].split("|", 1)
        c = counts.setdefault(tag, Counter())
        src = last.get((tag, ev.run_id), "^")
        c[f"{src}\t{node}"] += COUNT_SCALE
        if ev.end_of_run:
            c[f"{node}\t$"] += COUNT_SCALE
            last[(tag, ev.run_id)] = "^"
        else:
            last[(tag, ev.run_id)] = node
    return counts


async def assert_counts_match(pipeline: Pipeline, events: list[IngestEvent],
                              got: dict[str, list[Verdict]]) -> None:
    # a verdict's edge is the most surprising one of its event (for a run's last event maybe
    # node → END), so the node of each event is computed the way the engine does
    assert all(e.event_id in got for e in events)
    node_of = {
        e.event_id: f"{chain_for(e.project_id, e.agent_id, e.service, e.priority).tag}|"
        + node_id(skeleton_hash(e.payload), service=e.service, action=e.action, rich=False)
        for e in events
    }
    want = plain_recount(events, node_of)
    client = Redis.from_url(pipeline.redis_url)
    try:
        store = EngineStore(client, pipeline.keys, EngineParams())
        for tag, counts in want.items():
            assert await store.edge_counts(tag) == dict(counts), f"chain {tag} counted wrong"
    finally:
        await client.aclose()


async def test_events_become_verdicts_in_order_with_trace(pipeline: Pipeline) -> None:
    await pipeline.create_topics()
    pipeline.start_worker()
    sent: list[IngestEnvelope] = []
    async with VerdictCollector(pipeline.bootstrap, pipeline.topics["topic_verdicts"]) as col, \
            EnvelopeProducer(pipeline.bootstrap, pipeline.topics["topic_ingest"]) as prod:
        for r in range(12):
            for agent in ("alpha", "beta", "gamma"):
                env = envelope(run_events(agent, f"run{r}", "abcab"[: 2 + r % 4]))
                sent.append(env)
                await prod.send(env)
        await prod.flush()
        ids = [e.event_id for env in sent for e in env.events]
        missing = await col.wait_for(ids, 60)
        assert not missing, f"{len(missing)} events without verdict\n{pipeline.logs()}"

        # one verdict envelope per ingest envelope, keyed by agent, trace id in body and header
        by_trace = {r.envelope.trace_id: r for r in col.envelopes}
        assert len(col.envelopes) == len(sent)
        for env in sent:
            got = by_trace[env.trace_id]
            assert got.key == agent_key(env.project_id, env.agent_id)
            assert got.headers[TRACE_HEADER] == env.trace_id.encode()
            assert [v.event_id for v in got.envelope.verdicts] == [e.event_id for e in env.events]
            assert all(v.trace_id == env.trace_id for v in got.envelope.verdicts)
            assert got.envelope.received_at == pytest.approx(env.received_at)
        # per-agent order: verdict envelopes of one agent come back in the order sent
        for agent in ("alpha", "beta", "gamma"):
            want = [e.trace_id for e in sent if e.agent_id == agent]
            assert [r.envelope.trace_id for r in col.envelopes if r.envelope.agent_id == agent] == want
        verdicts = {e: vs[0] for e, vs in col.by_event.items()}
        assert all(v.error is None and v.mode == "shadow" for v in verdicts.values())
        assert {v.action for v in verdicts.values()} == {"allow"}

    # verdicts are stored for GET /v1/verdicts/{id}
    client = Redis.from_url(pipeline.redis_url)
    try:
        stored = await VerdictStore(client, pipeline.keys).get("proj", ids[-1])
        assert stored is not None and stored["event_id"] == ids[-1]
    finally:
        await client.aclose()


async def test_invalid_message_is_skipped_not_blocking(pipeline: Pipeline) -> None:
    await pipeline.create_topics()
    pipeline.start_worker()
    async with VerdictCollector(pipeline.bootstrap, pipeline.topics["topic_verdicts"]) as col, \
            EnvelopeProducer(pipeline.bootstrap, pipeline.topics["topic_ingest"]) as prod:
        await prod.send_raw(b"not json", key=b"proj/alpha")
        await prod.send_raw(b'{"v": 99}', key=b"proj/alpha")
        env = envelope(run_events("alpha", "r1"))
        await prod.send(env)
        await prod.flush()
        assert not await col.wait_for([e.event_id for e in env.events], 60), pipeline.logs()


async def test_pause_then_approve_learns_the_transition(pipeline: Pipeline) -> None:
    pipeline.engine_toml = LOCKING_ENGINE
    await pipeline.create_topics()
    pipeline.start_worker()
    async with VerdictCollector(pipeline.bootstrap, pipeline.topics["topic_verdicts"]) as col, \
            EnvelopeProducer(pipeline.bootstrap, pipeline.topics["topic_ingest"]) as prod:
        train = [run_events("ops", f"train{r}", "abc", priority="critical") for r in range(12)]
        for events in train:
            await prod.send(envelope(events))
        odd = [event("ops", "odd", 0, shape="novel", priority="critical")]
        await prod.send(envelope(odd))
        await prod.flush()
        ids = [e.event_id for run in train for e in run] + [odd[0].event_id]
        assert not await col.wait_for(ids, 60), pipeline.logs()
        paused = col.by_event[odd[0].event_id][0]
        assert paused.mode == "locked", paused
        assert paused.action == "pause" and paused.anomalous and paused.held, paused
        assert any(r.source == "markov" for r in paused.reasons)

        client = Redis.from_url(pipeline.redis_url)
        try:
            store = EngineStore(client, pipeline.keys, EngineParams())
            edge = f"^\t{paused.edge.to_node}"
            assert edge not in await store.edge_counts(paused.chain_tag)  # protected learning

            feedback = FeedbackMessage(
                "proj", odd[0].event_id, "approve", "known job", "alice", uuid.uuid4().hex,
                time.time(),
            )
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(bootstrap_servers=pipeline.bootstrap)
            await producer.start()
            try:
                await producer.send_and_wait(
                    pipeline.topics["topic_feedback"], encode_feedback(feedback),
                    key=agent_key("proj", "ops"),
                )
            finally:
                await producer.stop()
            deadline = time.monotonic() + 30
            learned = 0
            while time.monotonic() < deadline:
                learned = (await store.edge_counts(paused.chain_tag)).get(edge, 0)
                if learned:
                    break
                await asyncio.sleep(0.2)
            assert learned == COUNT_SCALE, pipeline.logs()
        finally:
            await client.aclose()


async def test_kill_9_of_one_of_two_workers_loses_nothing_counts_nothing_twice(
    pipeline: Pipeline,
) -> None:
    pipeline.engine_toml = COUNTING_ENGINE
    await pipeline.create_topics()
    first = pipeline.start_worker("w1")
    pipeline.start_worker("w2")
    sent: list[IngestEvent] = []
    agents = [f"agent{i}" for i in range(16)]
    async with VerdictCollector(pipeline.bootstrap, pipeline.topics["topic_verdicts"]) as col, \
            EnvelopeProducer(pipeline.bootstrap, pipeline.topics["topic_ingest"]) as prod:

        async def burst(rounds: int, tag: str) -> list[str]:
            ids: list[str] = []
            for r in range(rounds):
                for a in agents:
                    events = run_events(a, f"{tag}{r}", "abcba"[: 2 + (r + len(a)) % 4])
                    sent.extend(events)
                    ids += [e.event_id for e in events]
                    await prod.send(envelope(events))
                await prod.flush()
                await asyncio.sleep(0.05)
            return ids

        warm = await burst(2, "warm")
        assert not await col.wait_for(warm, 60), pipeline.logs()
        # both workers are in the group now; kill one while traffic flows
        stream = asyncio.ensure_future(burst(60, "live"))
        await asyncio.sleep(0.7)
        os.killpg(first.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
        first.proc.wait(10)  # type: ignore[union-attr]
        live = await stream
        pipeline.start_worker("w1-restarted")
        after = await burst(3, "after")
        missing = await col.wait_for(warm + live + after, 80)
        assert not missing, f"{len(missing)} events never answered\n{pipeline.logs()}"

    # redelivered events (a run showed 383 after the kill) were answered again, from the stored
    # first decision
    for vs in col.by_event.values():
        first_answer = vs[0]
        for again in vs[1:]:
            assert again.duplicate
            assert (again.score, again.action, again.edge) == (
                first_answer.score, first_answer.action, first_answer.edge,
            )
    await assert_counts_match(pipeline, sent, dict(col.by_event))


async def test_worker_waits_out_a_redis_outage_without_losing_events(
    kafka_bootstrap: str, key_prefix: str, tmp_path: Path,
) -> None:
    port = free_port()
    redis = RedisServer(port=port).start()
    p = Pipeline(redis.url, kafka_bootstrap, key_prefix, tmp_path, engine_toml=COUNTING_ENGINE)
    try:
        await p.create_topics()
        p.start_worker()
        async with VerdictCollector(p.bootstrap, p.topics["topic_verdicts"]) as col, \
                EnvelopeProducer(p.bootstrap, p.topics["topic_ingest"]) as prod:
            before = run_events("steady", "r0")
            await prod.send(envelope(before))
            await prod.flush()
            assert not await col.wait_for([e.event_id for e in before], 60), p.logs()

            redis.kill()
            during: list[IngestEvent] = []
            for r in range(10):
                events = run_events("outage", f"r{r}", "abcb")
                during += events
                await prod.send(envelope(events))
            await prod.flush()
            await asyncio.sleep(3.0)
            ids = [e.event_id for e in during]
            assert len(col.missing(ids)) == len(ids), "answered while Redis was down"

            redis = RedisServer(port=port).start()  # back, empty
            assert not await col.wait_for(ids, 45), p.logs()
            answers = [col.by_event[i][0] for i in ids]
            assert all(v.error is None for v in answers)  # a guard error is never a verdict
            # (a batch retried after Redis failed mid-way may be answered from the first, stored
            # decision: duplicate=True with the same verdict; the recount below proves each
            # event was counted exactly once)
        assert "dependency unavailable" in p.workers[0].log()
        await assert_counts_match(p, during, {i: col.by_event[i] for i in ids})
    finally:
        p.stop()
        redis.stop()


async def test_decision_log_lines_topic_and_audit_for_pauses_and_mode_changes(
    pipeline: Pipeline,
) -> None:
    """Every non-allow verdict and mode change: a JSON log line, a decisions-topic message and
    (mode changes) an audit entry; allowed events are not logged."""
    from aiokafka import AIOKafkaConsumer

    from ratchet.config.settings import Settings
    from ratchet.store.audit import AuditLog

    decisions_topic = f"decisions-{pipeline.suffix}"
    pipeline.engine_toml = LOCKING_ENGINE
    audit_topic = f"audit-{pipeline.suffix}"
    pipeline.extra_env = {"RATCHET_LOG_FORMAT": "json", "RATCHET_TOPIC_DECISIONS": decisions_topic,
                          "RATCHET_TOPIC_AUDIT": audit_topic}
    await pipeline.create_topics()
    await ensure_topics(pipeline.bootstrap, [decisions_topic, audit_topic], 1)
    worker = pipeline.start_worker()
    async with VerdictCollector(pipeline.bootstrap, pipeline.topics["topic_verdicts"]) as col, \
            EnvelopeProducer(pipeline.bootstrap, pipeline.topics["topic_ingest"]) as prod:
        train = [run_events("ops", f"train{r}", "abc", priority="critical") for r in range(12)]
        for events in train:
            await prod.send(envelope(events))
        odd = envelope([event("ops", "odd", 0, shape="novel", priority="critical")])
        await prod.send(odd)
        await prod.flush()
        ids = [e.event_id for run in train for e in run] + [odd.events[0].event_id]
        assert not await col.wait_for(ids, 60), pipeline.logs()
        verdicts = {e: vs[0] for e, vs in col.by_event.items()}
    paused = verdicts[odd.events[0].event_id]
    assert paused.action == "pause", paused
    changes = [v for v in verdicts.values() if v.mode_change]
    assert "locked" in {v.mode_change for v in changes}
    non_allow = [v for v in verdicts.values() if v.action != "allow"]

    # the worker's log: JSON lines; one decision line per non-allow verdict, one per change
    # (Python's own warnings, printed before logging is set up, are not log lines)
    lines = [line for line in worker.log().splitlines()
             if line.strip() and "Warning: " not in line]
    records = [json.loads(line) for line in lines]  # every log line is JSON
    logged = [r for r in records if r["logger"] == "ratchet.decisions"]
    decided = [r for r in logged if r["kind"] == "decision"]
    moved = [r for r in logged if r["kind"] == "mode_change"]
    assert sorted(r["event_id"] for r in decided) == sorted(v.event_id for v in non_allow)
    line = next(r for r in decided if r["event_id"] == paused.event_id)
    assert line["message"] == "decision" and line["level"] == "INFO"
    assert (line["project"], line["agent"], line["chain"], line["action"], line["mode"]) == (
        "proj", "ops", paused.chain, "pause", "locked")
    assert line["trace_id"] == odd.trace_id and line["held"] is True
    assert {"source": "markov", "action": "pause"} in line["reasons"]
    assert sorted((r["event_id"], r["change"]) for r in moved) == sorted(
        (v.event_id, v.mode_change) for v in changes)

    async def read(topic: str, want: int) -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=pipeline.bootstrap,
                                    auto_offset_reset="earliest", group_id=None)
        await consumer.start()
        got: list[dict[str, Any]] = []
        try:
            deadline = time.monotonic() + 30
            while len(got) < want and time.monotonic() < deadline:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    for msg in batch:
                        assert msg.key == b"proj"
                        got.append(json.loads(msg.value))
        finally:
            await consumer.stop()
        return got

    # the same records on the decisions topic, keyed by project
    shipped = await read(decisions_topic, len(logged))
    assert sorted((r["kind"], r["event_id"]) for r in shipped) == sorted(
        (r["kind"], r["event_id"]) for r in logged)

    # mode changes are audited for the project
    client = Redis.from_url(pipeline.redis_url)
    try:
        page = await AuditLog(client, pipeline.keys, Settings()).page("proj")
    finally:
        await client.aclose()
    audited = [e for e in page.entries if e.action == "chain.mode_changed"]
    assert sorted(e.details["change"] for e in audited) == sorted(v.mode_change for v in changes)
    assert all(e.actor == "system" and e.target == f"chain:{paused.chain}" for e in audited)
    # ... and published to the audit topic like every other audit entry
    published = await read(audit_topic, len(audited))
    assert sorted((e["action"], e["seq"]) for e in published) == sorted(
        (e.action, e.seq) for e in audited)
