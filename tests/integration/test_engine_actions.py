"""A node is a payload's shape; the action still counts (docs/design.md, "Actions, not only
shapes"). Two black-box attack runs on Dec 4 got calls allowed on a locked chain by dressing them
in a learned step's shape: a never-learned action (round 3), and a known action where it never
came (round 4: a bulk delete as a run's first call, a send without its draft). Both are a
transition the chain never saw."""

from __future__ import annotations

import uuid
from typing import Any

import redis.asyncio as aioredis

from models.events import IngestEvent
from ratchet.engine.engine import Engine
from ratchet.store.keys import Keys
from tests.integration.engine_support import FAST

#: A workflow whose two mail steps and two crm steps each share nothing but their service.
STEPS: list[tuple[str, dict[str, Any]]] = [
    ("contacts.search", {"query": "acme", "limit": 5}), ("contacts.read", {"id": 7}),
    ("contacts.delete", {"id": 7}),
]


def _event(agent: str, run: str, action: str, payload: dict[str, Any], last: bool = False
           ) -> IngestEvent:
    return IngestEvent(event_id=uuid.uuid4().hex, agent_id=agent, run_id=run, service="crm",
                       action=action, payload=payload, project_id="p", end_of_run=last)


async def _locked(redis_client: aioredis.Redis, agent: str) -> Engine:
    engine = Engine.create(redis_client, keys=Keys(f"na{uuid.uuid4().hex[:8]}"), params=FAST,
                           guardrails=False)
    mode = ""
    for r in range(12):
        steps = STEPS if r % 3 == 0 else STEPS[:2]  # delete after read in a third of the runs
        verdicts = await engine.decide([
            _event(agent, f"{agent}-{r}", a, p, i == len(steps) - 1)
            for i, (a, p) in enumerate(steps)])
        mode = verdicts[-1].mode
    assert mode == "locked"
    return engine


async def test_a_never_learned_action_in_a_learned_shape_is_anomalous(
    redis_client: aioredis.Redis,
) -> None:
    engine = await _locked(redis_client, "a")
    [v] = await engine.decide([_event("a", "a-x", "contacts.purge_all", {"query": "*",
                                                                          "limit": 1})])
    assert v.anomalous and v.action == "pause" and v.held
    assert v.edge.count == 0


async def test_a_known_action_where_it_never_came_is_anomalous_and_not_learned(
    redis_client: aioredis.Redis,
) -> None:
    engine = await _locked(redis_client, "b")
    # a bulk delete as a run's first call, in the first step's shape: the shape transition
    # START → {query, limit} is the chain's most common one, the action never came first
    for k in range(3):
        [v] = await engine.decide([_event("b", f"b-bulk-{k}", "contacts.delete",
                                          {"query": "*", "limit": 1_000_000})])
        assert v.anomalous and v.action == "pause" and v.held, k
    # and delete straight after search (read skipped), in read's shape
    search, delete = await engine.decide([
        _event("b", "b-skip", "contacts.search", {"query": "acme", "limit": 5}),
        _event("b", "b-skip", "contacts.delete", {"id": 7})])
    assert not search.anomalous and search.action == "allow"
    assert delete.anomalous and delete.action == "pause"
    # the usual order is untouched
    usual = await engine.decide([_event("b", "b-ok", a, p, i == 2)
                                 for i, (a, p) in enumerate(STEPS)])
    assert [u.action for u in usual] == ["allow"] * 3
