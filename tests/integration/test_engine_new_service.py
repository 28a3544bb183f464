"""A service new to an agent that is established elsewhere acts by the agent's mode.

The new chain itself starts in shadow; without this, an agent locked on its usual services could
send data to a service it never used (exfiltration) and be allowed while that chain learns.
"""

from __future__ import annotations

import uuid
from typing import Any

import redis.asyncio as aioredis

from models.events import IngestEvent
from models.params import EngineParams
from ratchet.engine.engine import Engine
from ratchet.store.keys import Keys

# Small numbers: a chain of identical runs is soft-locked after 3 runs, locked after 6.
FAST = EngineParams(checkpoint_runs=1, min_runs_soft=3, min_runs_locked=6, stability=0.5,
                    stability_large=0.5)


def _run(agent: str, service: str, run: str, steps: list[str]) -> list[IngestEvent]:
    return [
        IngestEvent(
            event_id=uuid.uuid4().hex, agent_id=agent, run_id=run, service=service,
            action=f"{service}.{step}", payload={step: "x"}, project_id="p",
            end_of_run=i == len(steps) - 1,
        )
        for i, step in enumerate(steps)
    ]


async def _establish(engine: Engine, agent: str, runs: int) -> str:
    mode = ""
    for r in range(runs):
        verdicts = await engine.decide(_run(agent, "crm", f"{agent}-crm-{r}", ["find", "read"]))
        mode = verdicts[-1].mode
    return mode


def _engine(redis_client: aioredis.Redis, **kw: Any) -> Engine:
    kw.setdefault("params", FAST)
    return Engine.create(redis_client, keys=Keys(f"ns{uuid.uuid4().hex[:8]}"), rich=True,
                         guardrails=False, **kw)


async def test_new_service_of_a_locked_agent_is_paused_and_not_learned(
    redis_client: aioredis.Redis,
) -> None:
    engine = _engine(redis_client)
    assert await _establish(engine, "a", 12) == "locked"
    [v] = await engine.decide(_run("a", "paste", "a-paste-0", ["upload"]))
    assert v.mode == "shadow" and v.anomalous
    assert v.action == "pause" and v.held  # held back: the new chain does not learn it
    markov = next(r for r in v.reasons if r.source == "markov")
    assert "new to this agent" in str(markov.detail["note"])
    counts = await engine.store.edge_counts(v.chain_tag)
    assert f"{v.edge.from_node}\t{v.edge.to_node}" not in counts


async def test_new_service_of_a_soft_locked_agent_is_flagged(
    redis_client: aioredis.Redis,
) -> None:
    engine = _engine(redis_client)
    assert await _establish(engine, "b", 4) == "soft_lock"
    [v] = await engine.decide(_run("b", "paste", "b-paste-0", ["upload"]))
    assert v.mode == "shadow" and v.action == "flag" and not v.held
    held = _engine(redis_client, params=FAST.replace(protect_flags=True))
    assert await _establish(held, "b2", 4) == "soft_lock"
    [w] = await held.decide(_run("b2", "paste", "b2-paste-0", ["upload"]))
    # protect_flags: the flagged call is not learned until approved
    assert w.action == "flag" and w.held


async def test_a_new_agent_is_not_enforced_and_established_services_keep_their_mode(
    redis_client: aioredis.Redis,
) -> None:
    engine = _engine(redis_client)
    [first] = await engine.decide(_run("c", "crm", "c-crm-0", ["find"]))
    assert first.mode == "shadow" and first.anomalous and first.action == "allow"
    await _establish(engine, "c", 12)
    # the second service, once it has its own footing (min_runs_soft runs), follows its own mode
    for r in range(FAST.min_runs_soft):
        await engine.decide(_run("c", "mail", f"c-mail-{r}", ["send"]))
    [v] = await engine.decide(_run("c", "mail", "c-mail-x", ["forward"]))
    assert v.anomalous and v.mode in ("shadow", "soft_lock") and v.action != "pause"


async def test_what_if_leaves_the_service_record_alone(redis_client: aioredis.Redis) -> None:
    engine = _engine(redis_client)
    await _establish(engine, "d", 12)
    key = engine.store.keys.agent_services("p", "d")
    before = await redis_client.hgetall(key)
    await engine.decide(_run("d", "paste", "d-paste-0", ["upload"]), learn=False)
    assert await redis_client.hgetall(key) == before


async def test_footing_passed_inside_one_batch_is_recorded(redis_client: aioredis.Redis) -> None:
    """A new service that reaches its footing (min_runs_soft runs) inside one batch gets it
    recorded, and then acts by its own mode instead of the agent's other services' mode."""
    engine = _engine(redis_client)
    assert await _establish(engine, "e", 12) == "locked"
    [v] = await engine.decide(_run("e", "mail", "e-mail-0", ["send"]))
    assert v.action == "pause"
    batch = [ev for r in range(1, 5) for ev in _run("e", "mail", f"e-mail-{r}", ["send"])]
    await engine.decide(batch)  # runs 2..5 of the chain in one batch: footing (3) passed
    record = await engine.store.service_modes([("p", "e")])
    assert record[("p", "e")]["mail"][1] >= FAST.min_runs_soft
    [after] = await engine.decide(_run("e", "mail", "e-mail-9", ["send"]))
    # its own mode now (the learned "send" promoted it past shadow), not the agent's locked one
    assert after.mode in ("shadow", "soft_lock") and after.action == "allow"
    # and exactly as if the batch's events had come one by one
    alone = _engine(redis_client)
    assert await _establish(alone, "e", 12) == "locked"
    [_first] = await alone.decide(_run("e", "mail", "e-mail-0", ["send"]))
    for ev in [ev for r in range(1, 5) for ev in _run("e", "mail", f"e-mail-{r}", ["send"])]:
        await alone.decide([ev])
    [one] = await alone.decide(_run("e", "mail", "e-mail-9", ["send"]))
    assert (one.mode, one.action, one.anomalous) == (after.mode, after.action, after.anomalous)
