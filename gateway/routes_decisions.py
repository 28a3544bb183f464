"""``GET /v1/decisions:stream``: a project's decisions as server-sent events, for approval UIs.

Each non-allow verdict and each human decision on a paused event is one event of the stream
(``event: verdict`` with the verdict JSON, ``event: approval`` with the decision,
``event: approval_undone`` when a decision could not be delivered and the event is paused
again). The entries live in a capped Redis stream per project, written by the worker and the
approvals route, so every gateway serves the same stream and a client that reconnects with
``Last-Event-ID`` (browsers do so on their own) gets what it missed while its gateway restarted.
Without ``Last-Event-ID`` (or ``after``) the stream starts at "now". The answer ends after
``timeout_s`` (default 300) and the client reconnects; an idle stream sends a comment line every
15 s so proxies keep it open.
"""

from __future__ import annotations

import asyncio
import re
import time

from aiohttp import web

from gateway.auth import authenticate
from gateway.body import int_query
from gateway.holds import held_requests
from gateway.state import state_of
from gateway.trace import TRACE_ID_HEADER, trace_id_of
from models.errors import RateLimitedError, ValidationError

__all__ = ["routes"]

routes = web.RouteTableDef()

#: A Redis stream entry id as a client may send it back.
_ENTRY_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
#: Pause between reads of the stream while nothing new arrives, seconds. Reads do not block in
#: Redis: a blocking read holds one of the gateway's pooled Redis connections for its whole
#: wait, so a few hundred open streams would take every connection from other requests.
POLL_S = 0.25
#: An idle stream sends a comment this often, seconds.
KEEPALIVE_S = 15.0
MAX_TIMEOUT_S = 3_600


def _resume_point(request: web.Request) -> str | None:
    raw = request.headers.get("Last-Event-ID") or request.query.get("after")
    if raw is None or raw == "":
        return None
    if not _ENTRY_ID.match(raw):
        field = "Last-Event-ID" if "Last-Event-ID" in request.headers else "after"
        raise ValidationError(f"{field} must be an event id this stream sent (like 1700000000000-0)",
                              field)
    return raw


@routes.get("/v1/decisions:stream")
async def stream_decisions(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    caller = await authenticate(request, state)
    timeout_s = int_query(request, "timeout_s", 1, MAX_TIMEOUT_S, 300) or 300
    after = _resume_point(request)
    held = held_requests(request)
    with held.hold(caller.project_id) as admitted:
        if not admitted:  # gateway/holds.py: each open stream keeps a Redis connection busy
            raise RateLimitedError(
                f"this project already holds {held.per_project} decision streams and long "
                "polls open on this gateway; close one (streams resume from Last-Event-ID)",
                retry_after_s=1)
        return await _stream(request, caller.project_id, timeout_s, after)


async def _stream(request: web.Request, project_id: str, timeout_s: int,
                  after: str | None) -> web.StreamResponse:
    state = state_of(request)
    store = state.store
    if after is None:
        after = await store.last_decision_id(project_id)
    resp = web.StreamResponse(headers={
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
        TRACE_ID_HEADER: trace_id_of(request),
    })
    await resp.prepare(request)
    await resp.write(b"retry: 2000\n\n")
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    try:
        while deadline - time.monotonic() > 0:
            if request.transport is None or request.transport.is_closing():
                break  # the client went away (noticed within one read, not at the keepalive)
            entries = await store.read_decisions(project_id, after, 0)
            for entry_id, kind, body in entries:
                await resp.write(b"id: %s\nevent: %s\ndata: %s\n\n"
                                 % (entry_id.encode(), kind.encode(), body))
                after = entry_id
            now = time.monotonic()
            if entries:
                quiet_since = now
                continue
            if now - quiet_since >= KEEPALIVE_S:
                await resp.write(b": keepalive\n\n")
                quiet_since = now
            await asyncio.sleep(min(POLL_S, max(0.0, deadline - now)))
    except (ConnectionResetError, ConnectionError):
        pass  # the client went away; nothing to clean up
    return resp
