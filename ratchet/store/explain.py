"""Gather what explaining a stored verdict needs and explain it (``models.explain``).

One place for ``ratchet explain``, the verdict API's ``explain`` and the demo summary: the stored
verdict and its approval (``VerdictStore``), the chain's node labels and the from-node's known
successors (``LabelReader``, chain hash tag) and the chain's current mode record. Read-only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.explain import Explanation, explain
from models.modes import MODE_NAMES
from models.params import EngineParams
from models.verdict import Verdict
from ratchet.store.keys import Keys
from ratchet.store.labels import LabelReader
from ratchet.store.redis import RedisClient, RedisStore
from ratchet.store.verdicts import VerdictStore

__all__ = ["Explainer"]


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


@dataclass
class Explainer(RedisStore):
    client: RedisClient
    keys: Keys
    params: EngineParams

    async def explain_verdict(
        self, v: Verdict, approval: Mapping[str, Any] | None = None
    ) -> Explanation:
        """Explain a verdict at hand (labels and successors read from its chain)."""
        if not v.chain_tag or v.error:
            return explain(v, {}, {}, self.params, approval=approval)
        reader = LabelReader(self.client, self.keys)
        labels, successors = await reader.chain_labels_and_successors(
            v.chain_tag, v.edge.from_node, v.edge.to_node
        )
        meta = await self.client.hmget(self.keys.chain_keys(v.chain_tag).meta,
                                       ["mode", "runs", "unl"])
        now: dict[str, Any] = {}
        if meta[0] is not None:
            mode = int(_s(meta[0]))
            now = {"mode": MODE_NAMES[mode] if 0 <= mode < len(MODE_NAMES) else str(mode),
                   "runs": int(_s(meta[1] or "0")), "unlearnable": _s(meta[2] or "0") == "1"}
        return explain(v, labels, successors, self.params, approval=approval, chain_now=now)

    async def explain_event(self, project_id: str, event_id: str) -> Explanation | None:
        """Explain the stored verdict of ``event_id`` (None: unknown, undecided or expired)."""
        store = VerdictStore(self.client, self.keys)
        doc = await store.get(project_id, event_id)
        if doc is None:
            return None
        approval = await store.approval(project_id, event_id)
        return await self.explain_verdict(Verdict.from_dict(doc),
                                          approval.to_dict() if approval else None)
