"""The gateway's HTTP connections: a cap per client address, and parser errors as JSON.

Two things happen before any handler or middleware runs, so they are handled here, in the
per-connection protocol object aiohttp creates (its ``RequestHandler``):

- **Connections per address.** A client that opens thousands of connections and sends nothing
  (or a byte at a time) would hold file descriptors and memory that every other tenant needs.
  A connection from an address that already holds ``RATCHET_GATEWAY_MAX_CONNECTIONS_PER_IP``
  is answered ``429`` (JSON, ``Retry-After: 1``) and closed at once. The address is the socket
  peer (IPv6 counted by its /64, as every per-address limit is), so behind a load balancer set
  the cap to 0 (off) and let the balancer limit clients. How long an open connection may take
  to send its request head is ``keepalive_timeout`` (``RATCHET_GATEWAY_HEAD_TIMEOUT_S``,
  passed to aiohttp by :func:`handler_args`); how long a body may take, :mod:`gateway.body`.
- **Unparseable requests.** aiohttp answers a request its parser refuses (bad request line,
  oversized or too many headers, a control character, bad chunked encoding) with a
  ``text/plain`` 400 whose body quotes the raw request head back to the sender — reflected
  content. Here every such answer is the gateway's JSON error (``{"error", "field",
  "message"}``) naming the problem in words, with nothing of the request in it: ``431`` for a
  head too large (a line over the limit or too many header lines), ``400`` otherwise.

aiohttp builds its protocol objects itself (``web_server.Server`` names the class), so
:func:`install` points it at :class:`GuardedRequestHandler` once per process. Servers without the
``connection_guard`` argument (test receivers in the same process) only get the JSON answers.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import orjson
from aiohttp import http_exceptions, web_protocol, web_server
from aiohttp.helpers import set_exception
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import Response, StreamResponse

from gateway.client_ip import limit_subject
from models.errors import error_code
from ratchet.config.settings import Settings

__all__ = [
    "ConnectionGuard",
    "GuardedRequestHandler",
    "handler_args",
    "install",
    "parser_problem",
]


class ConnectionGuard:
    """Open connections per client address (one per gateway process; the event loop is
    single-threaded, so a plain counter is exact)."""

    def __init__(self, per_address: int) -> None:
        self.per_address = per_address
        self.open: Counter[str] = Counter()

    def admit(self, subject: str) -> bool:
        """Count a new connection from ``subject``; False (not counted) when it is at the cap."""
        if self.per_address > 0 and self.open[subject] >= self.per_address:
            return False
        self.open[subject] += 1
        return True

    def release(self, subject: str) -> None:
        left = self.open[subject] - 1
        if left > 0:
            self.open[subject] = left
        else:
            del self.open[subject]


def _body(status: int, message: str, field: str | None = None) -> bytes:
    return orjson.dumps({"error": error_code(status), "field": field, "message": message})


#: Fixed phrases of the HTTP parser's messages (llhttp and aiohttp's Python parser) → our words.
_PHRASES: tuple[tuple[str, str], ...] = (
    ("header token", "a header name or value holds characters HTTP does not allow"),
    ("header value char", "a header name or value holds characters HTTP does not allow"),
    ("invalid header", "a header name or value holds characters HTTP does not allow"),
    ("expected cr", "request lines must end in CRLF"),
    ("expected lf", "request lines must end in CRLF"),
    ("can't be present with content-length",
     "Transfer-Encoding and Content-Length must not both be sent"),
    ("host", "the request has no Host header (HTTP/1.1 requires one)"),
    ("chunk", "the body's chunked transfer encoding is malformed"),
    ("content-length", "the Content-Length header is not a valid length"),
    ("method", "the request method is not a valid HTTP method"),
    ("version", "the request line is not 'METHOD /path HTTP/1.x'"),
)


def parser_problem(exc: BaseException | None, status: int) -> tuple[int, str]:
    """``(status, message)`` for an exception aiohttp's parser raised — the problem in words,
    never the exception's text (it quotes the request)."""
    if isinstance(exc, http_exceptions.LineTooLong):
        return 431, ("a request line or header line is too long (at most 8,190 bytes each); "
                     "nothing was read")
    if isinstance(exc, http_exceptions.BadHttpMessage) and "Too many headers" in exc.message:
        return 431, "too many header lines (at most 128); nothing was read"
    if isinstance(exc, http_exceptions.BadHttpMethod):
        return 400, "the request method is not a valid HTTP method"
    if isinstance(exc, http_exceptions.BadStatusLine):
        return 400, "the request line is not 'METHOD /path HTTP/1.x'"
    if isinstance(exc, http_exceptions.InvalidURLError):
        return 400, "the request target is not a valid URL path"
    if isinstance(exc, http_exceptions.InvalidHeader):
        return 400, "a header name or value holds characters HTTP does not allow"
    if isinstance(exc, http_exceptions.TransferEncodingError):
        return 400, "the body's chunked transfer encoding is malformed"
    if isinstance(exc, http_exceptions.ContentLengthError):
        return 400, "the body is shorter or longer than its Content-Length"
    if isinstance(exc, http_exceptions.ContentEncodingError):
        return 415, ("the body's Content-Encoding is not accepted: send the body uncompressed "
                     "(every size limit counts the bytes sent)")
    if isinstance(exc, http_exceptions.HttpProcessingError):
        # the parser's own wording comes first in its message, the request's bytes after it:
        # only fixed phrases are looked for, nothing of the message is repeated
        detail = str(exc.message).lower()
        for phrase, words in _PHRASES:
            if phrase in detail:
                return 400, words
        return 400, "the request is not valid HTTP/1.1 (malformed head or framing)"
    if status == 504:
        return 504, "the request took too long to handle"
    if status >= 500:
        return 500, "internal error"
    return status, "the request could not be read"


class GuardedRequestHandler(web_protocol.RequestHandler):
    """aiohttp's connection protocol with the per-address cap and JSON parser errors."""

    __slots__ = ("_guard", "_subject")

    def __init__(self, manager: Any, *, connection_guard: ConnectionGuard | None = None,
                 **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = connection_guard
        self._subject: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._guard is not None:
            peer = transport.get_extra_info("peername")
            subject = limit_subject(str(peer[0])) if isinstance(peer, tuple) else "unknown"
            if not self._guard.admit(subject):
                message = (f"too many open connections from this address (at most "
                           f"{self._guard.per_address}); close idle ones and retry")
                body = _body(429, message)
                head = (b"HTTP/1.1 429 Too Many Requests\r\nServer: ratchet\r\n"
                        b"Content-Type: application/json; charset=utf-8\r\nRetry-After: 1\r\n"
                        b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
                writable: Any = transport
                writable.write(head + body)
                transport.close()
                self._manager = None  # connection_lost has nothing to undo
                return
            self._subject = subject
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._guard is not None and self._subject is not None:
            self._guard.release(self._subject)
            self._subject = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # llhttp refuses a malformed body (bad chunk framing) arriving after its handler started:
        # aiohttp queues an error answer for after the handler, but leaves the handler waiting
        # for the rest of the body until it times out. Hand the error to the handler's body
        # read instead (400 at once), drop the queued answer and close after the response.
        request = self._current_request
        if request is None or not self._messages:
            return
        info = self._messages[-1][0]
        if not isinstance(info, web_protocol._ErrInfo) or request.content.is_eof():
            return
        payload = request.content
        self._messages.pop()
        set_exception(payload, web_protocol.RequestPayloadError("malformed request body"),
                      info.exc)
        payload.feed_eof()
        self.close()

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None, message: str | None = None
                     ) -> StreamResponse:
        """Every answer aiohttp makes up itself: the JSON error format, nothing echoed."""
        # keep aiohttp's logging (through the gateway's head-redacting logger) and its check
        # that nothing was sent yet; its answer is replaced
        super().handle_error(request, status, exc, None)
        code, text = parser_problem(exc, status)
        resp = Response(status=code, body=_body(code, text), content_type="application/json")
        resp.force_close()
        return resp


def handler_args(settings: Settings, guard: ConnectionGuard) -> dict[str, Any]:
    """aiohttp ``handler_args`` of the gateway application: the head timeout and the guard."""
    return {"keepalive_timeout": settings.gateway_head_timeout_s, "connection_guard": guard}


def install() -> None:
    """Make aiohttp build :class:`GuardedRequestHandler` for every connection (idempotent)."""
    web_server.RequestHandler = GuardedRequestHandler  # type: ignore[attr-defined]
