"""A thinly learned action does not open its vocabulary on a locked chain (Dec 4 attack run,
round 5).

A shape never seen for a known action is scored by the action's Witten–Bell escape
(``models/escape.py``): one new key path costs ≈ log2(C/T) + log2(C/X) bits. For an action
learned from a couple of dozen calls that is ≈ 9 bits — under the 14-bit escape floor — and an
allowed call is learned, which raises T and X and cheapens the next new key path. The red team
opened ``contacts.delete`` (≈ 25 calls, always ``{"id": N}``) on a locked chain one step at a
time: ``{"query": "*", "limit": 1000000}`` at 11.3 bits, then ``{"filter": {"all": true},
"hard": true, "audit": false}`` (14.97 bits, paused, before) at 13.1, then ``{"ids": [...],
"purge_backups": true}`` at 8.9 — all allowed and learned.

Now a key path new to an action gets the field escape only from ``field_escape_support`` (100)
learned events of it, and on a locked chain a shape the escape let through does not widen its
action's vocabulary (``freeze_vocabulary``): docs/detection.md, "Detection v4.3"."""

from __future__ import annotations

import random
import uuid
from typing import Any

import redis.asyncio as aioredis

from models.events import IngestEvent
from models.params import EngineParams
from ratchet.engine.engine import Engine
from ratchet.store.keys import Keys

# Small numbers: the chain locks after a few runs.
FAST = EngineParams(checkpoint_runs=5, min_runs_soft=10, min_runs_locked=20, stability=0.5,
                    stability_large=0.5)
ATTACKS: list[dict[str, Any]] = [
    {"id": 7, "hard": True},
    {"query": "*", "limit": 1_000_000},
    {"filter": {"all": True}, "hard": True, "audit": False},
    {"ids": list(range(500)), "purge_backups": True},
]


def _ev(agent: str, run: str, action: str, payload: dict[str, Any], last: bool = False
        ) -> IngestEvent:
    return IngestEvent(event_id=uuid.uuid4().hex, agent_id=agent, run_id=run, service="crm",
                       action=action, payload=payload, project_id="p", end_of_run=last)


def _run(agent: str, run: str, delete: dict[str, Any] | None, cid: int) -> list[IngestEvent]:
    steps: list[tuple[str, dict[str, Any]]] = [
        ("contacts.search", {"query": f"acme {cid}", "limit": 10}),
        ("contacts.read", {"id": cid})]
    if delete is not None:
        steps.append(("contacts.delete", delete))
    steps.append(("contacts.list", {"page": 1}))
    return [_ev(agent, run, a, p, i == len(steps) - 1) for i, (a, p) in enumerate(steps)]


async def _thin_locked(redis_client: aioredis.Redis, agent: str,
                       params: EngineParams = FAST) -> Engine:
    """A locked chain whose ``contacts.delete`` was learned from 25 calls, always ``{"id": N}``."""
    engine = Engine.create(redis_client, keys=Keys(f"th{uuid.uuid4().hex[:8]}"), params=params,
                           guardrails=False)
    rng = random.Random(5)
    deletes = 0
    mode = ""
    for r in range(60):
        cid = rng.randint(1, 10**6)
        delete = {"id": cid} if deletes < 25 and r % 2 == 0 else None
        deletes += delete is not None
        verdicts = await engine.decide(_run(agent, f"{agent}-{r}", delete, cid))
        mode = verdicts[-1].mode
    assert deletes == 25 and mode == "locked"
    return engine


async def test_new_key_paths_on_a_thin_action_are_paused_one_after_another(
    redis_client: aioredis.Redis,
) -> None:
    engine = await _thin_locked(redis_client, "t")
    seen = []
    for k, payload in enumerate(ATTACKS):
        verdicts = await engine.decide(_run("t", f"t-x{k}", payload, 7))
        seen.append((round(verdicts[2].score, 2), verdicts[2].action, verdicts[2].held))
    assert all(action == "pause" and held for _, action, held in seen), seen
    # the learned shape is untouched
    usual = await engine.decide(_run("t", "t-ok", {"id": 8}, 8))
    assert [v.action for v in usual] == ["allow"] * 4, [v.score for v in usual]


async def test_an_escaped_shape_allowed_on_a_locked_chain_does_not_cheapen_the_next(
    redis_url: str,
) -> None:
    # without the support rule the first new key path passes, as in the attack run; it is
    # learned (the same call is no longer escaped) but the action's vocabulary does not grow
    scores: dict[bool, list[float]] = {}
    for freeze in (True, False):
        client = aioredis.Redis.from_url(redis_url)
        try:
            engine = await _thin_locked(client, f"f{int(freeze)}", FAST.replace(
                field_escape_support=0, freeze_vocabulary=freeze))
            seen = []
            for k, payload in enumerate([{"id": 7, "hard": True}, {"id": 7, "hard": True},
                                         {"id": 7, "soft": True}]):
                verdicts = await engine.decide(_run(f"f{int(freeze)}", f"x{k}", payload, 7))
                seen.append(verdicts[2])
            scores[freeze] = [v.score for v in seen]
        finally:
            await client.aclose()
        first, again, other = seen
        assert first.action == "allow" and first.score > 9, first.score
        assert again.action == "allow" and again.score < first.score  # learned
        if freeze:
            # scored as the first one was (the action has a few more events: a little higher)
            assert other.score >= first.score, (first.score, other.score)
    # what the old behaviour did: the second new key path was cheaper than the first
    assert scores[False][2] < scores[False][0], scores
