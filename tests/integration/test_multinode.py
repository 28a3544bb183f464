"""Scale-out end to end: a 3-master Redis Cluster, Tansu, 2 gateways, 2 workers and the webhook
dispatcher as real processes, run with the settings of the shipped Kubernetes layout
(``deploy/k8s/settings.yaml``, ``RATCHET_REDIS_CLUSTER=true``) and provisioned through the CLI.

Signed events of several agents stream through both gateways (batches, and single events that
wait for their verdict); one worker and one gateway are killed with SIGKILL mid-stream, and the
clients of the dead gateway retry on the other one with the same event ids. Then:

- every event sent was accepted and has exactly one stored verdict; on the ``verdicts`` topic
  every event is answered and none has two answers that are not a redelivery's duplicate
  (nothing decided twice);
- the stored transition counts equal a plain recount of the events sent (no decay, shadow mode);
- every caller that waited on a gateway that stayed up got its verdict (200, ``decided``);
- a guardrail pauses an event sent through gateway 1, the pause is listed and approved through
  gateway 2 (a fresh instance, as a rolled pod), the worker learns the approved transition, and
  the dispatcher delivers the pause to the project's webhook; ``ratchet baselines list`` shows
  the chains.

Only public behaviour is used (HTTP, the CLI, stored state read through a cluster client).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from models.nodes import chain_for, node_id
from models.params import COUNT_SCALE, EngineParams
from models.skeleton import skeleton_hash
from models.verdict_wire import decode_verdict_message
from ratchet.sandbox.client import Answer, RatchetClient
from ratchet.sandbox.process import (
    FAST_GROUP_ENV,
    ChildProcess,
    gateway_process,
    wait_http_ready,
)
from ratchet.sandbox.servers import RedisClusterServer, free_port
from ratchet.store.chains import EngineStore
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient, connect
from ratchet.store.verdicts import VerdictStore
from tests.integration.cli_support import field as out_field
from tests.integration.cli_support import ratchet_cli
from tests.integration.gateway_support import read_topic
from tests.integration.webhook_helpers import Receiver

pytestmark = [pytest.mark.kafka, pytest.mark.cluster, pytest.mark.timeout(240)]

K8S_SETTINGS = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "settings.yaml"
#: Shipped settings this test replaces, and why: the test broker is one plaintext Tansu node
#: (no TLS/SASL, replication 1); topics, consumer groups and ports are this run's own.
REPLACED = frozenset({
    "RATCHET_KAFKA_BOOTSTRAP", "RATCHET_KAFKA_SECURITY_PROTOCOL", "RATCHET_KAFKA_SSL_CAFILE",
    "RATCHET_TOPIC_REPLICATION_FACTOR", "RATCHET_TOPIC_INGEST", "RATCHET_TOPIC_VERDICTS",
    "RATCHET_TOPIC_FEEDBACK", "RATCHET_TOPIC_AUDIT", "RATCHET_GATEWAY_HOST",
    "RATCHET_GATEWAY_PORT", "RATCHET_WORKER_ID", "RATCHET_WORKER_WEB_PORT",
    "RATCHET_WEBHOOK_GROUP", "RATCHET_WEBHOOK_METRICS_PORT",
})
#: No decay, big caps, shadow forever: stored counts must equal a plain recount.
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
POLICY = """
[[guardrails.pattern.rules]]
id = "wire-transfer"
paths = ["memo"]
regex = '(?i)\\bwire\\b'
action = "pause"
"""
#: Keys spread over both workers' partitions: all twelve on the survivor's half by chance is 1 in 4,096.
AGENTS = tuple(f"bot-{i}" for i in range(12))
RUNS = 12  # per agent; four events per run
SHAPES = ("a", "b", "c", "b")
PAYLOADS = {"a": {"q": "x"}, "b": {"ids": [1, 2]}, "c": {"to": "user-7", "body": "hi"}}
WAIT_MS = 20_000  # longer than a worker's eviction and the rebalance after it


def k8s_settings() -> dict[str, str]:
    doc = yaml.safe_load(K8S_SETTINGS.read_text())
    data: dict[str, str] = {k: str(v) for k, v in doc["data"].items()}
    assert data["RATCHET_REDIS_CLUSTER"] == "true"
    assert REPLACED <= set(data) | {"RATCHET_KAFKA_SSL_CAFILE"}
    return data


@dataclass
class Cluster:
    """The processes of the test and how to reach them."""

    env: dict[str, str]
    redis_url: str
    keys: Keys
    gateways: list[ChildProcess] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    workers: list[ChildProcess] = field(default_factory=list)
    dispatcher: ChildProcess | None = None

    def base(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"

    async def start_gateway(self, i: int) -> None:
        env = {**self.env, "RATCHET_GATEWAY_PORT": str(self.ports[i])}
        gw = gateway_process(env, name=f"gateway{i}").start()
        if i < len(self.gateways):
            self.gateways[i] = gw
        else:
            self.gateways.append(gw)
        await wait_http_ready(self.base(i) + "/readyz", gw, 60)

    def logs(self) -> str:
        parts = [(f"gateway{i}", g) for i, g in enumerate(self.gateways)]
        parts += [(f"worker{i}", w) for i, w in enumerate(self.workers)]
        if self.dispatcher is not None:
            parts.append(("dispatcher", self.dispatcher))
        return "\n".join(f"--- {n} ---\n{p.log()[-1500:]}" for n, p in parts)

    def stop(self) -> None:
        for proc in [*self.gateways, *self.workers, self.dispatcher]:
            if proc is not None:
                proc.stop()


@pytest.fixture
def engine_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "engine.toml"
    path.write_text(COUNTING_ENGINE)
    yield path


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as r:
        yield r


def cli(env: dict[str, str], *args: str) -> Any:
    return asyncio.to_thread(ratchet_cli, list(args), env)


def run_events(agent: str, r: int) -> list[dict[str, Any]]:
    return [{"event_id": f"{agent}-{r}-{i}-{uuid.uuid4().hex[:8]}", "agent_id": agent,
             "run_id": f"{agent}-run-{r}", "service": "crm", "action": f"op.{shape}",
             "payload": PAYLOADS[shape], "end_of_run": i == len(SHAPES) - 1}
            for i, shape in enumerate(SHAPES)]


def recount(project: str, events: list[dict[str, Any]]) -> dict[str, Counter[str]]:
    """Transitions a plain reading of the events implies, per chain tag."""
    counts: dict[str, Counter[str]] = {}
    last: dict[tuple[str, str], str] = {}
    for ev in events:
        tag = chain_for(project, ev["agent_id"], ev["service"], "normal").tag
        node = node_id(skeleton_hash(ev["payload"]), service=ev["service"],
                       action=ev["action"], rich=False)
        c = counts.setdefault(tag, Counter())
        c[f"{last.get((tag, ev['run_id']), '^')}\t{node}"] += COUNT_SCALE
        last[(tag, ev["run_id"])] = "^" if ev["end_of_run"] else node
        if ev["end_of_run"]:
            c[f"{node}\t$"] += COUNT_SCALE
    return counts


@dataclass
class Agent:
    """One agent's client side: which gateway it uses, what it sent and what waiting got."""

    name: str
    clients: list[RatchetClient]
    sent: list[dict[str, Any]] = field(default_factory=list)
    #: (gateway index, answer) of every call that waited, on a gateway that stayed up.
    waited: list[tuple[int, Answer]] = field(default_factory=list)
    retried: int = 0


class Chaos:
    """Kills one worker (SIGKILL) after a quarter of the runs, then one gateway while it holds
    a caller waiting for a verdict of the dead worker's partitions.

    The worker dies while every agent is between runs (the streams wait at a barrier), so no
    call started before the kill is still waiting; from then on waiting runs go through
    gateway 1, and the first call there still unanswered after ``HELD_S`` (a verdict takes
    milliseconds unless its partition has no live owner) has been published by that gateway
    and waits for its verdict — the kill lands on it, and its caller retries the same event
    on gateway 0."""

    def __init__(self, cluster: Cluster, agents: int, runs: int) -> None:
        self.cluster = cluster
        self.total = agents * runs
        self.active = agents  # streams not finished
        self.done = 0
        self.idle = 0  # streams waiting at the barrier
        self.go = asyncio.Event()
        self.go.set()
        self.gateway_dead = False
        self.worker_killed = False

    def run_done(self) -> None:
        self.done += 1
        if not self.worker_killed and self.done >= self.total // 4:
            self.go.clear()

    async def before_run(self) -> None:
        if self.go.is_set():
            return
        self.idle += 1
        self._kill_worker_when_idle()
        await self.go.wait()

    def leave(self) -> None:
        self.active -= 1
        if not self.go.is_set():
            self._kill_worker_when_idle()

    def _kill_worker_when_idle(self) -> None:
        if self.idle == self.active:
            self.worker_killed = True
            self.cluster.workers[1].kill()
            self.go.set()

    @property
    def hunting(self) -> bool:
        """Between the worker kill and the gateway kill."""
        return self.worker_killed and not self.gateway_dead

    def kill_gateway(self) -> None:
        self.gateway_dead = True
        self.cluster.gateways[1].kill()


#: How long a waiting call on gateway 1 stays unanswered before the chaos kills that gateway.
HELD_S = 0.5


async def call(agent: Agent, chaos: Chaos, gw: int, send: Any,
               waits: bool = False) -> tuple[int, Answer]:
    """``send(client)`` on gateway ``gw``; when that gateway is dead (or dies under the call),
    again on gateway 0 — same events, same ids, as a client retries."""
    if chaos.gateway_dead:
        gw = 0
    try:
        task = asyncio.ensure_future(send(agent.clients[gw]))
        if gw == 1 and waits and chaos.hunting:
            done, _ = await asyncio.wait({task}, timeout=HELD_S)
            if not done and chaos.hunting:
                chaos.kill_gateway()
        return gw, await task
    except (TimeoutError, aiohttp.ClientError):
        assert gw == 1 and chaos.gateway_dead, "gateway 0 never dies"
        agent.retried += 1
        return 0, await send(agent.clients[0])


async def stream(agent: Agent, chaos: Chaos, rng: random.Random) -> None:
    for r in range(RUNS):
        await chaos.before_run()
        events = run_events(agent.name, r)
        gw = rng.randrange(2)
        if r % 3 == 2:  # one event at a time, each waiting for its verdict
            for ev in events:
                gw = 1 if chaos.hunting else gw
                used, answer = await call(agent, chaos, gw, lambda c, e=ev: c.send(e, WAIT_MS),
                                          waits=True)
                assert answer.status in (200, 202), answer.body
                if not (used == 1 and chaos.gateway_dead):
                    agent.waited.append((used, answer))
        else:
            _, answer = await call(agent, chaos, gw, lambda c, e=events: c.send_batch(e))
            assert answer.status == 200 and answer.body["accepted"] == len(events), answer.body
        agent.sent.extend(events)
        chaos.run_done()
    chaos.leave()


async def wait_for_verdicts(client: RedisClient, keys: Keys, project: str,
                            ids: list[str], cluster: Cluster) -> None:
    deadline = time.monotonic() + 60
    missing = ids
    while missing:
        assert time.monotonic() < deadline, f"{len(missing)} without a verdict\n{cluster.logs()}"
        verdicts = VerdictStore(client, keys)
        found = [await verdicts.get(project, eid) is not None for eid in missing]
        missing = [eid for eid, ok in zip(missing, found, strict=True) if not ok]
        if missing:
            await asyncio.sleep(0.3)


async def test_scale_out_on_redis_cluster(
    redis_cluster: RedisClusterServer, kafka_bootstrap: str, key_prefix: str,
    engine_file: Path, receiver: Receiver,
) -> None:
    started = time.monotonic()
    suffix = uuid.uuid4().hex[:8]
    shipped = k8s_settings()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    env.update({k: v for k, v in shipped.items() if k not in REPLACED})
    env.update({
        # replaced (REPLACED)
        "RATCHET_KAFKA_BOOTSTRAP": kafka_bootstrap, "RATCHET_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
        "RATCHET_TOPIC_REPLICATION_FACTOR": "1",
        "RATCHET_TOPIC_INGEST": f"ingest-{suffix}", "RATCHET_TOPIC_VERDICTS": f"verdicts-{suffix}",
        "RATCHET_TOPIC_FEEDBACK": f"feedback-{suffix}", "RATCHET_TOPIC_AUDIT": f"audit-{suffix}",
        "RATCHET_GATEWAY_HOST": "127.0.0.1", "RATCHET_WORKER_ID": f"workers-{suffix}",
        "RATCHET_WORKER_WEB_PORT": "0", "RATCHET_WEBHOOK_GROUP": f"hooks-{suffix}",
        "RATCHET_WEBHOOK_METRICS_PORT": str(free_port()),
        # what the Secret and the mounted engine file hold in Kubernetes
        "RATCHET_REDIS_URL": redis_cluster.url, "RATCHET_ENGINE_CONFIG": str(engine_file),
        # test-only: own key namespace, fast group membership, long waits, a loopback webhook
        "RATCHET_KEY_PREFIX": key_prefix, "RATCHET_MAX_WAIT_MS": str(WAIT_MS),
        "RATCHET_WEBHOOKS_ALLOW_LOOPBACK": "1", **FAST_GROUP_ENV,
    })
    keys = Keys(key_prefix)
    cluster = Cluster(env, redis_cluster.url, keys, ports=[free_port(), free_port()])
    client = connect(redis_cluster.url, cluster=True)
    await client.initialize()
    try:
        # provisioning, through the CLI as an operator would (topics as the k8s Job does)
        done = await cli(env, "topics", "create")
        assert done.returncode == 0, done.stderr
        done = await cli(env, "projects", "create", "--name", "scale-out", "--tier",
                         "high_volume")
        assert done.returncode == 0, done.stderr
        project, api_key = out_field(done.stdout, "project_id"), out_field(done.stdout, "api_key")
        secrets: dict[str, str] = {}
        for name in (*AGENTS, "payer"):
            done = await cli(env, "agents", "create", "--project", project, "--agent-id", name)
            assert done.returncode == 0, done.stderr
            secrets[name] = out_field(done.stdout, "agent_secret")

        for i in range(2):
            await cluster.start_gateway(i)
        cluster.workers = [ChildProcess(env, name=f"worker{i}").start() for i in range(2)]
        cluster.dispatcher = ChildProcess(env, name="dispatcher",
                                          argv=("-m", "ratchet", "webhooks", "dispatch")).start()

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=40)) as session:
            def clients(name: str) -> list[RatchetClient]:
                return [RatchetClient(cluster.base(i), api_key, name, secrets[name],
                                      project_id=project, session=session) for i in range(2)]

            admin = {"Authorization": f"Bearer {api_key}"}
            async with session.post(cluster.base(0) + "/v1/webhooks", headers=admin,
                                    json={"url": receiver.url, "actions": ["pause"]}) as r:
                assert r.status == 201, f"{await r.text()}\n{cluster.logs()}"
            payer = Agent("payer", clients("payer"))
            assert (await payer.clients[0].put_policy(POLICY)).status == 200

            # the workers answer (group joined) before the stream starts
            deadline = time.monotonic() + 90
            while True:
                probe = {"event_id": f"probe-{uuid.uuid4().hex}", "run_id": "probe",
                         "service": "probe", "action": "ping", "payload": {}, "end_of_run": True}
                if (await payer.clients[0].send(probe, 3000)).status == 200:
                    break
                assert time.monotonic() < deadline, cluster.logs()
            ready_at = time.monotonic()

            agents = [Agent(name, clients(name)) for name in AGENTS]
            chaos = Chaos(cluster, len(AGENTS), RUNS)
            rng = random.Random(7)
            await asyncio.gather(*(stream(a, chaos, rng) for a in agents))
            assert chaos.worker_killed
            assert chaos.gateway_dead, ("no waiting call on gateway 1 was held for a verdict of "
                                        "the killed worker's partitions: nothing was tested")
            retried = sum(a.retried for a in agents)
            assert retried >= 1, "the gateway kill hit no call in flight: nothing was tested"
            streamed_at = time.monotonic()

            # every event has exactly one stored verdict, decided once
            sent = list(itertools.chain.from_iterable(a.sent for a in agents))
            ids = [ev["event_id"] for ev in sent]
            assert len(set(ids)) == len(ids) == RUNS * len(AGENTS) * len(SHAPES)
            await wait_for_verdicts(client, keys, project, ids, cluster)
            records = await read_topic(kafka_bootstrap, env["RATCHET_TOPIC_VERDICTS"],
                                       idle_s=2.0, timeout_s=30)
            answered: Counter[str] = Counter()
            decided: Counter[str] = Counter()
            for rec in records:
                assert rec.value is not None
                for v in decode_verdict_message(rec.value).verdicts:
                    answered[v.event_id] += 1
                    decided[v.event_id] += not v.duplicate
            # every event answered on the topic; none decided twice (a worker killed after
            # storing a decision but before publishing it leaves only the dedup answer)
            assert all(answered[eid] >= 1 for eid in ids)
            assert max(decided[eid] for eid in ids) == 1
            verdicts = VerdictStore(client, keys)
            stored = [await verdicts.get(project, eid) for eid in ids]
            assert [s["event_id"] if s else None for s in stored] == ids

            # stored counts equal a plain recount of what was sent
            store = EngineStore(client, keys, EngineParams())
            want = recount(project, sent)
            assert len(want) == len(AGENTS)
            for tag, counts in want.items():
                assert await store.edge_counts(tag) == dict(counts), f"chain {tag}"

            # every caller that waited on a gateway that stayed up got its verdict
            waited = [w for a in agents for w in a.waited]
            assert {gw for gw, _ in waited} == {0, 1}
            for gw, answer in waited:
                assert answer.status == 200 and answer.body["status"] == "decided", (gw, answer)
                assert answer.body["verdict"]["event_id"] == answer.body["event_id"]

            # pause through gateway 1, approve through a new gateway 2, the worker learns it
            odd = {"event_id": f"pay-{uuid.uuid4().hex}", "run_id": "pay-1", "service": "bank",
                   "action": "transfer", "payload": {"memo": "WIRE 5000 to acct 9"},
                   "end_of_run": True}
            paused = await payer.clients[0].send(odd, WAIT_MS)
            assert paused.status == 200, paused.body
            verdict = paused.body["verdict"]
            assert verdict["action"] == "pause", verdict
            await cluster.start_gateway(1)  # the replacement of the killed gateway
            listed = await payer.clients[1].approvals()
            assert odd["event_id"] in {v["event_id"] for v in listed.body["items"]}
            edge = f"{verdict['edge']['from']}\t{verdict['edge']['to']}"
            assert edge not in await store.edge_counts(verdict["chain_tag"])
            approved = await payer.clients[1].decide(str(odd["event_id"]), "approve", "expected")
            assert approved.status in (200, 202), approved.body
            deadline = time.monotonic() + 30
            while (await store.edge_counts(verdict["chain_tag"])).get(edge) != COUNT_SCALE:
                assert time.monotonic() < deadline, cluster.logs()
                await asyncio.sleep(0.2)
            again = await payer.clients[0].approvals()
            assert odd["event_id"] not in {v["event_id"] for v in again.body["items"]}

            # the dispatcher (on the cluster too) delivered the pause to the webhook
            deadline = time.monotonic() + 30
            while not receiver.requests:
                assert time.monotonic() < deadline, cluster.logs()
                await asyncio.sleep(0.2)
            delivered = orjson.loads(receiver.requests[0].body)
            assert delivered["verdict"]["event_id"] == odd["event_id"]

        done = await cli(env, "baselines", "list", "--project", project)
        assert done.returncode == 0, done.stderr
        for name in (*AGENTS, "payer"):
            assert name in done.stdout
        print(f"\nmultinode: {len(ids)} events, {len(waited)} waited, {retried} retried after "
              f"the gateway kill; ready {ready_at - started:.1f} s, stream "
              f"{streamed_at - ready_at:.1f} s, total {time.monotonic() - started:.1f} s")
    finally:
        cluster.stop()
        await client.aclose()
