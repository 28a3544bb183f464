"""The gateway's access log: one structured line per HTTP request, never a credential.

Why a class of aiohttp's own (:class:`aiohttp.abc.AbstractAccessLogger`) rather than a
middleware: it also sees the answers aiohttp gives before any handler runs (400 on a malformed
request, 413), with the time spent, once the response is sent.

Fields (logger ``ratchet.access``, message ``request``): ``method``, ``path`` (without the query
string: a query could carry anything a client put there), ``route`` (the route template, bounded),
``status``, ``duration_ms``, ``bytes`` (response body), ``trace_id`` and ``project`` (the project of
an authenticated caller, else empty). Headers — ``Authorization``, signatures, API keys — and
bodies are never read here.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest

from gateway.trace import TRACE_ID_HEADER

__all__ = ["ACCESS_LOGGER", "AccessLogger", "note_project", "project_of"]

#: The logger every access line goes to.
ACCESS_LOGGER = "ratchet.access"

# aiohttp >= 3.12 wants typed request keys; older versions take a plain string
_PROJECT: Any = (web.RequestKey("ratchet_project", str) if hasattr(web, "RequestKey")
                 else "ratchet_project")


def note_project(request: web.Request, project_id: str) -> None:
    """Remember the authenticated project of ``request`` for its access-log line."""
    request[_PROJECT] = project_id


def project_of(request: BaseRequest) -> str:
    value = request.get(_PROJECT, "")
    return value if isinstance(value, str) else ""


def _route(request: BaseRequest) -> str:
    # ``Request.match_info`` asserts it is set; a request aiohttp refused before routing has none
    match_info = getattr(request, "_match_info", None)
    if match_info is None:
        return "unmatched"
    resource = match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


class AccessLogger(AbstractAccessLogger):
    """Writes one ``ratchet.access`` record per request (``web.run_app(access_log_class=...)``)."""

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "route": _route(request),
                "status": response.status,
                "duration_ms": round(time * 1000, 3),
                "bytes": response.body_length,
                "trace_id": response.headers.get(TRACE_ID_HEADER, ""),
                "project": project_of(request),
            },
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
