"""The engine's hot-loop shortcuts change nothing it answers: node ids from the structure memo
(models/shape_memo.py) are the reference ids, verdicts built slot by slot equal the dataclass's,
and the edge-score histogram observed once per batch counts every decided (non-redelivered)
event exactly once."""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from benchmarks.engine import make_events
from models.escape import path_digest
from models.labels import key_paths
from models.nodes import node_id
from models.shape_memo import memo_clear
from models.skeleton import skeleton, skeleton_hash
from models.verdict import Verdict
from ratchet.engine.engine import Engine
from ratchet.store.keys import Keys


def _score_count() -> float:
    return REGISTRY.get_sample_value("ratchet_edge_score_bits_count") or 0.0


async def test_node_ids_verdicts_and_score_metric(redis_client: aioredis.Redis) -> None:
    memo_clear()
    events = make_events(300, agents=3, seed=7)
    for rich in (False, True):
        engine = Engine.create(redis_client, keys=Keys(f"hl{uuid.uuid4().hex[:8]}"), rich=rich,
                               guardrails=False)
        markov, guard, digests = engine._nodes(events)
        for ev, m, g, d in zip(events, markov, guard, digests, strict=True):
            assert d == path_digest(key_paths(skeleton(ev.payload)))  # shipped rule reads paths
            skel = skeleton_hash(ev.payload)
            full = node_id(skel, service=ev.service, action=ev.action, rich=True)
            assert g == full
            assert m == (full if rich else skel)
            assert engine.node_of(ev) == m
        before = _score_count()
        verdicts = await engine.decide(events)
        assert _score_count() - before == len(events)
        for ev, v in zip(events, verdicts, strict=True):
            assert type(v) is Verdict
            assert (v.event_id, v.agent_id, v.run_id, v.project_id) == (
                ev.event_id, ev.agent_id, ev.run_id, ev.project_id)
            assert v.chain == engine.chain_of(ev).label
            assert v.chain_tag == engine.chain_of(ev).tag
            assert Verdict.from_dict(v.to_dict()).to_dict() == v.to_dict()
        again = await engine.decide(events[:50])  # redelivered: answered, not counted again
        assert _score_count() - before == len(events)
        assert all(v.duplicate for v in again)
        assert [v.edge for v in again] == [v.edge for v in verdicts[:50]]
