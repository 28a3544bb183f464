"""Requests a project holds open on one gateway process: long polls and decision streams.

A long poll (``GET /v1/verdicts/{id}?wait_ms=``) re-reads Redis every 50–250 ms and a decision
stream (``GET /v1/decisions:stream``) keeps one Redis connection in a blocking read, for as long
as they are open. Unbounded, one tenant opening a few thousand of them multiplies Redis reads
and connections for everyone (measured by ``benchmarks/attack.py``). Each gateway process
therefore holds at most ``RATCHET_MAX_HELD_REQUESTS_PER_PROJECT`` of them per project: beyond
it, a long poll answers at once with the state as it is (as ``wait_ms=0`` would — the caller
polls again) and a new decision stream is ``429`` with ``Retry-After``. The count is in process
memory (the event loop is single-threaded, so it is exact): no Redis round trip per request.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

from aiohttp import web

__all__ = ["API_CALLS", "HELD", "HeldRequests", "held_requests"]


class HeldRequests:
    """Open held requests per project."""

    def __init__(self, per_project: int) -> None:
        self.per_project = per_project
        self.open: Counter[str] = Counter()

    @contextlib.contextmanager
    def hold(self, project_id: str) -> Iterator[bool]:
        """Yields True (and counts the request until the block ends) when the project is under
        its cap, False (not counted) when it is at it. A cap of 0 means no cap."""
        if not self.enter(project_id):
            yield False
            return
        try:
            yield True
        finally:
            self.leave(project_id)

    def enter(self, project_id: str) -> bool:
        """Count one more request of the project, if it is under its cap (:meth:`leave` it)."""
        if self.per_project > 0 and self.open[project_id] >= self.per_project:
            return False
        self.open[project_id] += 1
        return True

    def leave(self, project_id: str) -> None:
        left = self.open[project_id] - 1
        if left > 0:
            self.open[project_id] = left
        else:
            del self.open[project_id]


#: Where the application keeps its :class:`HeldRequests`.
HELD = web.AppKey("held_requests", HeldRequests)
#: API calls (every authenticated call but ingest, long polls and streams) a project has in
#: flight on this gateway (``RATCHET_MAX_API_CALLS_PER_PROJECT``): the size of an answer is
#: charged after it is built, so this bounds how much work a burst of calls can start at once.
API_CALLS = web.AppKey("api_calls", HeldRequests)


def held_requests(request: web.Request) -> HeldRequests:
    return request.app[HELD]
