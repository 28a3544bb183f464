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
SLOW = "version = 1\n" + "".join(
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


async def _second_batch(client: aioredis.Redis, share: ScanShare,
                        *, b_first: bool = True) -> list[list[str]]:
    """A's heavy event (and B's light one), then A's heavy event, A's and B's drop table
    together: the rules of each event of the second batch."""
    engine = Engine.create(client, keys=Keys(f"s{uuid.uuid4().hex[:8]}"), guardrails=True,
                           policies=FixedPolicy(parse_policy_toml(SLOW)))
    assert engine.guardrails is not None
    engine.guardrails.share = share
    rng = random.Random(9)
    first = [_event("prj_a", _heavy(rng))]
    if b_first:
        first.append(_event("prj_b", {"q": "hello"}))
    await engine.decide(first)
    second = [_event("prj_a", _heavy(rng)), _event("prj_a", {"q": "DROP TABLE users"}),
              _event("prj_b", {"q": "DROP TABLE users"})]
    return _rules(await engine.decide(second))


async def test_a_project_past_its_share_fails_closed_while_another_is_scanned(
    redis_client: aioredis.Redis,
) -> None:
    # a share of a millisecond, hardly refilled: A's first heavy event (≈ 20 ms of scanning)
    # spends it, B's light one (≈ 0.1 ms) does not
    heavy, a_drop, b_drop = await _second_batch(redis_client, ScanShare(rate=1e-6, burst_s=1e-3))
    assert heavy == ["pattern.scan_limit", "pii.scan_limit"], heavy
    assert a_drop == heavy, a_drop  # not scanned: the strictest action applies
    assert b_drop == ["pattern.drop"], b_drop  # B, same batch: scanned as always
    # the default share (half a core, a second saved up) scans all of them
    heavy, a_drop, b_drop = await _second_batch(redis_client, ScanShare())
    assert heavy == [] and a_drop == ["pattern.drop"] and b_drop == ["pattern.drop"]


async def test_a_project_alone_on_the_worker_is_never_held_back(
    redis_client: aioredis.Redis,
) -> None:
    """Work-conserving: while no other project is active, however long A's scans take."""
    engine = Engine.create(redis_client, keys=Keys(f"s{uuid.uuid4().hex[:8]}"), guardrails=True,
                           policies=FixedPolicy(parse_policy_toml(SLOW)))
    assert engine.guardrails is not None
    engine.guardrails.share = ScanShare(rate=1e-6, burst_s=1e-6)
    rng = random.Random(4)
    for _ in range(3):
        got = _rules(await engine.decide([_event("prj_a", _heavy(rng)),
                                          _event("prj_a", {"q": "DROP TABLE users"})]))
        assert got == [[], ["pattern.drop"]], got
    # B shows up: A was charged nothing below zero while alone, so only A's scans from now on
    # count against its share
    got = _rules(await engine.decide([_event("prj_b", {"q": "hello"}),
                                      _event("prj_a", _heavy(rng))]))
    assert got == [[], []], got
    got = _rules(await engine.decide([_event("prj_a", {"q": "DROP TABLE users"})]))
    assert got == [["pattern.scan_limit", "pii.scan_limit"]], got
