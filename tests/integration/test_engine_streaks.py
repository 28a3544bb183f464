"""Back-to-back repeats are learned even when a run's end is never shown to the chain.

A chain is one agent's service. A run often ends on another service (poll the CI three times,
then deploy: the CI chain never sees an ``end_of_run``), or the agent never sends
``end_of_run`` at all. A streak that the run leaves at the end of its part in a chain used to
be learned only when that chain saw the streak end (another node, or the run's end), so such a
chain kept the repeat limit of a chain that never repeated (2) and paused every longer,
perfectly usual streak forever. Found by an independent traffic generator: 23 % of such runs
paused. Now the streak is settled by the next run's event (lua/observe.lua meta ``ps``,
``ReferenceChain.open_streak``; the Lua ≡ reference agreement is tested in
test_engine_agreement.py).
"""

from __future__ import annotations

import random
import uuid

import pytest
import redis.asyncio as aioredis

from models.events import IngestEvent
from models.params import EngineParams
from ratchet.engine.engine import Engine
from ratchet.store.keys import Keys

# Small numbers: chains lock after a few dozen runs.
FAST = EngineParams(checkpoint_runs=5, min_runs_soft=10, min_runs_locked=20,
                    stability=0.5, stability_large=0.5)


def _run(agent: str, run: str, polls: int, *, ends_on_ci: bool, send_end: bool) -> list[IngestEvent]:
    """``polls`` CI status polls, then (unless the run ends on the CI) one deploy."""
    calls = [("ci", "status.get", {"pipeline": 7})] * polls
    if not ends_on_ci:
        calls.append(("deploy", "release.apply", {"env": "prod", "sha": "abc"}))
    return [
        IngestEvent(event_id=uuid.uuid4().hex, agent_id=agent, run_id=run, service=service,
                    action=action, payload=payload, project_id="p",
                    end_of_run=send_end and i == len(calls) - 1)
        for i, (service, action, payload) in enumerate(calls)
    ]


@pytest.mark.parametrize(("ends_on_ci", "send_end"), [
    (False, True),   # the run ends on another service
    (True, False),   # the agent never sends end_of_run
    (True, True),    # the run ends on this chain (always worked: the reference case)
])
async def test_usual_streaks_are_learned_wherever_the_run_ends(
    redis_client: aioredis.Redis, ends_on_ci: bool, send_end: bool
) -> None:
    engine = Engine.create(redis_client, keys=Keys(f"st{uuid.uuid4().hex[:8]}"),
                           guardrails=False, params=FAST)
    rng = random.Random(5)
    for r in range(60):  # 1 to 5 polls a run, as a CI takes its time
        await engine.decide(_run("a", f"w{r}", rng.randint(1, 5), ends_on_ci=ends_on_ci,
                                 send_end=send_end))
    verdicts = []
    for r in range(30):
        verdicts += await engine.decide(_run("a", f"r{r}", rng.randint(1, 5),
                                             ends_on_ci=ends_on_ci, send_end=send_end))
    ci = [v for v in verdicts if v.event_id and v.mode == "locked"]
    assert ci, "the CI chain should be locked by now"
    looped = [v for v in verdicts if v.anomalous]
    assert looped == [], [(v.mode, v.action, v.reasons) for v in looped[:3]]
    # and a loop well past anything learned is still caught
    [*_, last] = await engine.decide(_run("a", "loop", 30, ends_on_ci=True, send_end=False))
    assert last.anomalous and last.action == "pause"


async def test_a_fixed_repeat_count_is_learned_in_shadow(redis_client: aioredis.Redis) -> None:
    """A workflow that always repeats a call five times (read five records): in shadow the
    chain learns the streak as it learns everything else. Before, the limit grew only from
    what it allowed (0 → 2 → 5 …), so a streak that was never ≤ 2 was never learned, and once
    locked the 4th and 5th call of every run were paused, approvals included (Dec 4 attack run,
    round 5: another tenant's ordinary runs, "a a a p p" on every run)."""
    engine = Engine.create(redis_client, keys=Keys(f"st{uuid.uuid4().hex[:8]}"),
                           guardrails=False, params=FAST)
    verdicts = []
    for r in range(40):
        verdicts += await engine.decide(_run("b", f"f{r}", 5, ends_on_ci=False, send_end=True))
    locked = [v for v in verdicts if v.mode == "locked"]
    assert locked, "the chains should be locked by now"
    assert [v for v in locked if v.anomalous] == []
    # a loop well past it is still caught
    [*_, last] = await engine.decide(_run("b", "loop", 30, ends_on_ci=True, send_end=False))
    assert last.anomalous and last.action == "pause"


async def test_a_locked_chain_does_not_learn_longer_streaks(redis_client: aioredis.Redis) -> None:
    """Dec 4 attack run, round 6: on a locked chain each streak within the repeat limit raised
    the limit by half again (limit = 1.5 × longest + 2), so streaks of 2, 3, 5, 9, 15 … 132
    repeats were all allowed, the last only flagged by the loop guardrail. A locked chain's
    limit now stays where it locked: the limit learned from three-poll runs lets 3·1.5+2 = 6
    repeats through, and no sequence of allowed streaks moves it."""
    engine = Engine.create(redis_client, keys=Keys(f"st{uuid.uuid4().hex[:8]}"),
                           guardrails=False, params=FAST)
    for r in range(40):
        await engine.decide(_run("c", f"c{r}", 3, ends_on_ci=False, send_end=True))
    actions: list[str] = []
    for i, polls in enumerate((4, 5, 6, 6, 6, 9, 15, 24)):
        verdicts = await engine.decide(_run("c", f"up{i}", polls, ends_on_ci=False,
                                            send_end=True))
        assert verdicts[0].mode == "locked"
        actions.append("pause" if any(v.action == "pause" for v in verdicts) else "allow")
    assert actions == ["allow"] * 5 + ["pause"] * 3, actions


async def test_an_approved_loop_raises_the_locked_limit_to_its_length(
    redis_client: aioredis.Redis,
) -> None:
    """A locked chain's repeat limit moves only when a person says so: approving the held
    repeats of a longer streak teaches the chain that length, and the same streak then passes;
    without the approvals it stays paused."""
    engine = Engine.create(redis_client, keys=Keys(f"st{uuid.uuid4().hex[:8]}"),
                           guardrails=False, params=FAST)
    for r in range(40):
        await engine.decide(_run("d", f"d{r}", 3, ends_on_ci=False, send_end=True))
    first = await engine.decide(_run("d", "long-0", 12, ends_on_ci=False, send_end=True))
    held = [v for v in first if v.held]
    assert held and all(v.action == "pause" for v in held)
    again = await engine.decide(_run("d", "long-1", 12, ends_on_ci=False, send_end=True))
    assert any(v.action == "pause" for v in again)  # not approved: still a loop
    for v in held:
        assert (await engine.feedback(v.chain_tag, v.run_id, v.event_id, "approve")).applied
    after = await engine.decide(_run("d", "long-2", 12, ends_on_ci=False, send_end=True))
    assert [v.action for v in after] == ["allow"] * len(after)
    longer = await engine.decide(_run("d", "long-3", 30, ends_on_ci=False, send_end=True))
    assert any(v.action == "pause" for v in longer)


def _reads(run: str, payloads: list[dict[str, object]]) -> list[IngestEvent]:
    calls = [("crm", "contacts.search", {"q": "x"})] + [
        ("crm", "contacts.read", p) for p in payloads]
    return [IngestEvent(event_id=uuid.uuid4().hex, agent_id="e", run_id=run, service=s,
                        action=a, payload=p, project_id="p", end_of_run=i == len(calls) - 1)
            for i, (s, a, p) in enumerate(calls)]


async def test_a_loop_that_varies_its_shape_is_still_a_loop(redis_client: aioredis.Redis) -> None:
    """Dec 4 attack run, round 7: the repeat limit counted one node (a payload shape) back to
    back, so a loop alternating two known shapes of the same call — or slipping a throwaway
    call of it between its steps — never repeated and was never paused. Repeats are counted by
    action now, whatever the shape."""
    engine = Engine.create(redis_client, keys=Keys(f"st{uuid.uuid4().hex[:8]}"),
                           guardrails=False, params=FAST)
    plain, wide = {"id": 1}, {"id": 1, "fields": "name"}
    for r in range(40):  # every run reads twice, once in each shape
        [*_, v] = await engine.decide(_reads(f"e{r}", [plain, wide]))
    assert v.mode == "locked"
    usual = await engine.decide(_reads("usual", [wide, plain]))
    assert [w.action for w in usual] == ["allow"] * 3
    alternating = await engine.decide(_reads("alt", [plain, wide] * 6))
    assert any(w.action == "pause" for w in alternating), [w.action for w in alternating]
    junk = {"id": 1, "junk": True}  # a shape never seen: paused, never executed
    slipped = await engine.decide(_reads("slip", [plain, junk] * 6))
    real = [w for w, p in zip(slipped[1:], [plain, junk] * 6, strict=True) if p is plain]
    assert any(w.action == "pause" for w in real), [w.action for w in slipped]
