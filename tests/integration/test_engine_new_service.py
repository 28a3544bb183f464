"""A service new to an agent that is established elsewhere acts by the agent's mode.

The new chain itself starts in shadow; without this, an agent locked on its usual services could
send data to a service it never used (exfiltration) and be allowed while that chain learns.
"""

from __future__ import annotations

import dataclasses
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
    # the second service, once it left shadow by its own footing (min_runs_soft runs that
    # taught it something: here a person approves its first, paused call) and stability,
    # follows its own mode — the locked one it learned under, not a laxer one
    [p0] = await engine.decide(_run("c", "mail", "c-mail-0", ["send"]))
    assert p0.action == "pause" and p0.held
    assert (await engine.feedback(p0.chain_tag, p0.run_id, p0.event_id, "approve")).applied
    for r in range(1, FAST.min_runs_soft):
        [ok] = await engine.decide(_run("c", "mail", f"c-mail-{r}", ["send"]))
        assert ok.action == "allow" and not ok.held
    [v] = await engine.decide(_run("c", "mail", "c-mail-x", ["forward"]))
    assert v.anomalous and v.mode == "locked" and v.action == "pause"
    crm = await engine.decide(_run("c", "crm", "c-crm-x", ["find", "read"]))
    assert [(w.mode, w.action) for w in crm] == [("locked", "allow")] * 2


async def test_paused_runs_never_approved_give_a_new_service_no_footing(
    redis_client: aioredis.Redis,
) -> None:
    """Runs whose every event was paused (never learned) are no footing: however many of them
    an agent sends to a service it never used, that service stays floored by the agent's mode
    — once, min_runs_soft such runs set it free (Dec 4 attack run: 30 paused uploads, then the
    31st and any new shape after it allowed in shadow)."""
    engine = _engine(redis_client)
    assert await _establish(engine, "x", 12) == "locked"
    for r in range(3 * FAST.min_runs_soft):
        [v] = await engine.decide(_run("x", "paste", f"x-paste-{r}", ["upload"]))
        assert v.action == "pause" and v.held, r
    [odd] = await engine.decide(_run("x", "paste", "x-paste-odd", ["dump_all"]))
    assert odd.anomalous and odd.action == "pause"
    record = await engine.store.service_modes([("p", "x")])
    assert record[("p", "x")]["paste"] == (0, 0)  # no footing, still shadow
    # the same with the runs sent in one batch
    batch = [ev for r in range(3 * FAST.min_runs_soft)
             for ev in _run("x", "paste", f"x-paste-b{r}", ["upload"])]
    assert {v.action for v in await engine.decide(batch)} == {"pause"}


async def test_one_approved_call_repeated_does_not_lift_the_floor(
    redis_client: aioredis.Redis,
) -> None:
    """Learned runs alone do not lift a floor: it holds while the new chain is in shadow (Dec 4
    attack run, round 5: one approved call repeated 35 times gave the new service of a locked
    agent its footing, and the chain, still in shadow, then allowed anything). Here the new
    chain can never settle (stability 0), so it stays in shadow however many runs it learns."""
    keys = Keys(f"ns{uuid.uuid4().hex[:8]}")
    engine = Engine.create(redis_client, keys=keys, rich=True, guardrails=False, params=FAST)
    assert await _establish(engine, "f", 12) == "locked"
    never = FAST.replace(stability=0.0, stability_large=0.0)
    unsettled = Engine.create(redis_client, keys=keys, rich=True, guardrails=False, params=never)
    [v] = await unsettled.decide(_run("f", "mail", "f-mail-0", ["send"]))
    assert v.action == "pause"
    assert (await unsettled.feedback(v.chain_tag, v.run_id, v.event_id, "approve")).applied
    for r in range(1, 4 * FAST.min_runs_soft):
        [same] = await unsettled.decide(_run("f", "mail", f"f-mail-{r}", ["send"]))
        assert same.action == "allow" and not same.anomalous, r
    record = await unsettled.store.service_modes([("p", "f")])
    assert record[("p", "f")]["mail"][0] == 0  # still shadow, footing or not
    [odd] = await unsettled.decide(_run("f", "mail", "f-mail-odd", ["dump_all"]))
    assert odd.mode == "shadow" and odd.anomalous
    assert odd.action == "pause" and odd.held  # floored by the locked crm chain
    # the same in one batch: the repeats and the odd call together
    batch = [ev for r in range(4 * FAST.min_runs_soft)
             for ev in _run("f", "mail", f"f-mail-b{r}", ["send"])]
    batch += _run("f", "mail", "f-mail-bodd", ["export_all"])
    verdicts = await unsettled.decide(batch)
    assert [w.action for w in verdicts[:-1]] == ["allow"] * (len(batch) - 1)
    assert verdicts[-1].anomalous and verdicts[-1].action == "pause"


async def test_a_new_chain_made_unlearnable_under_a_floor_still_leaves_shadow_locked(
    redis_client: aioredis.Redis,
) -> None:
    """Dec 4 attack run, round 6: one approved call to a new service, repeated, then thirty
    calls sending subsets of its keys — new shapes the escape lets through and the chain learns
    — made the chain *unlearnable*, and it left shadow soft-locked, flagging (and learning) what
    the locked agent would have paused. Under a floor only such shapes can make a chain
    unlearnable, so it leaves shadow at the floor's mode all the same. Shipped defaults."""
    import itertools

    engine = _engine(redis_client, params=EngineParams())
    assert await _establish(engine, "u", 140) == "locked"

    def call(run: str, action: str, payload: dict[str, Any]) -> list[IngestEvent]:
        return [IngestEvent(event_id=uuid.uuid4().hex, agent_id="u", run_id=run,
                            service="storage", action=action, payload=payload, project_id="p",
                            end_of_run=True)]

    full = {k: "x" for k in ("name", "size", "kind", "owner", "tags")}
    [v] = await engine.decide(call("u-0", "files.upload", full))
    assert v.action == "pause"
    assert (await engine.feedback(v.chain_tag, v.run_id, v.event_id, "approve")).applied
    for r in range(1, 23):
        [same] = await engine.decide(call(f"u-{r}", "files.upload", full))
        assert same.action == "allow", r
    subsets = [c for n in (2, 3, 4) for c in itertools.combinations(sorted(full), n)][:30]
    for i, keys in enumerate(subsets):
        await engine.decide(call(f"u-s{i}", "files.upload", {k: "x" for k in keys}))
    mode = "shadow"
    for r in range(60):
        [w] = await engine.decide(call(f"u-m{r}", "files.upload", full))
        mode = w.mode
        if mode != "shadow":
            break
    assert mode == "locked"
    [odd] = await engine.decide(call("u-x", "files.delete_all", {"all": True}))
    assert odd.anomalous and odd.action == "pause"


async def test_a_critical_chain_is_floored_by_its_services_normal_chain(
    redis_client: aioredis.Redis,
) -> None:
    """A critical call gets a chain of its own; while that chain has no footing it acts by the
    agent's mode — its own service's normal chain included — not by plain shadow (Dec 4
    attack run: "priority": "critical" on a locked service allowed any call)."""
    engine = _engine(redis_client)
    assert await _establish(engine, "k", 12) == "locked"
    crit = [dataclasses.replace(ev, priority="critical")
            for ev in _run("k", "crm", "k-crit-0", ["drop_database"])]
    [v] = await engine.decide(crit)
    assert v.chain.endswith("!critical")
    assert v.anomalous and v.action == "pause" and v.held


async def test_what_if_leaves_the_service_record_alone(redis_client: aioredis.Redis) -> None:
    engine = _engine(redis_client)
    await _establish(engine, "d", 12)
    key = engine.store.keys.agent_services("p", "d")
    before = await redis_client.hgetall(key)
    await engine.decide(_run("d", "paste", "d-paste-0", ["upload"]), learn=False)
    assert await redis_client.hgetall(key) == before


async def test_leaving_shadow_inside_one_batch_is_recorded(redis_client: aioredis.Redis) -> None:
    """A new service that leaves shadow (min_runs_soft learned runs, settled) inside one batch
    gets its mode recorded — the floor it acted by, locked: it learned under it, and a lower
    mode would let its next anomalies through (Dec 4 attack run, round 5: one approved call
    repeated 35 times, then anything allowed or only flagged)."""
    engine = _engine(redis_client)
    assert await _establish(engine, "e", 12) == "locked"
    [v] = await engine.decide(_run("e", "mail", "e-mail-0", ["send"]))
    assert v.action == "pause"
    assert (await engine.feedback(v.chain_tag, v.run_id, v.event_id, "approve")).applied
    batch = [ev for r in range(1, 5) for ev in _run("e", "mail", f"e-mail-{r}", ["send"])]
    await engine.decide(batch)  # runs 2..5 of the chain in one batch: it leaves shadow
    record = await engine.store.service_modes([("p", "e")])
    assert record[("p", "e")]["mail"][0] == 2
    [after] = await engine.decide(_run("e", "mail", "e-mail-9", ["send"]))
    assert after.mode == "locked" and after.action == "allow"
    [odd] = await engine.decide(_run("e", "mail", "e-mail-odd", ["forward_all"]))
    assert odd.mode == "locked" and odd.anomalous and odd.action == "pause" and odd.held
    # and exactly as if the batch's events had come one by one
    alone = _engine(redis_client)
    assert await _establish(alone, "e", 12) == "locked"
    [first] = await alone.decide(_run("e", "mail", "e-mail-0", ["send"]))
    assert (await alone.feedback(first.chain_tag, first.run_id, first.event_id,
                                 "approve")).applied
    for ev in [ev for r in range(1, 5) for ev in _run("e", "mail", f"e-mail-{r}", ["send"])]:
        await alone.decide([ev])
    [one] = await alone.decide(_run("e", "mail", "e-mail-9", ["send"]))
    assert (one.mode, one.action, one.anomalous) == (after.mode, after.action, after.anomalous)


async def test_a_new_service_of_a_soft_locked_agent_leaves_shadow_soft_locked(
    redis_client: aioredis.Redis,
) -> None:
    """The floor a chain takes on leaving shadow is the one it acted by: soft-lock here."""
    engine = _engine(redis_client)
    assert await _establish(engine, "g", 4) == "soft_lock"
    for r in range(FAST.min_runs_soft + 1):
        [v] = await engine.decide(_run("g", "mail", f"g-mail-{r}", ["send"]))
    assert v.mode == "soft_lock"
    record = await engine.store.service_modes([("p", "g")])
    assert record[("p", "g")]["mail"][0] == 1


async def test_paused_runs_do_not_decay_a_locked_baseline(redis_client: aioredis.Redis) -> None:
    """A checkpoint (and its decay) runs only after the chain learned something since the last
    one: runs of paused calls nobody approved used to decay the baseline checkpoint after
    checkpoint (Dec 4 attack run, round 4: ≈ 18,000 such runs wore a chain's counts down)."""
    engine = _engine(redis_client)
    assert await _establish(engine, "y", 12) == "locked"
    [first] = await engine.decide(_run("y", "crm", "y-junk-0", ["junk"]))
    # (its run starts with the checkpoint the last learned run is owed)
    before = await engine.store.edge_counts(first.chain_tag)
    for r in range(1, 21):  # one-event runs of a shape the chain never saw: paused, held
        [v] = await engine.decide(_run("y", "crm", f"y-junk-{r}", ["junk"]))
        assert v.action == "pause" and v.held, r
    assert await engine.store.edge_counts(first.chain_tag) == before
