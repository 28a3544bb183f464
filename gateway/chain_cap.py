"""Ingest's check of the per-project chain cap (ratchet/store/chain_registry.py).

Runs on every admitted event just before it is published — after the signature check and the
event-id binding, so only a tenant's own signed events count against its cap — on the single,
fast and batch paths alike. A refused event is ``422`` naming ``service`` (in a batch, that item
is ``rejected``); nothing of it is published. Its event id stays bound to its body, as after a
refusal by Kafka: the same event is accepted once the project has room.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from models.errors import UnprocessableError
from models.events import IngestEvent
from ratchet.store.chain_registry import ChainRegistry

__all__ = ["CHAINS", "chain_cap_error", "refused_chains"]

#: Where the application keeps its :class:`ChainRegistry` (set when the gateway starts).
CHAINS = web.AppKey("chain_registry", ChainRegistry)


def chain_cap_error(cap: int) -> UnprocessableError:
    return UnprocessableError(
        f"this project already keeps {cap} chains (agent × service pairs), the most allowed "
        "(RATCHET_MAX_CHAINS_PER_PROJECT); send this agent's events under a service it already "
        "uses, or wait until idle chains expire (RATCHET_CHAIN_TTL_S)", "service")


async def refused_chains(request: web.Request, events: Sequence[IngestEvent]) -> list[bool]:
    """Per event: True if its chain is over the project's cap (refuse it)."""
    registry = request.app.get(CHAINS)
    if registry is None:
        return [False] * len(events)
    return [not ok for ok in await registry.admit(events)]
