"""Node labels written by the engine and ``ratchet explain`` / the explainer on a real Redis."""

from __future__ import annotations

import json
import uuid

import aiohttp
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from models.events import IngestEvent, parse_event
from models.labels import MAX_LABEL_BYTES, MAX_PATHS, decode_label
from models.params import EngineParams
from models.verdict import Verdict
from ratchet.engine.engine import Engine
from ratchet.platform.provisioning import create_agent, create_project
from ratchet.sandbox.servers import RedisClusterServer
from ratchet.store.explain import Explainer
from ratchet.store.keys import Keys
from ratchet.store.labels import LabelReader
from ratchet.store.verdicts import VerdictStore
from tests.integration.cli_support import ratchet_cli
from tests.integration.gateway_support import Gateway, Tenant

#: Locked after four runs, no decay (as tests/integration/test_baselines_inspect.py).
FAST = EngineParams(checkpoint_runs=2, min_runs_soft=2, min_runs_locked=4, stability=1.0,
                    stability_large=1.0, decay_rate=0.0, decay_low=0.0, decay_mid=0.0,
                    decay_high=0.0)

LOGIN = {"user": "ann", "password_hash": "x"}
LIST = {"folder": "inbox", "limit": 20}
READ = {"message_id": "m1", "format": "full", "headers": True}
#: Not seen in training: like READ, with an export target and without headers.
EXPORT = {"message_id": "m1", "format": "full", "forward_to": "evil@example.com",
          "attachments": [{"name": "a.pdf"}]}


def _ev(project: str, agent: str, run: str, action: str, payload: dict[str, object],
        end: bool = False) -> IngestEvent:
    return parse_event({"event_id": str(uuid.uuid4()), "agent_id": agent, "run_id": run,
                        "service": "mail", "action": action, "payload": payload,
                        "end_of_run": end}, project)


async def _pause_one(redis: Redis, keys: Keys, project: str = "",
                     agent: str = "mailer") -> tuple[str, Verdict, Engine]:
    """Train an agent to lock, then send a shape it never saw after ``mail.list``."""
    if not project:
        project, _ = await create_project(redis, keys, "explain")
        await create_agent(redis, keys, project, agent)
    engine = Engine.create(redis, keys=keys, params=FAST, guardrails=False)
    for r in range(12):
        await engine.decide([
            _ev(project, agent, f"r{r}", "auth.login", LOGIN),
            _ev(project, agent, f"r{r}", "mail.list", LIST),
            _ev(project, agent, f"r{r}", "mail.read", READ, end=True),
        ])
    verdicts = await engine.decide([
        _ev(project, agent, "bad", "auth.login", LOGIN),
        _ev(project, agent, "bad", "mail.list", LIST),
        _ev(project, agent, "bad", "mail.export", EXPORT),
    ])
    paused = verdicts[-1]
    assert paused.mode == "locked" and paused.action == "pause", paused
    await VerdictStore(redis, keys).save_many(verdicts, 3600)
    return project, paused, engine


async def test_engine_labels_nodes_under_the_chain_tag(redis_client: Redis, keys: Keys) -> None:
    project, paused, engine = await _pause_one(redis_client, keys)
    stored = await redis_client.hgetall(keys.chain_labels(paused.chain_tag))
    labels = {k.decode(): decode_label(v) for k, v in stored.items()}
    assert len(labels) == 4  # login, list, read, export: one label per node
    by_action = {lab.action: lab for lab in labels.values() if lab is not None}
    assert by_action["mail.read"].paths == ("format:str", "headers:bool", "message_id:str")
    assert by_action["mail.export"].service == "mail"
    assert "attachments[].name:str" in by_action["mail.export"].paths
    assert keys.chain_labels(paused.chain_tag).startswith(f"{keys.prefix}:{{c:{paused.chain_tag}}}")
    assert 0 < await redis_client.ttl(keys.chain_labels(paused.chain_tag)) <= 30 * 86_400
    # a reset forgets the labels with the counts
    chain = engine.chain_of(_ev(project, "mailer", "x", "auth.login", LOGIN))
    await engine.reset(chain)
    assert not await redis_client.exists(keys.chain_labels(paused.chain_tag))


async def test_labels_are_bounded_per_chain_and_per_label(redis_client: Redis, keys: Keys) -> None:
    project, _ = await create_project(redis_client, keys, "bounded")
    params = EngineParams(node_cap=8, edge_cap=64)
    engine = Engine.create(redis_client, keys=keys, params=params, guardrails=False)
    wide = {f"key{chr(97 + i // 26)}{chr(97 + i % 26)}": i for i in range(60)}
    events = [_ev(project, "a", "r", "op", {f"only{chr(97 + i)}": 1}) for i in range(20)]
    events.append(_ev(project, "a", "r2", "op", wide))
    await engine.decide(events)
    tag = engine.chain_of(events[0]).tag
    stored = await redis_client.hgetall(keys.chain_labels(tag))
    assert len(stored) == 8  # the node cap, though 21 shapes were sent
    # a fresh chain: one very wide shape is cut at MAX_PATHS paths and says how many it had
    engine2 = Engine.create(redis_client, keys=keys, params=EngineParams(), guardrails=False)
    one = _ev(project, "b", "r", "op", wide)
    await engine2.decide([one])
    labels = await LabelReader(redis_client, keys).all_labels(engine2.chain_of(one).tag)
    (label,) = labels.values()
    assert len(label.paths) == MAX_PATHS and label.total == 60 and label.truncated
    # long keys: the byte budget cuts before the path count does
    long_keys = {("k" * 60) + chr(97 + i): "v" for i in range(20)}
    two = _ev(project, "c", "r", "op", long_keys)
    await engine2.decide([two])
    (label,) = (await LabelReader(redis_client, keys).all_labels(engine2.chain_of(two).tag)).values()
    assert label.total == 20 and 10 <= len(label.paths) < 20
    assert sum(len(p.encode()) for p in label.paths) <= MAX_LABEL_BYTES


async def test_explainer_names_new_and_missing_key_paths(redis_client: Redis, keys: Keys) -> None:
    project, paused, _ = await _pause_one(redis_client, keys)
    explainer = Explainer(redis_client, keys, FAST)
    e = await explainer.explain_event(project, paused.event_id)
    assert e is not None and e.engine_error is None
    assert e.previous.label is not None and e.previous.label.action == "mail.list"
    assert e.current.label is not None and e.current.label.action == "mail.export"
    assert e.nearest is not None and e.nearest.label.action == "mail.read"
    assert e.nearest.new_paths == ("attachments[].name:str", "forward_to:str")
    assert e.nearest.missing_paths == ("headers:bool",)
    assert e.nearest.similarity == 2 / 5
    assert e.new_node and e.anomalous and e.threshold_from == "floor"
    assert await explainer.explain_event(project, "no-such-event") is None


async def test_explain_cli_text_and_json(redis_url: str, key_prefix: str,
                                         redis_client: Redis) -> None:
    keys = Keys(key_prefix)
    project, paused, _ = await _pause_one(redis_client, keys)
    env = {"RATCHET_REDIS_URL": redis_url, "RATCHET_KEY_PREFIX": key_prefix}
    text = ratchet_cli(["explain", paused.event_id, "--project", project], env)
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "verdict: PAUSE — decided by the Markov chain" in out
    assert "previous call: mail mail.list {folder:str, limit:num}" in out
    assert "current call:  mail mail.export {" in out and "never saw" in out
    assert "key paths new in this call:  attachments[].name:str, forward_to:str" in out
    assert "key paths it lacks:          headers:bool" in out
    assert "threshold: the floor, 12 bits" in out and "mode: locked" in out
    assert "guardrails: none fired" in out

    as_json = ratchet_cli(["explain", paused.event_id, "--project", project, "--json"], env)
    doc = json.loads(as_json.stdout)
    assert doc["action"] == "pause" and doc["engine_error"] is None
    assert doc["current"]["label"]["action"] == "mail.export"
    assert doc["nearest"]["new_paths"] == ["attachments[].name:str", "forward_to:str"]
    assert doc["bits"] > doc["threshold"] and doc["threshold_from"] == "floor"

    missing = ratchet_cli(["explain", "nope", "--project", project], env)
    assert missing.returncode == 2 and "has no stored verdict for event nope" in missing.stderr


async def test_explain_says_an_engine_error_is_no_detection(redis_url: str, key_prefix: str,
                                                            redis_client: Redis) -> None:
    keys = Keys(key_prefix)
    project, paused, _ = await _pause_one(redis_client, keys)
    failed = Verdict.from_dict({**paused.to_dict(), "event_id": "err-1", "reasons": [],
                                "anomalous": False, "error": "internal error: KeyError"})
    await VerdictStore(redis_client, keys).save_many([failed], 3600)
    env = {"RATCHET_REDIS_URL": redis_url, "RATCHET_KEY_PREFIX": key_prefix}
    out = ratchet_cli(["explain", "err-1", "--project", project], env)
    assert out.returncode == 0, out.stderr
    assert "NOT A DETECTION" in out.stdout and "internal error: KeyError" in out.stdout
    assert "fail-closed" in out.stdout and "previous call" not in out.stdout


@pytest.mark.kafka
async def test_verdict_api_explains_on_request(gateway: Gateway, tenant: Tenant) -> None:
    _, paused, _ = await _pause_one(gateway.redis, gateway.keys, tenant.project_id,
                                    tenant.agent_id)
    url = f"{gateway.url}/v1/verdicts/{paused.event_id}"
    auth = {"Authorization": f"Bearer {tenant.api_key}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers=auth) as plain:
            assert plain.status == 200 and "explain" not in await plain.json()
        async with http.get(url, params={"explain": "true"}, headers=auth) as resp:
            body = await resp.json()
        assert resp.status == 200, body
        e = body["explain"]
        assert e["action"] == "pause" and e["current"]["label"]["action"] == "mail.export"
        assert e["nearest"]["missing_paths"] == ["headers:bool"]
        assert "key paths new in this call:  attachments[].name:str, forward_to:str" in e["text"]
        async with http.get(url, params={"explain": "maybe"}, headers=auth) as bad:
            problem = await bad.json()
        assert bad.status == 400 and problem["field"] == "explain", problem


@pytest.mark.cluster
async def test_labels_and_explain_on_a_redis_cluster(redis_cluster: RedisClusterServer,
                                                     keys: Keys) -> None:
    """Labels go out with the observe calls on a 3-master cluster (each chain's slot) and the
    explainer reads them back there."""
    client = RedisCluster.from_url(redis_cluster.url)
    await client.initialize()
    try:
        engine = Engine.create(client, keys=keys, params=FAST, guardrails=False)
        agents = [f"agent-{i}" for i in range(6)]
        for r in range(12):
            await engine.decide([e for a in agents for e in (
                _ev("prj_c", a, f"r{r}", "mail.list", LIST),
                _ev("prj_c", a, f"r{r}", "mail.read", READ, end=True))])
        tags = {engine.chain_of(_ev("prj_c", a, "x", "mail.list", LIST)).tag for a in agents}
        assert len({client.get_node_from_key(keys.chain_labels(t)).name for t in tags}) > 1
        for tag in tags:
            assert client.keyslot(keys.chain_labels(tag)) == client.keyslot(
                keys.chain_keys(tag).meta)
            assert len(await LabelReader(client, keys).all_labels(tag)) == 2
        (odd,) = await engine.decide([_ev("prj_c", "agent-0", "bad", "mail.export", EXPORT)])
        e = await Explainer(client, keys, FAST).explain_verdict(odd)
        assert e.current.label is not None and e.current.label.action == "mail.export"
        assert e.previous.kind == "start" and e.nearest is not None
        assert e.nearest.label.action == "mail.list"
    finally:
        await client.aclose()
