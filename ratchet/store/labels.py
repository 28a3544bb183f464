"""Node labels in Redis: written by the engine beside a chain's counts, read to explain verdicts.

Writing (:class:`NodeLabeller`): the engine notes each event's node; a node this process did not
label within :data:`REFRESH_S` gets its label (``models.labels``) queued, and the queued labels
of a batch go out as one ``lua/label_nodes.lua`` call per chain *in the same pipeline as the
chain's observe call* — no extra round trip. An in-process map (chain, node) → when to send
again keeps the steady state free of label work: a known node costs one dictionary lookup
(measured 1.8 µs per event with ``cachetools.TTLCache``, well under 1 µs with this map, which
is why it is a plain dict), and the skeleton is shaped a second time only for nodes not seen
recently. The map is bounded: past :data:`CACHE_NODES` entries it is emptied (labels are
``HSETNX``: sending one again changes nothing).
Re-sending every :data:`REFRESH_S` keeps the labels' idle TTL (the chain's) alive and relabels
a chain that was reset. The script caps the labels of a chain at the engine's ``node_cap``
(512 by default), so labels never outnumber a chain's nodes.

Keys: ``Keys.chain_labels(tag)``, under the chain's hash tag ``{c:<tag>}`` like every other key
of the chain, so the call is Redis Cluster-safe and runs on the chain's slot.

Reading (:class:`LabelReader`): labels of given nodes, and the known successors of a node (from
the chain's edge counts), for ``ratchet explain`` and the verdict API.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from redis.commands.core import AsyncScript

from models.labels import NodeLabel, decode_label, encode_label, label_of
from models.nodes import END, OVERFLOW, START
from models.params import COUNT_SCALE
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient, RedisStore
from ratchet.store.scripts import scripts_for

__all__ = ["CACHE_NODES", "REFRESH_S", "LabelReader", "NodeLabeller"]

#: (chain, node) pairs this process remembers as labelled.
CACHE_NODES = 65_536
#: Seconds before a labelled node is sent again (refreshes the labels' idle TTL).
REFRESH_S = 3600.0

_UNLABELLED = frozenset((START, END, OVERFLOW))


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


@dataclass
class NodeLabeller:
    """Queues the labels of nodes not labelled recently; hands them out as pipeline calls."""

    client: RedisClient
    keys: Keys
    #: Labels per chain at most (the engine's ``node_cap``).
    cap: int
    ttl_s: int
    refresh_s: float = REFRESH_S
    #: (chain tag, node) → monotonic time after which the label is sent again.
    _seen: dict[tuple[str, str], float] = field(init=False, default_factory=dict)
    _pending: dict[str, dict[str, bytes]] = field(init=False, default_factory=dict)

    def note(self, tag: str, node: str, service: str, action: str, payload: Any) -> None:
        """Queue ``node``'s label unless this process labelled it within ``refresh_s``."""
        key = (tag, node)
        again = self._seen.get(key)
        now = time.monotonic()
        if (again is not None and again > now) or node in _UNLABELLED:
            return
        if len(self._seen) >= CACHE_NODES:
            self._seen.clear()
        self._seen[key] = now + self.refresh_s
        self._pending.setdefault(tag, {})[node] = encode_label(label_of(service, action, payload))

    def take(self) -> list[tuple[AsyncScript, list[str], list[Any]]]:
        """The queued labels as ``(script, keys, args)`` calls, one per chain; the queue empties."""
        if not self._pending:
            return []
        script = scripts_for(self.client)["label_nodes"]
        calls: list[tuple[AsyncScript, list[str], list[Any]]] = []
        for tag, labels in self._pending.items():
            args: list[Any] = [self.cap, self.ttl_s]
            for node, label in labels.items():
                args += [node, label]
            calls.append((script, [self.keys.chain_labels(tag)], args))
        self._pending = {}
        return calls

    def forget(self, tag: str | None = None) -> None:
        """Drop what this process remembers (of one chain, or all): labels are sent again."""
        if tag is None:
            self._seen.clear()
        else:
            for key in [k for k in self._seen if k[0] == tag]:
                del self._seen[key]


@dataclass
class LabelReader(RedisStore):
    """Labels and known successors of a chain's nodes (read-only)."""

    client: RedisClient
    keys: Keys

    async def labels(self, tag: str, nodes: Iterable[str]) -> dict[str, NodeLabel]:
        """The stored labels of ``nodes`` (nodes without one are left out)."""
        wanted = sorted({n for n in nodes if n not in _UNLABELLED})
        if not wanted:
            return {}
        raw = await self.client.hmget(self.keys.chain_labels(tag), wanted)
        out = {}
        for node, value in zip(wanted, raw, strict=True):
            label = decode_label(value) if value is not None else None
            if label is not None:
                out[node] = label
        return out

    async def all_labels(self, tag: str) -> dict[str, NodeLabel]:
        """Every stored label of a chain (at most the node cap of them)."""
        raw = await self.client.hgetall(self.keys.chain_labels(tag))
        out = {}
        for node, value in raw.items():
            label = decode_label(value)
            if label is not None:
                out[_s(node)] = label
        return out

    async def successors(self, tag: str, node: str) -> dict[str, float]:
        """Nodes seen right after ``node`` in the chain → how often (events, decayed)."""
        raw = await self.client.hgetall(self.keys.chain_keys(tag).edges)
        out = {}
        for edge, count in raw.items():
            source, _, target = _s(edge).partition("\t")
            if source == node:
                out[target] = int(count) / COUNT_SCALE
        return out

    async def chain_labels_and_successors(
        self, tag: str, from_node: str, to_node: str
    ) -> tuple[dict[str, NodeLabel], dict[str, float]]:
        """What explaining the edge ``from_node → to_node`` needs: its ends' and the from-node's
        successors' labels, and the successors with their counts."""
        successors = await self.successors(tag, from_node)
        labels = await self.labels(tag, [from_node, to_node, *successors])
        return labels, successors

