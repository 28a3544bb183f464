"""``GET /v1/audit``: the caller's project's audit entries, oldest first, by time range.

Scoped by the API key's project: there is no way to name another project, so another tenant's
entries are simply invisible.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from aiohttp import web

from gateway.auth import authenticate
from gateway.body import int_query
from gateway.state import state_of
from models.errors import ValidationError
from models.sanitize import shown

__all__ = ["parse_time", "routes"]

routes = web.RouteTableDef()


#: Unix seconds: ASCII digits (at most 11: up to year 5138), optionally a fraction.
_UNIX_SECONDS = re.compile(r"[0-9]{1,11}(\.[0-9]{1,9})?")


def parse_time(request: web.Request, name: str) -> int | None:
    """An optional ISO 8601 time (``2026-01-02T03:04:05Z``) or Unix seconds → Unix ms.

    Unix seconds are matched by pattern, never by ``str.isdigit`` (which takes ``²``) and never
    through an unbounded float (400 nines are infinity, and ``int(inf)`` raises)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if _UNIX_SECONDS.fullmatch(raw):
        whole, _, fraction = raw.partition(".")
        return int(whole) * 1000 + int((fraction + "000")[:3])
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationError(f"{name} must be an ISO 8601 time or Unix seconds, "
                              f"got {shown(raw)}", name) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@routes.get("/v1/audit")
async def list_audit(request: web.Request) -> web.Response:
    state = state_of(request)
    caller = await authenticate(request, state)
    from_ms, to_ms = parse_time(request, "from"), parse_time(request, "to")
    if from_ms is not None and to_ms is not None and from_ms > to_ms:
        raise ValidationError("from must not be after to", "from")
    limit = int_query(request, "limit", 1, 1000, 100) or 100
    try:
        page = await state.audit.page(caller.project_id, from_ms=from_ms, to_ms=to_ms,
                                      cursor=request.query.get("cursor") or None, limit=limit)
    except ValueError as exc:
        raise ValidationError(str(exc), "cursor") from None
    return web.json_response({"items": [e.to_dict() for e in page.entries],
                              "next_cursor": page.next_cursor})
