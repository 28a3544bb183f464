"""Which paused events are "like" another, for one human decision over all of them. Pure: no I/O.

A new optional field in an agent's calls (API drift) pauses every run that sends it until a
person approves the new shape; approving one teaches it, but the runs already paused wait in the
approvals queue one by one. ``POST /v1/approvals/{id}`` with ``"similar": true`` decides, with
the same decision and reason, every paused event of the project that is *like* the named one:
the same agent, the same chain, the same call (the node it moved into) and the same reasons for
holding it — the chain's (a shape never seen; or a move never seen from the same previous call)
and each enforcing guardrail rule.

>>> v = {"agent_id": "a", "chain": "p/a/crm", "edge": {"from": "n1", "to": "n9"},
...      "reasons": [{"source": "markov", "action": "pause", "detail": {"new_node": True}},
...                  {"source": "guardrail:pii", "action": "flag", "detail": {"rule": "pii.email"}}]}
>>> similarity_key(v)
('a', 'p/a/crm', 'n9', 'guardrail:pii:pii.email', 'markov:new')
>>> similarity_key({**v, "reasons": []}) is None
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_SCANNED", "MAX_SIMILAR", "similarity_key"]

#: At most this many other events are decided by one request (the rest: call again).
MAX_SIMILAR = 500
#: At most this many paused events are read to find them, oldest first.
MAX_SCANNED = 5_000


def similarity_key(verdict: Mapping[str, Any]) -> tuple[str, ...] | None:
    """What two paused verdicts must share to be decided together (``None``: nothing held it,
    so nothing is like it)."""
    edge = verdict.get("edge") or {}
    kinds: set[str] = set()
    for reason in verdict.get("reasons") or ():
        if not isinstance(reason, Mapping) or reason.get("action") in (None, "allow"):
            continue
        source = str(reason.get("source", ""))
        detail = reason.get("detail") or {}
        if source == "markov":
            kinds.add("markov:new" if detail.get("new_node") else
                      f"markov:after:{edge.get('from', '')}")
        else:
            kinds.add(f"{source}:{detail.get('rule', '')}")
    if not kinds:
        return None
    return (str(verdict.get("agent_id", "")), str(verdict.get("chain", "")),
            str(edge.get("to", "")), *sorted(kinds))
