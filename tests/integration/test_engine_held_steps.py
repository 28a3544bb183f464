"""A held call did not happen: the run stays where it was.

Dec 4 attack run, round 8: a paused call still became the run's previous step, so an agent sent
a throwaway call of the step that comes before (paused, never executed) and then the call it
wanted — scored as the usual move, allowed. A skipped step, a call out of order, a send with no
draft and any loop passed that way. Now the next call is scored after the last call that ran.
"""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from ratchet.engine.engine import Engine
from ratchet.store.keys import Keys
from tests.integration.engine_support import FAST, crm_run


async def _locked(redis_client: aioredis.Redis) -> Engine:
    engine = Engine.create(redis_client, keys=Keys(f"hs{uuid.uuid4().hex[:8]}"), rich=True,
                           guardrails=False, params=FAST)
    for r in range(12):
        [*_, v] = await engine.decide(crm_run(f"t{r}", [("search", {"q": "x"}), ("read", {"id": r}),
                                                     ("delete", {"id": r})]))
    assert v.mode == "locked"
    return engine


async def test_a_paused_throwaway_step_does_not_make_the_next_call_usual(
    redis_client: aioredis.Redis,
) -> None:
    engine = await _locked(redis_client)
    [_, skipped] = await engine.decide(crm_run("skip", [("search", {"q": "x"}),
                                                      ("delete", {"id": 1})]))
    assert skipped.anomalous and skipped.action == "pause"
    verdicts = await engine.decide(crm_run("throwaway", [("search", {"q": "x"}),
                                                      ("read", {"zz": 1}),
                                                      ("delete", {"id": 1})]))
    assert [v.action for v in verdicts[1:]] == ["pause", "pause"], [
        (v.action, v.edge) for v in verdicts]


async def test_a_run_whose_first_call_is_held_is_still_at_its_start(
    redis_client: aioredis.Redis,
) -> None:
    """The usual first call after a held first call is scored from the run's start (allowed),
    and the run is counted once."""
    engine = await _locked(redis_client)
    before = int((await engine.store.chain_meta(
        (await engine.decide(crm_run("probe", [("search", {"q": "x"})])))[0].chain_tag))["runs"])
    verdicts = await engine.decide(crm_run("late", [("purge", {"all": True}),
                                                 ("search", {"q": "x"}), ("read", {"id": 2})]))
    assert [v.action for v in verdicts] == ["pause", "allow", "allow"]
    after = int((await engine.store.chain_meta(verdicts[0].chain_tag))["runs"])
    assert after == before + 1
