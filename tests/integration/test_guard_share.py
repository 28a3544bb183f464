"""A tenant's scanning share of a worker (models/guardrails/budget.py ScanShare).

Round 9 of the Dec 4 attack runs: tenant A stored pattern rules that are linear on RE2 but slow
on the text it then sent (each event within the per-event step budget, one token each) and sent
60 events a second; tenant B's verdicts on the same worker took 1.6 s at the median (18 ms
without A's rules). Steps bound one event and one batch; the share bounds a project over time:
once its scans took more than its share, its events get no scan budget (their scans fail closed,
``pattern.scan_limit``) until the share refills — and another project's events in the very same
batch are scanned as before.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import redis.asyncio as aioredis

from models.events import IngestEvent, parse_event
from models.guardrails import parse_policy_toml
from models.guardrails.budget import ScanShare
from ratchet.engine.engine import Engine
from ratchet.store.keys import Keys
from ratchet.store.policies import FixedPolicy

#: Rules RE2 runs in linear time but slowly on random a/b text (its DFA cannot settle), and one
#: that matches B's call.
SLOW = "version = 1\n[guardrails.pattern]\nbuiltin_rules = false\n" + "".join(
    f'[[guardrails.pattern.rules]]\nid = "slow-{i}"\nregex = "[ab]*a[ab]{{{18 + i}}}z"\n'
    for i in range(12)
) + '[[guardrails.pattern.rules]]\nid = "drop"\nregex = "(?i)drop\\\\s+table"\naction = "reject"\n'


def _event(project: str, payload: dict[str, Any]) -> IngestEvent:
    return parse_event({"event_id": str(uuid.uuid4()), "agent_id": f"{project}-bot",
                        "run_id": f"r-{uuid.uuid4().hex[:6]}", "service": "search",
                        "action": "query", "payload": payload}, project)


def _heavy(rng: random.Random) -> dict[str, Any]:
    return {f"k{i}": "".join(rng.choices("ab", k=4_096)) for i in range(3)}


def _rules(verdicts: Any) -> list[list[str]]:
    return [sorted(str(r.detail.get("rule")) for r in v.reasons if r.source.startswith("guard"))
            for v in verdicts]


def _engine(client: aioredis.Redis, share: ScanShare) -> Engine:
    engine = Engine.create(client, keys=Keys(f"s{uuid.uuid4().hex[:8]}"), guardrails=True,
                           policies=FixedPolicy(parse_policy_toml(SLOW)))
    assert engine.guardrails is not None
    engine.guardrails.share = share
    return engine


LIMITED = ["pattern.scan_limit", "pii.scan_limit"]


async def test_a_project_past_its_share_fails_closed_while_another_is_scanned(
    redis_client: aioredis.Redis,
) -> None:
    share = ScanShare(rate=1e-6, burst_s=0.2)
    engine = _engine(redis_client, share)
    rng = random.Random(9)
    await engine.decide([_event("prj_a", {"q": "x"}), _event("prj_b", {})])  # both active
    share.charge("prj_a", 1.0, time.monotonic(), contended=True)  # A's scans took a second
    batch = [_event("prj_a", _heavy(rng)), _event("prj_a", {"q": "DROP TABLE users"}),
             _event("prj_b", {"q": "DROP TABLE users"})]
    heavy, a_drop, b_drop = _rules(await engine.decide(batch))
    assert heavy == LIMITED and a_drop == LIMITED, (heavy, a_drop)  # not scanned: fail closed
    assert b_drop == ["pattern.drop"], b_drop  # B, same batch: scanned as always
    # the control: the same batch while A's share is not spent
    engine = _engine(redis_client, ScanShare(rate=1e-6, burst_s=0.2))
    await engine.decide([_event("prj_a", {"q": "x"}), _event("prj_b", {})])
    rules = _rules(await engine.decide(batch))
    assert rules[1:] == [["pattern.drop"], ["pattern.drop"]], rules


async def test_a_batch_cannot_outrun_the_share(redis_client: aioredis.Redis) -> None:
    """While projects share the worker, a project's batch gets the steps its share has left at
    the worst step rate (0.2 s: 5,000,000 steps) — A's heavy event needs more; alone it gets
    them all."""
    engine = _engine(redis_client, ScanShare(rate=1e-6, burst_s=0.2))
    rng = random.Random(5)
    heavy = _event("prj_a", _heavy(rng))
    got = _rules(await engine.decide([heavy, _event("prj_b", {"q": "DROP TABLE users"})]))
    assert got[0] and set(got[0]) <= set(LIMITED) and got[1] == ["pattern.drop"], got
    alone = _engine(redis_client, ScanShare(rate=1e-6, burst_s=0.2))
    assert _rules(await alone.decide([_event("prj_a", _heavy(rng))])) == [[]]


async def test_a_project_alone_on_the_worker_is_never_held_back(
    redis_client: aioredis.Redis,
) -> None:
    """Work-conserving: while no other project is active, however long A's scans take, and
    what A used alone is not charged to it."""
    share = ScanShare(rate=1e-6, burst_s=1e-3)
    engine = _engine(redis_client, share)
    rng = random.Random(4)
    for _ in range(3):
        got = _rules(await engine.decide([_event("prj_a", _heavy(rng)),
                                          _event("prj_a", {"q": "DROP TABLE users"})]))
        assert got == [[], ["pattern.drop"]], got
    assert share.left("prj_a", time.monotonic()) == 1e-3  # nothing charged while alone
    # B shows up: from now on A's batches get what its (tiny) share has left
    got = _rules(await engine.decide([_event("prj_b", {}), _event("prj_a", _heavy(rng))]))
    assert got == [[], LIMITED], got
