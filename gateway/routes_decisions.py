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
import logging
import re
import time

from aiohttp import web

from gateway.auth import authenticate
from gateway.body import int_query
from gateway.holds import held_requests
from gateway.limits import charge_api
from gateway.metrics import GATEWAY_ERRORS
from gateway.state import state_of
from gateway.trace import TRACE_ID_HEADER, trace_id_of
from models.errors import RateLimitedError, UnavailableError, ValidationError
from models.ratelimit import API_BYTES_PER_TOKEN
from models.sanitize import shown
from ratchet.store.redis import REDIS_FAILURES, client_broke

__all__ = ["routes"]

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

#: A Redis stream entry id as a client may send it back: ``<ms>-<seq>``, two decimal numbers.
_ENTRY_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
#: The largest value of either part of a stream entry id (Redis keeps each as an unsigned 64-bit
#: integer and refuses larger ones with "Invalid stream ID").
MAX_ID_PART = 2**64 - 1
#: Pause between reads of the stream while nothing new arrives, seconds. Reads do not block in
#: Redis: a blocking read holds one of the gateway's pooled Redis connections for its whole
#: wait, so a few hundred open streams would take every connection from other requests.
POLL_S = 0.25
#: An idle stream sends a comment this often, seconds.
KEEPALIVE_S = 15.0
MAX_TIMEOUT_S = 3_600


def _resume_point(request: web.Request) -> str | None:
    field, raw = "Last-Event-ID", request.headers.get("Last-Event-ID")
    if not raw:
        field, raw = "after", request.query.get("after")
    if raw is None or raw == "":
        return None
    match = _ENTRY_ID.fullmatch(raw)
    if match is None or any(int(part) > MAX_ID_PART for part in match.groups()):
        raise ValidationError(
            f"{field} must be an event id this stream sent: <ms>-<seq> (like 1700000000000-0), "
            f"each part a whole number from 0 to {MAX_ID_PART}, got {shown(raw)}", field)
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
            try:
                entries = await store.read_decisions(project_id, after, 0)
            except Exception as exc:  # noqa: BLE001  (logged; any failure ends the stream)
                # The headers are sent: no error answer can follow. End the stream (the client
                # reconnects after `retry` with Last-Event-ID and loses nothing) rather than
                # leave it open and silent until the client gives up.
                _log_read_error(exc, project_id)
                await resp.write(b": stream ended by a server error; reconnect with "
                                 b"Last-Event-ID\n\n")
                break
            sent = 0
            for entry_id, kind, body in entries:
                chunk = (b"id: %s\nevent: %s\ndata: %s\n\n"
                         % (entry_id.encode(), kind.encode(), body))
                await resp.write(chunk)
                sent += len(chunk)
                after = entry_id
            now = time.monotonic()
            if entries:
                quiet_since = now
                # what was sent takes the project's api tokens; once they are spent the
                # stream ends (the client resumes from Last-Event-ID when they are back)
                charged = await charge_api(request, 0, sent + API_BYTES_PER_TOKEN)
                if charged is not None and charged.remaining < 0:
                    await resp.write(b": the project's api rate limit is spent; reconnect "
                                     b"with Last-Event-ID after a while\n\n")
                    break
                continue
            if now - quiet_since >= KEEPALIVE_S:
                await resp.write(b": keepalive\n\n")
                quiet_since = now
            await asyncio.sleep(min(POLL_S, max(0.0, deadline - now)))
    except (ConnectionResetError, ConnectionError):
        pass  # the client went away; nothing to clean up
    return resp


def _log_read_error(exc: Exception, project_id: str) -> None:
    if isinstance(exc, (UnavailableError, *REDIS_FAILURES)) or client_broke(exc):
        GATEWAY_ERRORS.labels("redis_unavailable").inc()
        log.warning("decision stream of project %s ended: redis unavailable (%s)", project_id,
                    type(exc).__name__)
    else:
        GATEWAY_ERRORS.labels("internal").inc()
        log.error("decision stream of project %s ended: reading it failed: %s", project_id,
                  exc, exc_info=exc)
