"""The per-project cap on chains: how many (agent × service) Markov chains a tenant keeps.

Every new (agent, service) pair an event names starts a chain — with the event's run, id binding
and verdict, 11 Redis keys and 3.3 KB (measured by ``benchmarks/attack.py``) — kept for
``RATCHET_CHAIN_TTL_S`` (30 days) after its last event. Names are the caller's to choose, so without a cap one tenant could grow Redis
by its whole ingest rate × 3.3 KB × 30 days. :class:`ChainRegistry` keeps each project's chains
in one sorted set (``keys.project_chains``, last-seen time as score) and admits new ones only
while the project holds fewer than ``RATCHET_MAX_CHAINS_PER_PROJECT`` (``lua/chains_admit.lua``,
one call per project of a request). A chain idle past the chain TTL leaves the set as its state
expires, so the cap counts chains that exist.

Known chains cost nothing per event: each process remembers the chains it admitted (bounded,
least recently used dropped first) and asks Redis again only after ``refresh_s``, to refresh the
last-seen time.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from models.events import IngestEvent
from models.nodes import chain_for
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient, RedisStore
from ratchet.store.scripts import scripts_for

__all__ = ["ChainRegistry"]


class ChainRegistry(RedisStore):
    """Admits the chains of ingest events under the per-project cap (0 = no cap)."""

    def __init__(self, redis: RedisClient, keys: Keys, *, cap: int, ttl_s: int,
                 refresh_s: float = 3_600.0, remember: int = 100_000) -> None:
        self.redis = redis
        self.keys = keys
        self.cap = cap
        self.ttl_s = ttl_s
        # a remembered chain is asked about again well before Redis could have dropped it
        self.refresh_s = min(refresh_s, ttl_s / 2)
        self.remember = remember
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._admit = scripts_for(redis)["chains_admit"]

    async def admit(self, events: Sequence[IngestEvent], *, now: float | None = None
                    ) -> list[bool]:
        """Per event: True if its chain exists or fits under its project's cap, False if its
        project already holds ``cap`` chains and this one is new."""
        if self.cap <= 0 or not events:
            return [True] * len(events)
        clock = time.time() if now is None else now
        # each distinct chain once: a bulk request holds one agent's events, on a few services
        by_fields: dict[tuple[str, str, str, str], tuple[str, str]] = {}
        chains: list[tuple[str, str]] = []
        for ev in events:
            fields = (ev.project_id, ev.agent_id, ev.service, ev.priority)
            chain = by_fields.get(fields)
            if chain is None:
                chain = by_fields[fields] = (ev.project_id, chain_for(*fields).tag)
            chains.append(chain)
        ask: dict[str, list[str]] = {}
        for project_id, tag in by_fields.values():  # in order of first appearance
            seen = self._seen.get((project_id, tag))
            if seen is None or clock - seen >= self.refresh_s:
                group = ask.setdefault(project_id, [])
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
        if not refused:
            return [True] * len(events)
        return [chain not in refused for chain in chains]

    def _remember(self, chain: tuple[str, str], at: float) -> None:
        self._seen[chain] = at
        self._seen.move_to_end(chain)
        while len(self._seen) > self.remember:
            self._seen.popitem(last=False)
