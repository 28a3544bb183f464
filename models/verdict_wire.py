"""The compact verdict wire format (version 2): verdict envelopes as MessagePack arrays. Pure.

Why: the JSON verdict envelope (version 1) spends most of its ≈ 560 bytes per verdict on field
names and on the project, agent and trace ids every verdict repeats. Version 2 is a positional
MessagePack array (msgspec), shared ids once per envelope, modes and actions as small integers,
whole-number counts as integers — every field of the HTTP verdict (``Verdict.to_dict``) still
round-trips, reasons and their details included, so a caller waiting on ``wait_ms`` gets the
same JSON as before and the ``verdicts`` topic stays the complete durable record.

Layout (MessagePack)::

    [2, project_id, agent_id, trace_id, received_at, [row, ...]]
    row = [event_id, run_id, chain, chain_tag, mode, anomalous, score, threshold,
           edge_from, edge_to, p, count, from_total, action, reasons, decided_at, flags,
           (error, mode_change, trace_id, agent_id, project_id)]

``mode``/``action``: index into :data:`models.verdict.MODES` / :data:`models.verdict.ACTIONS`
(or the string itself when it is not one of them); ``reasons``: ``[source, action(, detail)]``
each; ``flags``: 1 = duplicate, 2 = held. The five trailing fields are written only up to the
last one that is set; ``trace_id``, ``agent_id`` and ``project_id`` there are nil when the verdict
shares the envelope's. A version-1 (JSON) body starts with ``{``; :func:`decode_verdict_message`
reads both (a rolling upgrade mixes them), :func:`decode_compact` only version 2, and both refuse
any other version with a :class:`~models.errors.ValidationError` saying which version they got.

>>> from models.verdict import Edge, Verdict
>>> v = Verdict("e1", "a", "r", "c", "shadow", False, 0.5, 12.0, Edge("^", "n1", 0.25, 3.0, 12.0),
...             "allow", (), 1.5, trace_id="t", project_id="p")
>>> env = decode_compact(encode_compact("p", "a", "t", 1.0, [v]))
>>> env.verdicts[0].to_dict() == v.to_dict(), env.received_at
(True, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import msgspec

from models.envelope import VerdictEnvelope, decode_verdicts
from models.errors import ValidationError
from models.verdict import ACTIONS, MODES, Reason, Verdict, round4
from models.verdict_build import make_edge, make_verdict

__all__ = [
    "COMPACT_VERSION",
    "decode_compact",
    "decode_verdict_message",
    "encode_compact",
    "encode_rows",
    "verdict_row",
    "wire_version",
]

#: Version of the compact format (version 1 is the JSON envelope of :mod:`models.envelope`).
COMPACT_VERSION = 2

_DUPLICATE = 1
_HELD = 2
_MODE_INDEX = {m: i for i, m in enumerate(MODES)}
_ACTION_INDEX = {a: i for i, a in enumerate(ACTIONS)}
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


def _num(x: float) -> float | int:
    """Whole numbers as integers (1–3 bytes instead of 9); decoded back with ``float()``.
    ``-0.0`` stays a float (an integer has no sign of zero)."""
    if not x.is_integer():
        return x
    if x == 0:
        return x if math.copysign(1.0, x) < 0 else 0
    return int(x) if abs(x) < 2**53 else x


def _row(v: Verdict, project_id: str, agent_id: str, trace_id: str) -> list[Any]:
    e = v.edge
    row: list[Any] = [
        v.event_id, v.run_id, v.chain, v.chain_tag,
        _MODE_INDEX.get(v.mode, v.mode), v.anomalous,
        round4(v.score), round4(v.threshold),
        e.from_node, e.to_node, e.p, _num(float(e.count)), _num(float(e.row_total)),
        _ACTION_INDEX.get(v.action, v.action),
        [[r.source, r.action, dict(r.detail)] if r.detail else [r.source, r.action]
         for r in v.reasons] if v.reasons else [],
        v.decided_at,
        (_DUPLICATE if v.duplicate else 0) | (_HELD if v.held else 0),
    ]
    if (v.error is None and not v.mode_change and v.trace_id == trace_id
            and v.agent_id == agent_id and v.project_id == project_id):
        return row  # the usual verdict: no trailing field set (what the loop below leaves)
    tail: list[Any] = [
        v.error, v.mode_change or None,
        None if v.trace_id == trace_id else v.trace_id,
        None if v.agent_id == agent_id else v.agent_id,
        None if v.project_id == project_id else v.project_id,
    ]
    while tail and tail[-1] is None:
        tail.pop()
    row.extend(tail)
    return row


def verdict_row(v: Verdict) -> list[Any]:
    """The row of ``v`` in an envelope of its own project, agent and trace — in its stored body
    (``models.verdict_stored``) and, as a worker's envelopes share those ids, in its envelope on
    the ``verdicts`` topic: a worker builds it once and hands it to both encoders (``rows``)."""
    return _row(v, v.project_id, v.agent_id, v.trace_id)


def encode_compact(
    project_id: str, agent_id: str, trace_id: str, received_at: float,
    verdicts: Sequence[Verdict], rows: Sequence[list[Any]] | None = None,
) -> bytes:
    """A version-2 verdict envelope of ``verdicts`` (all decided for one ingest envelope).
    ``rows``: their :func:`verdict_row`, built already; each is used where its verdict's ids are
    the envelope's (a row depends on the ids only through those comparisons, so the bytes are
    the same), the row built here otherwise."""
    if rows is None:
        out = [_row(v, project_id, agent_id, trace_id) for v in verdicts]
    else:
        out = [row if (v.project_id == project_id and v.agent_id == agent_id
                       and v.trace_id == trace_id) else _row(v, project_id, agent_id, trace_id)
               for v, row in zip(verdicts, rows, strict=True)]
    return encode_rows(project_id, agent_id, trace_id, received_at, out)


def encode_rows(
    project_id: str, agent_id: str, trace_id: str, received_at: float,
    rows: Sequence[list[Any]],
) -> bytes:
    """A version-2 verdict envelope of rows built for exactly these ids (:func:`verdict_row` of
    verdicts whose ids they are: a stored verdict's own envelope)."""
    return _encoder.encode([COMPACT_VERSION, project_id, agent_id, trace_id, received_at, rows])


def wire_version(body: bytes) -> int | str:
    """1 for a JSON envelope, else the version a compact body declares (what it says, even if
    unknown; ``"unreadable"`` when it is not MessagePack at all)."""
    if body[:1] == b"{":
        return 1
    try:
        head = _decoder.decode(body)
    except msgspec.DecodeError:
        return "unreadable"
    if isinstance(head, list) and head and isinstance(head[0], int | str):
        return head[0]
    return "unreadable"


def _pick(table: tuple[str, ...], value: Any, what: str) -> str:
    if type(value) is int and 0 <= value < len(table):  # the usual case, first
        return table[value]
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValidationError(f"verdict message has an unknown {what} code {value}")
    if isinstance(value, str):
        return value
    raise ValidationError(f"verdict message has a {what} of type {type(value).__name__}")


def _reason(r: list[Any]) -> Reason:
    detail = r[2] if len(r) > 2 else {}
    if not isinstance(detail, dict):
        raise ValidationError("verdict message has a reason detail that is not a map")
    return Reason(str(r[0]), str(r[1]), detail)


_NO_REASONS: tuple[Reason, ...] = ()


def _verdict(row: list[Any], project_id: str, agent_id: str, trace_id: str) -> Verdict:
    """One row → its :class:`Verdict`, built positionally (:mod:`models.verdict_build`: the
    same object as ``Verdict(...)`` by keyword at a third of the cost; every reader of the
    topic decodes every row)."""
    error = mode_change = trace = agent = project = None
    n = len(row)
    if n > 17:  # the optional trailing fields, written up to the last one set
        error = row[17]
        mode_change = row[18] if n > 18 else None
        trace = row[19] if n > 19 else None
        agent = row[20] if n > 20 else None
        project = row[21] if n > 21 else None
    flags = int(row[16])
    reasons = row[14]
    return make_verdict(
        str(row[0]),
        agent_id if agent is None else str(agent),
        str(row[1]),
        str(row[2]),
        _pick(MODES, row[4], "mode"),
        bool(row[5]),
        float(row[6]),
        float(row[7]),
        make_edge(str(row[8]), str(row[9]), float(row[10]), float(row[11]), float(row[12])),
        _pick(ACTIONS, row[13], "action"),
        _NO_REASONS if reasons == [] else tuple(_reason(r) for r in reasons),
        float(row[15]),
        trace_id if trace is None else str(trace),
        project_id if project is None else str(project),
        str(row[3]),
        mode_change or "",
        bool(flags & _DUPLICATE),
        bool(flags & _HELD),
        None if error is None else str(error),
    )


def decode_compact(body: bytes) -> VerdictEnvelope:
    """The verdict envelope of a version-2 body; :class:`ValidationError` naming the problem for
    anything else (another version, not MessagePack, a malformed row)."""
    try:
        obj = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise ValidationError(f"verdict message is not a readable compact envelope: {exc}") from None
    if not isinstance(obj, list) or not obj:
        raise ValidationError("verdict message is not a compact envelope (not an array)")
    if obj[0] != COMPACT_VERSION:
        raise ValidationError(
            f"verdict message has wire version {obj[0]!r}; this reader knows version 1 (JSON) "
            f"and {COMPACT_VERSION} (compact)"
        )
    try:
        _, project_id, agent_id, trace_id, received_at, rows = obj
        verdicts = tuple(
            _verdict(row, str(project_id), str(agent_id), str(trace_id)) for row in rows
        )
        return VerdictEnvelope(str(project_id), str(agent_id), str(trace_id), verdicts,
                               float(received_at))
    except ValidationError:
        raise
    except (IndexError, TypeError, ValueError) as exc:
        raise ValidationError(f"verdict message is a malformed compact envelope: {exc}") from None


def decode_verdict_message(body: bytes) -> VerdictEnvelope:
    """A message of the ``verdicts`` topic in either format: JSON (version 1, written by workers
    before the compact format) or compact (version 2)."""
    if body[:1] == b"{":
        return decode_verdicts(body)
    return decode_compact(body)
