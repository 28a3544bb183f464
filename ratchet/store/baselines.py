"""Read learned baselines for operators: which chains a project has, and one chain's state.

Why a reader of its own: the engine only ever touches the chain of the event at hand; an operator
asks "what has this project learned?". Chains are found through the project's agents
(``Keys.agents``) and each agent's service hash (``Keys.agent_services``, which the engine writes
for every chain it has seen), so no key scan is needed, on one Redis or a Cluster alike.
Read-only: nothing here changes a baseline (``ratchet baselines reset`` does, audited).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from models.baselines import Baseline, baseline_from_state
from models.nodes import ChainId
from ratchet.store.keys import Keys
from ratchet.store.labels import LabelReader
from ratchet.store.redis import RedisClient, RedisStore

__all__ = ["BaselineReader"]

_CRITICAL = "\x1fcritical"


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


@dataclass
class BaselineReader(RedisStore):
    client: RedisClient
    keys: Keys

    async def chains(self, project_id: str, agent_id: str | None = None) -> list[ChainId]:
        """The chains of ``project_id`` (of one agent when given), sorted by label."""
        if agent_id is None:
            agents = sorted(_s(a) for a in await self.client.smembers(self.keys.agents(project_id)))
        else:
            agents = [agent_id]
        services = await asyncio.gather(*(
            self.client.hkeys(self.keys.agent_services(project_id, a)) for a in agents
        ))
        out = []
        for agent, fields in zip(agents, services, strict=True):
            for raw in fields:
                field = _s(raw)
                critical = field.endswith(_CRITICAL)
                out.append(ChainId(project_id, agent, field.removesuffix(_CRITICAL),
                                   critical=critical))
        return sorted(out, key=lambda c: c.label)

    async def read(self, chain: ChainId) -> Baseline | None:
        """The chain's learned state with its node labels, or None when it has none (never seen,
        reset or expired)."""
        ck = self.keys.chain_keys(chain.tag)
        meta, edges, rows, labels = await asyncio.gather(
            self.client.hgetall(ck.meta), self.client.hgetall(ck.edges),
            self.client.hgetall(ck.rows),
            LabelReader(self.client, self.keys).all_labels(chain.tag),
        )
        if not meta:
            return None
        return baseline_from_state(
            chain.label, chain.tag,
            {_s(k): _s(v) for k, v in meta.items()},
            {_s(k): int(v) for k, v in edges.items()},
            {_s(k): int(v) for k, v in rows.items()},
            labels,
        )
