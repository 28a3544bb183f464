"""Trace ids: taken from a sane ``X-Trace-Id`` request header or generated, echoed on every
response, and carried in the ingest envelope and its Kafka header into the verdict."""

from __future__ import annotations

import re
import uuid
from typing import Any

from aiohttp import web

__all__ = ["TRACE_ID_HEADER", "choose_trace_id", "trace_id_of"]

TRACE_ID_HEADER = "X-Trace-Id"
_SANE = re.compile(r"[A-Za-z0-9._-]{8,64}")
# aiohttp >= 3.12 wants typed request keys; older versions take a plain string
_KEY: Any = (web.RequestKey("ratchet_trace_id", str) if hasattr(web, "RequestKey")
             else "ratchet_trace_id")


def choose_trace_id(header: str | None) -> str:
    """The caller's trace id if it is 8–64 characters of ``[A-Za-z0-9._-]``, else a new one."""
    if header and _SANE.fullmatch(header):
        return header
    return uuid.uuid4().hex


def trace_id_of(request: web.Request) -> str:
    value = request.get(_KEY)
    if not isinstance(value, str):
        given = request.headers.getall(TRACE_ID_HEADER, ())
        # two trace ids (a client's and a proxy's) name no one trace: a new one, as for a bad one
        value = choose_trace_id(given[0] if len(given) == 1 else None)
        request[_KEY] = value
    return value
