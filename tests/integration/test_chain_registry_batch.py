"""``ChainRegistry.admit`` (ratchet/store/chain_registry.py) computes each distinct chain of a
request once; its answers, the script calls it makes and what Redis keeps are those of the
per-event definition (kept here as the reference), on a real redis-server: random batches of
several projects, agents, services and priorities under a small cap, with refreshes."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest

from models.events import PRIORITIES, IngestEvent, parse_event
from models.nodes import chain_for
from ratchet.store.chain_registry import ChainRegistry
from ratchet.store.keys import Keys

pytestmark = pytest.mark.asyncio


class _Reference(ChainRegistry):
    """The per-event algorithm the batch one replaced (one chain tag per event)."""

    async def admit(self, events: Any, *, now: float | None = None) -> list[bool]:
        if self.cap <= 0 or not events:
            return [True] * len(events)
        clock = 0.0 if now is None else now
        tags = [chain_for(ev.project_id, ev.agent_id, ev.service, ev.priority).tag
                for ev in events]
        ask: dict[str, list[str]] = {}
        for ev, tag in zip(events, tags, strict=True):
            seen = self._seen.get((ev.project_id, tag))
            if seen is None or clock - seen >= self.refresh_s:
                group = ask.setdefault(ev.project_id, [])
                if tag not in group:
                    group.append(tag)
        refused: set[tuple[str, str]] = set()
        for project_id, group in ask.items():
            answers: list[Any] = await self._admit(
                keys=[self.keys.project_chains(project_id)],
                args=[int(clock * 1000), self.ttl_s * 1000, self.cap, *group])
            for tag, ok in zip(group, answers, strict=True):
                if int(ok):
                    self._remember((project_id, tag), clock)
                else:
                    refused.add((project_id, tag))
        return [(ev.project_id, tag) not in refused for ev, tag in zip(events, tags,
                                                                      strict=True)]


def _event(rng: random.Random) -> IngestEvent:
    return parse_event({"event_id": str(uuid.uuid4()), "agent_id": rng.choice("abc"),
                        "run_id": "r", "service": rng.choice(["crm", "mail", "db", "s:{x}"]),
                        "action": "read", "priority": rng.choice(PRIORITIES), "payload": {}},
                       rng.choice(["p1", "p2"]))


async def test_batch_admit_answers_and_stores_as_the_per_event_reference(
    redis_client: Any, key_prefix: str
) -> None:
    rng = random.Random(7)
    new = ChainRegistry(redis_client, Keys(f"{key_prefix}n"), cap=5, ttl_s=600, refresh_s=30)
    ref = _Reference(redis_client, Keys(f"{key_prefix}r"), cap=5, ttl_s=600, refresh_s=30)
    refusals = 0
    clock = 1_764_700_000.0
    for _ in range(40):
        batch = [_event(rng) for _ in range(rng.randint(1, 25))]
        clock += rng.choice([0.5, 5.0, 40.0])  # some calls refresh remembered chains
        got = await new.admit(batch, now=clock)
        assert got == await ref.admit(batch, now=clock)
        refusals += got.count(False)
    assert refusals > 0  # the cap was reached: refusals were compared too
    for project in ("p1", "p2"):
        stored_new = await redis_client.zrange(Keys(f"{key_prefix}n").project_chains(project), 0,
                                               -1, withscores=True)
        stored_ref = await redis_client.zrange(Keys(f"{key_prefix}r").project_chains(project), 0,
                                               -1, withscores=True)
        assert stored_new == stored_ref and stored_new
    assert new._seen == ref._seen


async def test_a_bad_priority_is_refused_as_before(redis_client: Any, key_prefix: str) -> None:
    registry = ChainRegistry(redis_client, Keys(key_prefix), cap=5, ttl_s=600)
    ok = parse_event({"event_id": "e1", "agent_id": "a", "run_id": "r", "service": "s",
                      "action": "x", "payload": {}}, "p")
    bad = IngestEvent("e2", "a", "r", "s", "x", {}, "p", priority="urgent")
    with pytest.raises(ValueError, match="priority must be one of"):
        await registry.admit([ok, bad], now=1.0)
