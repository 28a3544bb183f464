"""Requests waiting for verdicts (``POST /v1/events?wait_ms=``), woken by :mod:`gateway.replies`.

A gateway instance holds only its own callers' futures; the verdicts of those callers reach it on
its reply route (workers publish them there), so no gateway reads the ``verdicts`` topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from typing import Any

from gateway.metrics import INGEST_TO_VERDICT, WAITED_VERDICTS
from models.envelope import VerdictEnvelope

__all__ = ["Waiters"]

WaitKey = tuple[str, str]


class Waiters:
    """Futures of requests waiting for the verdict of (project id, event id)."""

    def __init__(self) -> None:
        self._waiting: defaultdict[WaitKey, list[asyncio.Future[dict[str, Any]]]] = defaultdict(list)

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, project_id: str, event_id: str) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[(project_id, event_id)].append(fut)
        return fut

    def discard(self, project_id: str, event_id: str, fut: asyncio.Future[dict[str, Any]]) -> None:
        key = (project_id, event_id)
        futures = self._waiting.get(key)
        if futures is None:
            return
        with contextlib.suppress(ValueError):
            futures.remove(fut)
        if not futures:
            del self._waiting[key]

    def deliver(self, env: VerdictEnvelope) -> int:
        """Wake the requests waiting for these verdicts; returns how many were woken."""
        woken = 0
        for verdict in env.verdicts:
            futures = self._waiting.pop((env.project_id, verdict.event_id), None)
            if not futures:
                continue
            body = verdict.to_dict()
            for fut in futures:
                if not fut.done():
                    fut.set_result(body)
                    woken += 1
                    WAITED_VERDICTS.inc()
            if env.received_at:
                INGEST_TO_VERDICT.observe(max(0.0, time.time() - env.received_at))
        return woken
