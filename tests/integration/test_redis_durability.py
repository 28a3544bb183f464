"""Redis durability: a restart mid-stream with AOF keeps every count; without persistence the
learned baselines are gone (docs/operations.md, "Redis durability").

The stream is driven straight into the engine (``engine.decide``, as a worker does, retrying a
batch that failed while Redis was down). Redis is killed with SIGKILL while decide calls are in
flight — no shutdown, no final fsync — and started again on the same port and directory.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from pathlib import Path

import pytest
from redis.asyncio import Redis

from models.errors import UnavailableError
from models.events import IngestEvent
from models.nodes import chain_for, node_id
from models.params import COUNT_SCALE, EngineParams, load_params
from models.skeleton import skeleton_hash
from ratchet.engine.engine import Engine
from ratchet.sandbox.servers import RedisServer
from ratchet.store.chains import EngineStore
from ratchet.store.keys import Keys
from ratchet.store.redis import connect

pytestmark = pytest.mark.timeout(180)

#: No decay, big caps, shadow forever: stored counts must equal a plain recount of the stream.
COUNTING = load_params("""
[engine]
decay_low = 0.0
decay_mid = 0.0
decay_high = 0.0
decay_rate = 0.0
min_runs_soft = 1000000
min_runs_locked = 1000000
node_cap = 100000
edge_cap = 100000
""")
AOF = ("--appendonly", "yes", "--appendfsync", "always")
AGENTS = 4
RUNS = 40  # per agent; 4 events per run → 640 events
SHAPES = ("a", "b", "c", "b")
PAYLOADS = {"a": {"q": "x"}, "b": {"ids": [1, 2]}, "c": {"to": "user-7", "body": "hi"}}


def stream(project: str) -> dict[str, list[list[IngestEvent]]]:
    """Per agent: its batches (one run = one batch of four events)."""
    out: dict[str, list[list[IngestEvent]]] = {}
    for a in range(AGENTS):
        agent = f"agent-{a}"
        out[agent] = [
            [IngestEvent(event_id=f"{agent}-{r}-{i}-{uuid.uuid4().hex[:6]}", agent_id=agent,
                         run_id=f"{agent}-run-{r}", service="crm", action=f"op.{shape}",
                         payload=PAYLOADS[shape], project_id=project,
                         end_of_run=i == len(SHAPES) - 1)
             for i, shape in enumerate(SHAPES)]
            for r in range(RUNS)
        ]
    return out


def recount(events: list[IngestEvent]) -> dict[str, Counter[str]]:
    """Transitions a plain reading of the events implies, per chain tag."""
    counts: dict[str, Counter[str]] = {}
    last: dict[tuple[str, str], str] = {}
    for ev in events:
        tag = chain_for(ev.project_id, ev.agent_id, ev.service, ev.priority).tag
        node = node_id(skeleton_hash(ev.payload), service=ev.service, action=ev.action,
                       rich=False)
        c = counts.setdefault(tag, Counter())
        src = last.get((tag, ev.run_id), "^")
        c[f"{src}\t{node}"] += COUNT_SCALE
        last[(tag, ev.run_id)] = "^" if ev.end_of_run else node
        if ev.end_of_run:
            c[f"{node}\t$"] += COUNT_SCALE
    return counts


class Restarter:
    """Kills the server after ``after`` decided batches and starts it again ``down_s`` later."""

    def __init__(self, server: RedisServer, after: int, down_s: float) -> None:
        self.server = server
        self.after = after
        self.down_s = down_s
        self.done = 0
        self.failed_calls = 0
        self.restarted = asyncio.Event()
        self._kill = asyncio.Event()

    def batch_done(self) -> None:
        self.done += 1
        if self.done == self.after:
            self._kill.set()

    async def run(self) -> None:
        await self._kill.wait()
        self.server.kill()  # SIGKILL with decide calls in flight
        await asyncio.sleep(self.down_s)
        self.server = RedisServer(port=self.server.port, workdir=self.server.workdir,
                                  extra_args=self.server.extra_args).start()
        self.restarted.set()


async def drive(engine: Engine, batches: list[list[IngestEvent]], restarter: Restarter) -> None:
    """Decide the agent's batches in order; a batch that fails (Redis down) is retried whole."""
    for batch in batches:
        while True:
            try:
                await engine.decide(batch)
                break
            except UnavailableError:
                restarter.failed_calls += 1
                await asyncio.sleep(0.05)
        restarter.batch_done()


async def run_stream(restarter: Restarter, prefix: str) -> list[IngestEvent]:
    """Stream every batch while ``restarter`` kills and restarts Redis half-way; returns the
    events sent."""
    keys = Keys(prefix)
    client = connect(restarter.server.url, timeout_s=0.5)
    engine = Engine.create(client, keys=keys, params=COUNTING, guardrails=False)
    batches = stream(f"prj_{prefix}")
    killer = asyncio.create_task(restarter.run())
    try:
        await asyncio.gather(*(drive(engine, b, restarter) for b in batches.values()))
        await killer
    finally:
        killer.cancel()
        await client.aclose()
    events = list(itertools.chain.from_iterable(
        itertools.chain.from_iterable(b) for b in batches.values()))
    return events


def restarter_for(server: RedisServer) -> Restarter:
    return Restarter(server, after=AGENTS * RUNS // 2, down_s=1.0)


async def stored_counts(url: str, prefix: str, tags: list[str]) -> dict[str, dict[str, int]]:
    client = Redis.from_url(url)
    try:
        store = EngineStore(client, Keys(prefix), EngineParams())
        return {tag: await store.edge_counts(tag) for tag in tags}
    finally:
        await client.aclose()


async def test_aof_restart_mid_stream_keeps_every_count(tmp_path: Path, key_prefix: str) -> None:
    server = RedisServer(extra_args=AOF, workdir=str(tmp_path)).start()
    restarter = restarter_for(server)
    try:
        check = Redis.from_url(server.url)
        assert (await check.config_get("appendonly"))["appendonly"] == "yes"
        assert (await check.config_get("appendfsync"))["appendfsync"] == "always"
        await check.aclose()
        events = await run_stream(restarter, key_prefix)
        assert restarter.restarted.is_set()
        assert restarter.failed_calls > 0, "the kill hit no decide call: nothing was tested"
        want = recount(events)
        got = await stored_counts(restarter.server.url, key_prefix, list(want))
        assert len(want) == AGENTS
        for tag, counts in want.items():
            assert got[tag] == dict(counts), f"chain {tag}: stored counts differ from a recount"
        assert sum(sum(c.values()) for c in want.values()) == len(events) * COUNT_SCALE + (
            AGENTS * RUNS * COUNT_SCALE)  # one edge per event plus one end edge per run
    finally:
        restarter.server.stop()  # the restarted server (or the first, if it never restarted)
        server.stop()


async def test_without_persistence_a_restart_loses_the_baselines(key_prefix: str) -> None:
    server = RedisServer().start()  # the fixtures' default: no RDB, no AOF
    restarter = restarter_for(server)
    try:
        check = Redis.from_url(server.url)
        assert (await check.config_get("appendonly"))["appendonly"] == "no"
        await check.aclose()
        events = await run_stream(restarter, key_prefix)
        assert restarter.restarted.is_set() and restarter.failed_calls > 0
        want = recount(events)
        got = await stored_counts(restarter.server.url, key_prefix, list(want))
        for tag, counts in want.items():
            total_want, total_got = sum(counts.values()), sum(got[tag].values())
            # only what was learned after the restart is left: about half of every baseline
            assert 0 < total_got < total_want, f"chain {tag}: {total_got} of {total_want}"
        assert sum(sum(c.values()) for c in got.values()) <= (
            sum(sum(c.values()) for c in want.values()) * 0.75)
    finally:
        restarter.server.stop()  # the restarted server (or the first, if it never restarted)
        server.stop()
