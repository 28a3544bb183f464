"""A Redis Cluster master dies under traffic; its replica takes over. Nothing is restarted.

A 3-master Redis Cluster with one replica per master (6 ``redis-server`` processes, nodes time
out after 2 s), Tansu, a gateway and a worker as processes (``RATCHET_REDIS_CLUSTER=true``).
Agents stream single events that wait for their verdicts; a third of the way in, the master that
holds the project's data (API key side, agent secrets: every admission reads it) is killed with
SIGKILL. Callers that get ``503`` send the same event (same id) again after ``Retry-After``, as a
client does. Then:

- no call is answered ``500`` (or anything but 200, 202 and 503), and every 503 carries
  ``Retry-After``; the failover was seen (503s did happen) and ended (the replica is master);
- after the failover every event is answered 200 with its verdict within the wait (gateway,
  worker and the gateway's reply listener recovered by themselves);
- every event has exactly one stored verdict and was decided at most once (``verdicts`` topic),
  and the stored transition counts equal a plain recount of the events (nothing lost, nothing
  counted twice: a redelivery is recognised by its stored answer).

The reply listener alone, across a failover of the shard its channel lives on (manual
``CLUSTER FAILOVER`` and SIGKILL), is ``test_reply_listener_follows_its_shard_over_failover``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from gateway.replies import ReplyListener
from gateway.waiters import Waiters
from models.nodes import chain_for, node_id
from models.params import COUNT_SCALE, EngineParams
from models.skeleton import skeleton_hash
from models.verdict import Edge, Verdict
from models.verdict_wire import decode_verdict_message, encode_compact
from ratchet.kafka.topics import ensure_topics
from ratchet.platform.provisioning import create_agent, create_project
from ratchet.sandbox.client import Answer, RatchetClient
from ratchet.sandbox.process import (
    FAST_GROUP_ENV,
    ChildProcess,
    gateway_process,
    wait_http_ready,
    worker_env,
)
from ratchet.sandbox.servers import RedisClusterServer, RedisServer, free_port
from ratchet.store.chains import EngineStore
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient, connect
from ratchet.store.replies import ReplyPublisher
from ratchet.store.verdicts import VerdictStore
from tests.integration.gateway_support import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.cluster, pytest.mark.slow,
              pytest.mark.timeout(300)]

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
AGENTS = tuple(f"fo-{i}" for i in range(24))
RUNS = 2  # per agent; four events per run, one event at a time
SHAPES = ("a", "b", "c", "b")
PAYLOADS = {"a": {"q": "x"}, "b": {"ids": [1, 2]}, "c": {"to": "user-7", "body": "hi"}}
WAIT_MS = 10_000
#: Longest a caller keeps sending one event again while the cluster fails over, seconds.
GIVE_UP_S = 60.0


@pytest.fixture
def replicated() -> Iterator[RedisClusterServer]:
    """A cluster of its own: the test changes its topology."""
    with RedisClusterServer(masters=3, replicas=1) as cluster:
        yield cluster


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


def node_at(cluster: RedisClusterServer, port: int) -> RedisServer:
    return next(n for n in cluster.nodes if n.port == port)


async def master_port(client: RedisClient, key: str) -> int:
    """The port of the master that owns ``key``'s slot (the cluster client's fresh view)."""
    assert isinstance(client, RedisCluster)
    client._initialize = True  # discover now: the view is the cluster's, not a cached one
    await client.initialize()
    return int(client.get_node_from_key(key).port)


async def wait_promoted(cluster: RedisClusterServer, dead: int, key_slot: int,
                        timeout_s: float = 30.0) -> int:
    """Wait until a live node reports the cluster ok and ``key_slot`` on another master."""
    deadline = time.monotonic() + timeout_s
    live = [n for n in cluster.nodes if n.port != dead]
    while time.monotonic() < deadline:
        for node in live:
            plain = connect(node.url)
            try:
                info = await plain.execute_command("CLUSTER INFO")
                if info["cluster_state"] == "ok":
                    for start, end, master, *_ in await plain.execute_command("CLUSTER SLOTS"):
                        if start <= key_slot <= end and int(master[1]) != dead:
                            return int(master[1])
            except Exception:  # noqa: BLE001, S110  (a node may refuse while it fails over)
                pass
            finally:
                await plain.aclose()
        await asyncio.sleep(0.2)
    raise AssertionError(f"no replica took slot {key_slot} over within {timeout_s:.0f} s")


@dataclass
class Caller:
    """One agent's client side: what it sent and every answer it got."""

    client: RatchetClient
    sent: list[dict[str, Any]] = field(default_factory=list)
    answers: list[tuple[float, Answer]] = field(default_factory=list)
    final: dict[str, Answer] = field(default_factory=dict)


class Chaos:
    """Kills the master of the project's slot once a third of the events went through."""

    def __init__(self, cluster: RedisClusterServer, port: int, total: int) -> None:
        self.cluster = cluster
        self.port = port
        self.total = total
        self.done = 0
        self.killed_at: float | None = None

    def event_done(self) -> None:
        self.done += 1
        if self.killed_at is None and self.done >= self.total // 3:
            self.killed_at = time.monotonic()
            node_at(self.cluster, self.port).kill()


async def send_until_taken(caller: Caller, event: dict[str, Any]) -> Answer:
    """Send ``event``; on 503 send it again (same id) after ``Retry-After``, as a client does."""
    deadline = time.monotonic() + GIVE_UP_S
    while True:
        try:
            answer = await caller.client.send(event, WAIT_MS)
        except (TimeoutError, aiohttp.ClientError) as exc:  # the gateway never dies here
            raise AssertionError(f"the gateway did not answer: {exc!r}") from exc
        caller.answers.append((time.monotonic(), answer))
        if answer.status != 503 or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))


async def stream(caller: Caller, agent: str, chaos: Chaos) -> None:
    for r in range(RUNS):
        for ev in run_events(agent, r):
            caller.final[ev["event_id"]] = await send_until_taken(caller, ev)
            caller.sent.append(ev)
            chaos.event_done()


@pytest.fixture
async def engine_file(tmp_path: Path) -> AsyncIterator[Path]:
    path = tmp_path / "engine.toml"
    path.write_text(COUNTING_ENGINE)
    yield path


async def test_master_killed_under_traffic(
    replicated: RedisClusterServer, kafka_bootstrap: str, key_prefix: str, engine_file: Path,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    port = free_port()
    env = worker_env(
        redis_url=replicated.url, redis_cluster="true", kafka_bootstrap=kafka_bootstrap,
        key_prefix=key_prefix, topic_ingest=f"ingest-{suffix}",
        topic_verdicts=f"verdicts-{suffix}", topic_feedback=f"feedback-{suffix}",
        topic_audit=f"audit-{suffix}", topic_partitions=2, worker_id=f"fo-{suffix}",
        worker_web_port=0, gateway_host="127.0.0.1", gateway_port=port,
        engine_config=str(engine_file), max_wait_ms=WAIT_MS,
    )
    env.update(FAST_GROUP_ENV)
    await ensure_topics(kafka_bootstrap, [env["RATCHET_TOPIC_INGEST"],
                                          env["RATCHET_TOPIC_VERDICTS"],
                                          env["RATCHET_TOPIC_FEEDBACK"],
                                          env["RATCHET_TOPIC_AUDIT"]], 2)
    keys = Keys(key_prefix)
    client = connect(replicated.url, cluster=True)
    gateway = worker = None
    try:
        project, api_key = await create_project(client, keys, "failover", "high_volume")
        secrets = {a: (await create_agent(client, keys, project, a))[1] for a in AGENTS}
        project_key = keys.project(project)
        doomed = await master_port(client, project_key)
        slot = key_slot(project_key.encode())

        gateway = gateway_process(env).start()
        worker = ChildProcess(env, name="worker").start()
        base = f"http://127.0.0.1:{port}"
        await wait_http_ready(base + "/readyz", gateway, 60)

        def logs() -> str:
            # every error line first, whole (an unhandled error's traceback scrolls out of the
            # tail, and pytest cuts a long message in the middle)
            text = {"gateway": gateway.log() if gateway else "",
                    "worker": worker.log() if worker else ""}
            errors = "\n".join(line for log in text.values() for line in log.splitlines()
                               if '"level":"ERROR"' in line)
            return (f"--- errors ---\n{errors[-8000:]}\n"
                    f"--- gateway ---\n{text['gateway'][-2000:]}\n"
                    f"--- worker ---\n{text['worker'][-2000:]}")

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            callers = {a: Caller(RatchetClient(base, api_key, a, secrets[a], project_id=project,
                                               session=session)) for a in AGENTS}
            deadline = time.monotonic() + 90  # the worker joined its group and answers
            while True:
                probe = {"event_id": f"probe-{uuid.uuid4().hex}", "run_id": "probe",
                         "service": "probe", "action": "ping", "payload": {},
                         "end_of_run": True}
                if (await callers[AGENTS[0]].client.send(probe, 3000)).status == 200:
                    break
                assert time.monotonic() < deadline, logs()

            chaos = Chaos(replicated, doomed, RUNS * len(AGENTS) * len(SHAPES))
            await asyncio.gather(*(stream(callers[a], a, chaos) for a in AGENTS))
            assert chaos.killed_at is not None
            promoted = await wait_promoted(replicated, doomed, slot)
            assert promoted != doomed

            answers = [(t, a) for c in callers.values() for t, a in c.answers]
            statuses = Counter(a.status for _, a in answers)
            assert set(statuses) <= {200, 202, 503}, (statuses, [
                a.body for _, a in answers if a.status not in (200, 202, 503)], logs())
            unavailable = [a for _, a in answers if a.status == 503]
            assert unavailable, f"no call saw the failover: nothing was tested {statuses}"
            assert all(a.headers.get("Retry-After") == "1" for a in unavailable), unavailable[0]
            assert all(a.body["error"] == "unavailable" for a in unavailable), unavailable[0]
            first_503 = min(t for t, a in answers if a.status == 503)
            last_503 = max(t for t, a in answers if a.status == 503)
            assert first_503 >= chaos.killed_at

            # after the failover, everything works without a restart: fresh events are
            # answered 200 with their verdict on the first call
            for agent in AGENTS:
                for ev in run_events(agent, RUNS):
                    answer = await callers[agent].client.send(ev, WAIT_MS)
                    assert answer.status == 200, (answer.status, answer.body, logs())
                    assert answer.body["status"] == "decided", answer.body
                    callers[agent].sent.append(ev)
                    callers[agent].final[ev["event_id"]] = answer

            sent = [ev for c in callers.values() for ev in c.sent]
            ids = [ev["event_id"] for ev in sent]
            assert len(set(ids)) == len(ids)
            final = {eid: a for c in callers.values() for eid, a in c.final.items()}
            assert all(final[eid].status in (200, 202) for eid in ids), Counter(
                final[eid].status for eid in ids)

            # every event: one stored verdict, decided at most once
            verdicts = VerdictStore(client, keys)
            deadline = time.monotonic() + 60
            missing = ids
            while missing:
                assert time.monotonic() < deadline, f"{len(missing)} without a verdict\n{logs()}"
                missing = [e for e in missing if await verdicts.get(project, e) is None]
                if missing:
                    await asyncio.sleep(0.3)
            records = await read_topic(kafka_bootstrap, env["RATCHET_TOPIC_VERDICTS"],
                                       idle_s=2.0, timeout_s=30)
            decided: Counter[str] = Counter()
            answered: Counter[str] = Counter()
            for rec in records:
                assert rec.value is not None
                for v in decode_verdict_message(rec.value).verdicts:
                    answered[v.event_id] += 1
                    decided[v.event_id] += not v.duplicate
            assert all(answered[e] >= 1 for e in ids)
            assert max(decided[e] for e in ids) == 1, [e for e in ids if decided[e] > 1]

            # stored counts equal a plain recount: nothing lost, nothing counted twice
            store = EngineStore(client, keys, EngineParams())
            for tag, counts in recount(project, sent).items():
                assert await store.edge_counts(tag) == dict(counts), f"chain {tag}\n{logs()}"
        print(f"\nfailover: {len(ids)} events, statuses {dict(statuses)}; 503 from "
              f"{first_503 - chaos.killed_at:.1f} s to {last_503 - chaos.killed_at:.1f} s "
              f"after the kill; master :{doomed} → :{promoted}")
    finally:
        for proc in (gateway, worker):
            if proc is not None:
                proc.stop()
        await client.aclose()


def _reply(event_id: str) -> bytes:
    v = Verdict(event_id, "a", "r", "c", "shadow", False, 0.0, 0.0, Edge("^", "n", 0.0, 0.0, 0.0),
                "allow", (), time.time(), trace_id="t", project_id="p")
    return encode_compact("p", "a", "t", time.time(), [v])


async def _delivered(listener: ReplyListener, publisher: ReplyPublisher, event_id: str,
                     timeout_s: float) -> float:
    """Publish a reply to ``listener``'s route until its waiter wakes; seconds it took."""
    started = time.monotonic()
    waiter = listener.waiters.add("p", event_id)
    while time.monotonic() - started < timeout_s:
        try:
            await publisher.publish([(listener.route, _reply(event_id))])
        except Exception:  # noqa: BLE001, S110  (the shard is failing over: publish again)
            pass
        done, _ = await asyncio.wait([asyncio.ensure_future(asyncio.shield(waiter))], timeout=0.5)
        if done:
            return time.monotonic() - started
    raise AssertionError(f"no reply reached the listener within {timeout_s:.0f} s")


@pytest.mark.parametrize("how", ["manual", "sigkill"])
async def test_reply_listener_follows_its_shard_over_failover(
    replicated: RedisClusterServer, keys: Keys, how: str
) -> None:
    client = connect(replicated.url, cluster=True)
    publisher_client = connect(replicated.url, cluster=True)
    listener = ReplyListener(client, keys, Waiters())
    try:
        await listener.start()
        publisher = ReplyPublisher(publisher_client, Keys(keys.prefix))
        assert await _delivered(listener, publisher, "before", 5) < 5
        master = await master_port(client, listener.channel)
        slot = key_slot(listener.channel.encode())
        replicas = [n for n in replicated.nodes if await _replica_of(n, master)]
        replica = replicas[0]
        if how == "manual":  # the replica takes over, coordinated, nothing lost
            plain = connect(replica.url)
            try:
                assert await plain.execute_command("CLUSTER FAILOVER") in (b"OK", "OK", True)
            finally:
                await plain.aclose()
        else:
            node_at(replicated, master).kill()
        promoted = await wait_promoted(replicated, master, slot)
        assert promoted == replica.port
        # the listener, never restarted, hears replies published to the new master
        took = await _delivered(listener, publisher, "after", 30)
        print(f"\nreply listener ({how}): heard again {took:.1f} s after the promotion")
    finally:
        await listener.stop()
        await client.aclose()
        await publisher_client.aclose()


async def _replica_of(node: RedisServer, master: int) -> bool:
    plain = connect(node.url)
    try:
        info = await plain.info("replication")
        return info.get("role") == "slave" and int(info.get("master_port", 0)) == master
    finally:
        await plain.aclose()
