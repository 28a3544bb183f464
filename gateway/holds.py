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

__all__ = ["HELD", "HeldRequests", "held_requests"]


class HeldRequests:
    """Open held requests per project."""

    def __init__(self, per_project: int) -> None:
        self.per_project = per_project
        self.open: Counter[str] = Counter()

    @contextlib.contextmanager
    def hold(self, project_id: str) -> Iterator[bool]:
        """Yields True (and counts the request until the block ends) when the project is under
        its cap, False (not counted) when it is at it. A cap of 0 means no cap."""
        if self.per_project > 0 and self.open[project_id] >= self.per_project:
            yield False
            return
        self.open[project_id] += 1
        try:
            yield True
        finally:
            left = self.open[project_id] - 1
            if left > 0:
                self.open[project_id] = left
            else:
                del self.open[project_id]


#: Where the application keeps its :class:`HeldRequests`.
HELD = web.AppKey("held_requests", HeldRequests)


def held_requests(request: web.Request) -> HeldRequests:
    return request.app[HELD]
