"""Guardrail state on a real 3-master Redis Cluster; a cross-slot guardrails call must fail.

All keys of one agent's guardrail state share the agent's hash tag, so one script call per
agent works on a cluster; a call given keys of two agents is refused, which proves the tags.
"""

from __future__ import annotations

import uuid

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, ResponseError

from models.events import IngestEvent, parse_event
from models.guardrails import parse_policy_toml, state_spec
from ratchet.engine.engine import Engine
from ratchet.sandbox.servers import RedisClusterServer
from ratchet.store.guardrails import GuardBatch, GuardItem, GuardStore
from ratchet.store.keys import Keys
from ratchet.store.policies import FixedPolicy

pytestmark = [pytest.mark.asyncio, pytest.mark.cluster]

POLICY = parse_policy_toml(
    "[guardrails.velocity]\nper_run = { window_s = 60, limit = 3 }\n"
    "[guardrails.cost]\nper_agent_daily_limit = 5.0\n"
)


def ev(agent: str, run: str, i: int) -> IngestEvent:
    return parse_event({"event_id": f"{agent}-{run}-{i}-{uuid.uuid4().hex[:6]}",
                        "agent_id": agent, "run_id": run, "service": "crm",
                        "action": "op.read", "payload": {"id": i}, "cost": 1.0}, "p1")


async def test_guardrails_on_cluster(redis_cluster: RedisClusterServer, keys: Keys) -> None:
    client = RedisCluster.from_url(redis_cluster.url)
    await client.initialize()
    try:
        agents = [f"agent{{{i}}}" for i in range(12)]  # braces in ids must not break tagging
        tags = [keys.guard_tag("p1", a) for a in agents]
        nodes = {client.get_node_from_key(keys.guard_agent_keys(t).window).name for t in tags}
        assert len(nodes) == 3  # spread over all masters
        run_keys = keys.guard_run_keys(tags[0], "r{x}")
        assert len({client.keyslot(k) for k in
                    [*run_keys.as_list(), keys.guard_agent_keys(tags[0]).cost]}) == 1
        engine = Engine.create(client, keys=keys, policies=FixedPolicy(POLICY))
        batch = [ev(a, run, i) for run in ("r1", "r2") for i in range(3) for a in agents]
        verdicts = await engine.decide(batch)
        by_agent: dict[str, list[list[str]]] = {}
        for v in verdicts:
            by_agent.setdefault(v.agent_id, []).append(
                [str(r.detail["rule"]) for r in v.reasons if r.source != "markov"]
            )
        for a in agents:  # 6 events of 1.0 each: the 6th is over the daily 5.0
            assert by_agent[a] == [[], [], [], [], [], ["cost.per_agent_daily"]]
        again = await engine.decide([ev(a, "r1", 9) for a in agents])
        assert all([str(r.detail["rule"]) for r in v.reasons if r.source != "markov"]
                   == ["velocity.per_run", "cost.per_agent_daily"] for v in again)
    finally:
        await client.aclose()


async def test_cross_slot_guardrails_call_fails(
    redis_cluster: RedisClusterServer, keys: Keys
) -> None:
    client = RedisCluster.from_url(redis_cluster.url)
    try:
        store = GuardStore(client, keys)
        tag_a, tag_b = keys.guard_tag("p1", "alpha"), keys.guard_tag("p1", "beta")
        assert client.keyslot(keys.guard_agent_keys(tag_a).window) != client.keyslot(
            keys.guard_agent_keys(tag_b).window)
        k, args = store.call(GuardBatch(tag_a, [GuardItem("e1", "r", 1000, "n")],
                                        state_spec(POLICY)))
        mixed = [keys.guard_agent_keys(tag_b).window, *k[1:]]
        with pytest.raises((ResponseError, RedisClusterException)) as info:
            await store.scripts["guardrails"](keys=mixed, args=args)
        assert "slot" in str(info.value).lower()
    finally:
        await client.aclose()
