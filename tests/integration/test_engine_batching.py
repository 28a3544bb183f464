"""The same events give the same verdicts however they are batched.

A worker's batches are whatever its Kafka messages held and a gateway's envelopes what a client
sent, so a verdict must not depend on the cut. The hard case is the mode floor: a service new to
an agent acts by the agent's other services' mode, and those change mode inside a batch; a fresh
agent's services also gain their footing at about the same time and floor each other
(models/mode_floors.py). The traffic here is the demo's generator with small footing numbers, so
agents go through every mode change within a few hundred runs.
"""

from __future__ import annotations

import uuid
from collections import Counter as Tally
from collections.abc import Sequence
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import Counter

from models.events import IngestEvent, parse_event
from models.guardrails import parse_policy_toml
from models.overrides import parse_override
from models.params import EngineParams
from ratchet.engine.engine import SPECULATE_EVENTS, Engine, agent_parts
from ratchet.sandbox.traffic import iter_events
from ratchet.store.engine_overrides import save_override
from ratchet.store.keys import Keys
from ratchet.store.policies import FixedPolicy
from ratchet.store.round import Deferred, Round
from ratchet.telemetry.metrics import FLOOR_ROUNDS, SPECULATED

# Footing after 12 runs, checkpoints every 4: every chain changes mode several times.
QUICK = EngineParams(checkpoint_runs=4, min_runs_soft=12, min_runs_locked=24)


def _events(seed: int) -> list[IngestEvent]:
    return [parse_event(e, None, allow_offline_fields=True)
            for e in iter_events(agents=6, runs_per_agent=70, warmup_runs=40, seed=seed)]


#: Guardrails that hold events back (pause), so what is learned depends on them too.
HOLDING = """
[guardrails.velocity]
action = "pause"
per_run = { window_s = 60, limit = 9 }

[guardrails.loop]
action = "pause"
max_repeats = 3

[guardrails.cost]
action = "pause"
per_run_limit = 0.001
"""


async def _verdicts(
    client: aioredis.Redis, events: Sequence[IngestEvent], size: int, guardrails: bool,
    *, worker: bool = False, policy: str | None = None, agent_events: int | None = None,
) -> list[tuple[Any, ...]]:
    """``worker``: as a worker decides a small batch — observed beside the guardrail state,
    the learning calls sent afterwards with the verdict save (Engine._speculated)."""
    engine = Engine.create(client, keys=Keys(f"b{uuid.uuid4().hex[:8]}"), params=QUICK,
                           guardrails=guardrails, event_time=True,
                           policies=FixedPolicy(parse_policy_toml(policy)) if policy else None)
    if agent_events is not None:
        engine.agent_events = agent_events
    out = []
    for start in range(0, len(events), size):
        writes = Deferred() if worker else None
        verdicts = await engine.decide(events[start:start + size], writes=writes)
        if writes is not None:
            assert writes.confirmed(await Round(client).extend_run(writes.ops))
        for v in verdicts:
            out.append((v.event_id, v.action, v.mode, v.anomalous, v.held, round(v.score, 9),
                        round(v.threshold, 9), v.mode_change,
                        tuple(sorted((r.source, r.action) for r in v.reasons))))
    return out


def _total(counter: Counter) -> float:
    return sum(s.value for m in counter.collect() for s in m.samples
               if s.name.endswith("_total"))


def _rounds() -> float:
    return _total(FLOOR_ROUNDS)


@pytest.mark.parametrize("seed", [3])
async def test_verdicts_do_not_depend_on_the_batching(
    redis_client: aioredis.Redis, seed: int
) -> None:
    events = _events(seed)
    before = _rounds()
    big = await _verdicts(redis_client, events, 600, guardrails=True)
    # the batches of 600 went through the floor rounds: the case this test is about happened
    assert _rounds() > before
    assert len(big) == len(events)
    assert {v[2] for v in big} == {"shadow", "soft_lock", "locked"}
    for size in (1, 9):
        assert await _verdicts(redis_client, events, size, guardrails=True) == big
        assert await _verdicts(redis_client, events, size, guardrails=True, worker=True) == big
    # an agent's events split into parts of 25 inside each batch of 600 (Engine.agent_events):
    # what a worker does with one agent's flood
    assert await _verdicts(redis_client, events, 600, guardrails=True, agent_events=25,
                           worker=True) == big


def test_agent_parts_keep_each_agents_order_and_bound_its_events() -> None:
    events = _events(3)[:500]
    parts = agent_parts(events, 25)
    assert sorted(i for p in parts for i in p) == list(range(len(events)))
    for part in parts:
        assert part == sorted(part)
        per_agent = Tally((events[i].project_id, events[i].agent_id) for i in part)
        assert max(per_agent.values()) <= 25
    for agent in {(e.project_id, e.agent_id) for e in events}:
        mine = [i for p in parts for i in p if (events[i].project_id, events[i].agent_id) == agent]
        assert mine == sorted(mine)  # an agent's parts follow one another in input order
    assert agent_parts(events, 10_000) == [list(range(len(events)))]


async def test_a_mode_floor_differs_inside_one_batch(redis_client: aioredis.Redis) -> None:
    """Not a vacuous agreement: some shadow events are acted on by a borrowed mode, and whether
    they are depends on where in the batch they fall."""
    events = _events(3)
    verdicts = await _verdicts(redis_client, events, 600, guardrails=False)
    borrowed = [v for v in verdicts if v[2] == "shadow" and v[1] != "allow"]
    assert borrowed, "no shadow event was acted on by its agent's mode"
    assert await _verdicts(redis_client, events, 1, guardrails=False) == verdicts


def _lagging(lag: int, runs: int = 30) -> list[IngestEvent]:
    """Agent ``x``: a steady ``crm`` run every time (soft-locked at its 12th run) and a ``paste``
    call with a new shape now and then (anomalous, its chain in shadow). ``lag`` 2: paste in
    every other run (its chain cannot gain its footing while crm does: it only waits for crm);
    ``lag`` 1: paste in every run from the second (both gain their footing in the same batch and
    floor each other: the observe calls stop and go on in rounds)."""
    out = []
    for r in range(runs):
        steps = [("crm", "crm.find", {"q": "x"}), ("crm", "crm.read", {"id": "1"})]
        if (lag == 2 and r % 2 == 0) or (lag == 1 and r >= 1):
            steps.append(("paste", "paste.upload", {f"field{r}": "x"}))
        for i, (service, action, payload) in enumerate(steps):
            out.append(IngestEvent(
                event_id=uuid.uuid4().hex, agent_id="x", run_id=f"x-{r}", service=service,
                action=action, payload=payload, project_id="p", ts=1_767_225_600.0 + r + i / 10,
                end_of_run=i == len(steps) - 1,
            ))
    return out


@pytest.mark.parametrize("lag", [2, 1])
async def test_a_new_service_is_floored_from_the_event_its_sibling_is_promoted(
    redis_client: aioredis.Redis, lag: int
) -> None:
    events = _lagging(lag)
    one_by_one = await _verdicts(redis_client, events, 1, guardrails=False)
    floored = [v for v, e in zip(one_by_one, events, strict=True)
               if e.service == "paste" and v[2] == "shadow" and v[1] == "flag"]
    assert floored, "no paste call was flagged by crm's soft-lock"
    for size in (len(events), 7):
        assert await _verdicts(redis_client, events, size, guardrails=False) == one_by_one
        speculated = _total(SPECULATED)
        assert await _verdicts(redis_client, events, size, guardrails=False,
                               worker=True) == one_by_one
        if size <= SPECULATE_EVENTS:  # the worker's small-batch path did run
            assert _total(SPECULATED) > speculated


async def test_guardrails_that_hold_events_back_do_not_depend_on_the_batching(
    redis_client: aioredis.Redis,
) -> None:
    """Paused by a guardrail = held back from learning: velocity, loop and cost windows are
    counted event by event in a batch as across batches."""
    events = _events(5)
    big = await _verdicts(redis_client, events, 600, guardrails=True, policy=HOLDING)
    paused = {r[0] for v in big for r in v[8] if r[1] == "pause"}
    assert {"guardrail:velocity", "guardrail:loop", "guardrail:cost"} <= paused, paused
    for size in (1, 9):
        assert await _verdicts(redis_client, events, size, guardrails=True,
                               policy=HOLDING) == big
        assert await _verdicts(redis_client, events, size, guardrails=True, policy=HOLDING,
                               worker=True) == big


async def test_a_project_override_of_the_footing_is_the_one_floors_follow(
    redis_client: aioredis.Redis,
) -> None:
    """The engine's own min_runs_soft is 30; the project's override says 12 (with faster
    checkpoints). Floors, dependencies and records follow the project's number — the one the
    observe script uses — so batching still changes nothing."""
    events = _events(3)
    override = parse_override({"checkpoint_runs": 6, "min_runs_soft": 12,
                               "min_runs_locked": 24})

    async def run(size: int) -> list[tuple[Any, ...]]:
        keys = Keys(f"o{uuid.uuid4().hex[:8]}")
        await save_override(redis_client, keys, "demo", override, actor="test", now=0.0)
        engine = Engine.create(redis_client, keys=keys, guardrails=False, event_time=True,
                               project_overrides=True)
        out = []
        for start in range(0, len(events), size):
            for v in await engine.decide(events[start:start + size]):
                out.append((v.event_id, v.action, v.mode, v.anomalous, v.held))
        return out

    big = await run(600)
    assert {v[2] for v in big} == {"shadow", "soft_lock", "locked"}  # the override applied
    assert any(v[2] == "shadow" and v[1] != "allow" for v in big)  # floors were at work
    assert await run(1) == big
