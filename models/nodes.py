"""Markov nodes and chain identity (docs/design.md §3). Pure: no I/O.

A node is the payload's skeleton hash; in rich Markov mode it also carries the service and the
coarse action. A chain is one (project, agent, service) — critical requests get a chain of their
own. Fields are joined with the unit separator ``\\x1f``, which validated ids never contain
(``models.events`` rejects control characters), so different field tuples never join alike.

>>> coarse_action("contacts.read")
'contacts'
>>> node_id("0123456789abcdef", service="crm", action="contacts.read", rich=False)
'0123456789abcdef'
>>> c = chain_for("p", "a{1}", "crm", "critical")
>>> (c.label, len(c.tag), c.tag == chain_for("p", "a{1}", "crm", "high").tag)
('p/a{1}/crm!critical', 16, False)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import xxhash

from models.events import PRIORITIES

__all__ = ["END", "OVERFLOW", "START", "ChainId", "chain_for", "coarse_action", "node_id"]

#: The node every run starts from.
START = "^"
#: The node a run ends in (only when an event says ``end_of_run``).
END = "$"
#: The one node that stands for every node past a chain's node cap.
OVERFLOW = "~"

_SEP = "\x1f"
_COARSE_END = re.compile(r"[.:/]")


def coarse_action(action: str) -> str:
    """The action up to its first ``.``, ``:`` or ``/`` (all of it when there is none).

    >>> [coarse_action(a) for a in ("contacts.read", "db:query", "files/upload", "send")]
    ['contacts', 'db', 'files', 'send']
    """
    m = _COARSE_END.search(action)
    return action if m is None else action[: m.start()]


def node_id(skel_hash: str, *, service: str, action: str, rich: bool) -> str:
    """The node of an event: the skeleton hash, or in rich mode a hash of service, coarse action
    and skeleton hash (16 lowercase hex characters either way for real skeleton hashes).

    >>> node_id("0123456789abcdef", service="crm", action="contacts.read", rich=True) == \\
    ...     node_id("0123456789abcdef", service="crm", action="contacts.write", rich=True)
    True
    """
    if not rich:
        return skel_hash
    joined = f"{service}{_SEP}{coarse_action(action)}{_SEP}{skel_hash}"
    return xxhash.xxh3_64_hexdigest(joined.encode())


@dataclass(frozen=True, slots=True)
class ChainId:
    """One Markov chain: (project, agent, service), and whether it is the critical-path chain."""

    project_id: str
    agent_id: str
    service: str
    critical: bool = False

    @property
    def tag(self) -> str:
        """Redis Cluster hash tag: xxh3_64 hex of the fields (safe whatever the ids contain).

        >>> ChainId("p", "a", "s").tag == ChainId("p", "a", "s", critical=True).tag
        False
        """
        return _chain_tag(self.project_id, self.agent_id, self.service, self.critical)

    @property
    def label(self) -> str:
        """Human-readable name, ``project/agent/service`` plus ``!critical`` for critical chains.

        >>> ChainId("p", "a", "s").label
        'p/a/s'
        """
        base = f"{self.project_id}/{self.agent_id}/{self.service}"
        return base + "!critical" if self.critical else base


@lru_cache(maxsize=65_536)
def _chain_tag(project_id: str, agent_id: str, service: str, critical: bool) -> str:
    # memoized: the engine asks for the tag of every event's chain; there are few chains
    joined = _SEP.join((project_id, agent_id, service))
    if critical:
        joined += _SEP + "crit"
    return xxhash.xxh3_64_hexdigest(joined.encode())


def chain_for(project_id: str, agent_id: str, service: str, priority: str) -> ChainId:
    """The chain an event belongs to; ``critical`` priority gets its own chain.

    >>> chain_for("p", "a", "s", "high") == chain_for("p", "a", "s", "low")
    True
    >>> chain_for("p", "a", "s", "urgent")
    Traceback (most recent call last):
    ...
    ValueError: priority must be one of low, normal, high, critical; got 'urgent'
    """
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}; got {priority!r}")
    return ChainId(project_id, agent_id, service, critical=priority == "critical")
