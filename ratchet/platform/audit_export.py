"""CSV export of audit entries (``ratchet audit export``). Pure: rows in, CSV text out.

Columns: seq, at, action, actor, target, details (canonical JSON), id, prev_hash, hash,
project_id. A cell that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``,
``@``, tab or CR) is prefixed with ``'``.

>>> from models.audit import build_entry, GENESIS
>>> e = build_entry(project_id="p", seq=1, at_ms=0, action="agent.created", actor="cli",
...                 target="=cmd", details={"a": 1}, prev_hash=GENESIS, entry_id="i")
>>> to_csv([e]).splitlines()[1].split(",")[:6]
['1', '1970-01-01T00:00:00.000Z', 'agent.created', 'cli', "'=cmd", '"{""a"":1}"']
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import UTC, datetime, time

from models.audit import AuditEntry
from models.errors import ValidationError
from models.sanitize import shown
from models.signing import canonical_json

__all__ = ["COLUMNS", "parse_day", "to_csv"]

COLUMNS = ("seq", "at", "action", "actor", "target", "details", "id", "prev_hash", "hash",
           "project_id")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA) else value


def to_csv(entries: Iterable[AuditEntry]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for e in entries:
        details = canonical_json(dict(e.details)).decode("utf-8")
        writer.writerow([str(e.seq), e.at, e.action, _cell(e.actor), _cell(e.target),
                         _cell(details), e.id, e.prev_hash, e.hash, e.project_id])
    return out.getvalue()


def parse_day(text: str, *, end: bool, option: str) -> int:
    """``YYYY-MM-DD`` (a whole UTC day; ``end`` → its last ms) or an ISO 8601 time → Unix ms.

    >>> parse_day("2026-01-02", end=False, option="--from")
    1767312000000
    >>> parse_day("2026-01-02", end=True, option="--to") - 1767312000000
    86399999
    """
    try:
        if len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d").date()
            moment = datetime.combine(day, time.max if end else time.min, tzinfo=UTC)
            ms = int(moment.timestamp() * 1000)
            return ms - (ms % 1000) + 999 if end else ms
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"{option} must be YYYY-MM-DD or an ISO 8601 time, got {shown(text)}",
                              option) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
