"""How a verdict is kept in Redis: one compact verdict envelope per verdict. Pure: no I/O.

Why: the verdict JSON (``Verdict.to_dict``) a worker stored for lookups and approvals cost
≈ 480–630 bytes per verdict on the wire to Redis and in its memory, and ≈ 5.7 µs of worker CPU to
build; the compact form of :mod:`models.verdict_wire` keeps every field of it (reasons and their
details included) in ≈ 210 bytes for ≈ 2.6 µs (measured on the same verdicts). A stored verdict
is a version-2 envelope holding that one verdict::

    [2, project_id, agent_id, trace_id, 0, [row]]

so the Lua scripts that compare owners (``lua/save_verdicts.lua``, ``lua/verdict_get.lua``) read
its agent (element 3) and its ``decided_at`` (element 16 of the row) with ``cmsgpack``, and a
reader gets back exactly the JSON object it got before. Verdicts stored by earlier releases are
that JSON (it starts with ``{``) and are still read.

>>> from models.verdict import Edge, Verdict
>>> v = Verdict("e1", "a", "r", "c", "locked", True, 14.5, 12.0, Edge("^", "n1", 0.25, 3.0, 12.0),
...             "flag", (), 1.5, trace_id="t", project_id="p")
>>> decode_stored(encode_stored(v)) == v.to_dict() == decode_stored(orjson.dumps(v.to_dict()))
True
>>> decode_stored(b"\\x90")
Traceback (most recent call last):
...
models.errors.ValidationError: verdict message is not a compact envelope (not an array)
"""

from __future__ import annotations

from typing import Any

import orjson

from models.errors import ValidationError
from models.verdict import Verdict
from models.verdict_wire import decode_compact, encode_rows, verdict_row

__all__ = ["decode_stored", "encode_stored"]


def encode_stored(v: Verdict, row: list[Any] | None = None) -> bytes:
    """The bytes a verdict is kept as in Redis (a one-verdict compact envelope); ``row``: its
    ``verdict_wire.verdict_row`` when built already (the worker's envelope uses it too)."""
    return encode_rows(v.project_id, v.agent_id, v.trace_id, 0,
                       [verdict_row(v) if row is None else row])


def decode_stored(raw: bytes) -> dict[str, Any]:
    """The verdict's JSON object (``Verdict.to_dict``) from its stored bytes, either form;
    :class:`ValidationError` naming the problem for anything else."""
    if raw[:1] == b"{":
        out: dict[str, Any] = orjson.loads(raw)
        return out
    env = decode_compact(raw)
    if len(env.verdicts) != 1:
        raise ValidationError(f"a stored verdict holds {len(env.verdicts)} verdicts, not 1")
    return env.verdicts[0].to_dict()
