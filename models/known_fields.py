"""Unknown fields of a request body are errors, never silently dropped. Pure: no I/O.

A typo in a body field (``"reasn"`` for ``"reason"``, ``"agentid"`` for ``"agent_id"``) used to
be read as "not given": a decision recorded without its reason, an agent registered under a
generated id. Every JSON body the gateway reads names its fields, and this refuses the others
with the closest known name.

>>> refuse_unknown_fields({"decision": "approve", "reasn": "ok"}, ("decision", "reason"))
Traceback (most recent call last):
...
models.errors.ValidationError: unknown field 'reasn' (did you mean 'reason'?); known fields: decision, reason
>>> did_you_mean("limt", ["limit", "window_s"])
" (did you mean 'limit'?)"
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from models.errors import ValidationError
from models.sanitize import clean_name, shown

__all__ = ["did_you_mean", "refuse_unknown_fields"]


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or nothing."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def refuse_unknown_fields(body: Mapping[str, Any], known: Collection[str],
                          path: str = "") -> None:
    """:class:`ValidationError` naming the first unknown field of ``body`` (sorted), if any.
    ``path`` prefixes the field name in the error (``events[3].``)."""
    unknown = sorted(str(k) for k in body if k not in known)
    if not unknown:
        return
    name = unknown[0]
    raise ValidationError(
        f"unknown field {shown(name)}{did_you_mean(name, known)}; "
        f"known fields: {', '.join(sorted(known))}",
        path + clean_name(name),
    )
