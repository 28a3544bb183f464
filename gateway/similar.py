"""The paused events like a named one (``POST /v1/approvals/{id}`` with ``"similar": true``).

:func:`models.approval_similar.similarity_key` says what "like" means; this reads the project's
paused events oldest first (at most ``MAX_SCANNED``) and returns the ids of those that share the
named event's key (at most ``MAX_SIMILAR``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from models.approval_similar import MAX_SCANNED, MAX_SIMILAR, similarity_key
from ratchet.store.verdicts import VerdictStore

__all__ = ["similar_paused"]

_PAGE = 500


#: What one paused verdict weighs as ``GET /v1/approvals`` returns it, bytes (≈ 394 KB a page
#: of 500, docs/security.md): what reading one to compare it is charged.
VERDICT_BYTES = 790


async def similar_paused(store: VerdictStore, project_id: str, verdict: Mapping[str, Any],
                         *, scanned: int = MAX_SCANNED, found: int = MAX_SIMILAR
                         ) -> tuple[list[str], int]:
    """Ids of the paused events of ``project_id`` like ``verdict`` (itself left out), oldest
    first (``[]`` when nothing held ``verdict``), and the bytes read to find them (for the
    caller's ``api`` charge)."""
    key = similarity_key(verdict)
    if key is None:
        return [], 0
    own = str(verdict.get("event_id", ""))
    out: list[str] = []
    cursor: str | None = None
    read = 0
    while read < scanned and len(out) < found:
        page = await store.list_paused(project_id, min(_PAGE, scanned - read), cursor)
        read += len(page.verdicts)
        out += [str(v.get("event_id")) for v in page.verdicts
                if v.get("event_id") != own and similarity_key(v) == key]
        cursor = page.next_cursor
        if cursor is None:
            break
    return out[:found], read * VERDICT_BYTES
