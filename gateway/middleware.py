"""One middleware around every handler: trace id, JSON error answers, HTTP metrics.

Errors become ``{"error", "field", "message"}`` with the status of their family
(:mod:`models.errors`); Redis connection failures become 503; aiohttp's own answers (404 no
such route, 405, 413) get the same JSON shape. Messages never contain keys or secrets. A ``503``
of a dependency (Redis or Kafka down, a Redis Cluster failing over) carries ``Retry-After``
(seconds, ``UnavailableError.retry_after_s``): the request was not taken and may be sent again
as it is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from gateway.body import CLOSE_AFTER, BodyTooLarge
from gateway.ingest import error_body
from gateway.limits import API_PROJECT, DECISION, charge_api, end_api
from gateway.metrics import GATEWAY_ERRORS, HTTP_DURATION, HTTP_REQUESTS
from gateway.query import QUERY_NAMES, check_query, check_single_headers
from gateway.state import state_of
from gateway.trace import TRACE_ID_HEADER, trace_id_of
from models.errors import (
    RatchetError,
    RateLimitedError,
    RedisUnavailableError,
    UnavailableError,
    UnsupportedEncoding,
    error_code,
)
from models.ratelimit import RateDecision, retry_after_header
from models.sanitize import shown
from ratchet.store.redis import REDIS_ERRORS, REDIS_FAILURES, client_broke, translate, unavailable
from ratchet.telemetry.children import child

__all__ = ["gateway_middleware", "json_error"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def json_error(status: int, error: str, message: str, field: str | None = None) -> web.Response:
    return web.json_response({"error": error, "field": field, "message": message}, status=status)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _from_http(exc: web.HTTPException, request: web.Request) -> web.StreamResponse:
    if exc.status == 413:
        limit = exc.limit if isinstance(exc, BodyTooLarge) else state_of(request).settings.max_body_bytes
        return json_error(413, error_code(413), f"request body is larger than {limit} bytes")
    if exc.status < 400:
        return exc  # redirects and the like keep aiohttp's answer
    resp = json_error(exc.status, error_code(exc.status), exc.reason)
    if exc.status == 405 and "Allow" in exc.headers:
        resp.headers["Allow"] = exc.headers["Allow"]
    return resp


def _check_encoding(request: web.Request) -> None:
    """415 for a compressed body, before anything reads it: every size limit and token
    charge counts the bytes sent, and a few KB of gzip inflate to megabytes (round 11 of the
    outside attack runs: 4 KB bodies parsed as 3.9 MB, another tenant's verdicts at 1–5 s)."""
    encoding = request.headers.get(hdrs.CONTENT_ENCODING)
    if encoding is not None and encoding.strip().lower() not in ("", "identity"):
        request[CLOSE_AFTER] = True  # its body is not read
        raise UnsupportedEncoding(
            f"Content-Encoding {shown(encoding)} is not accepted: send the body uncompressed "
            "(every size limit counts the bytes sent)")


@web.middleware
async def gateway_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.perf_counter()
    trace_id = trace_id_of(request)
    resp: web.StreamResponse
    try:
        _check_encoding(request)
        check_single_headers(request)
        names = request.app.get(QUERY_NAMES)
        if names is not None:
            check_query(request, names)
        try:
            resp = await handler(request)
        finally:
            end_api(request)
    except web.HTTPException as exc:
        resp = _from_http(exc, request)
    except RatchetError as exc:
        if isinstance(exc, UnavailableError):
            if isinstance(exc, RedisUnavailableError):  # translated by a store: count it here
                GATEWAY_ERRORS.labels("redis_unavailable").inc()
            log.warning("dependency unavailable: %s", exc)
        resp = web.json_response(error_body(exc), status=exc.status)
        if isinstance(exc, (RateLimitedError, UnavailableError)) and (
                exc.retry_after_s is not None):
            resp.headers["Retry-After"] = retry_after_header(exc.retry_after_s)
    except REDIS_ERRORS as exc:
        # Platform code that talks to Redis directly (not through a store) lands here.
        down = translate(exc)
        if isinstance(exc, REDIS_FAILURES):
            GATEWAY_ERRORS.labels("redis_unavailable").inc()
            log.warning("redis unavailable: %s", type(exc).__name__)
        else:
            GATEWAY_ERRORS.labels("internal").inc()
            log.error("redis refused a command (trace %s): %s", trace_id, exc)
        resp = web.json_response(error_body(down), status=down.status)
        if isinstance(down, UnavailableError) and down.retry_after_s is not None:
            resp.headers["Retry-After"] = retry_after_header(down.retry_after_s)
    except Exception as exc:
        if client_broke(exc):  # redis-py on a connection torn down under it: retry later
            GATEWAY_ERRORS.labels("redis_unavailable").inc()
            log.warning("redis unavailable: %s inside the client", type(exc).__name__)
            down = unavailable(exc)
            resp = web.json_response(error_body(down), status=down.status)
            if down.retry_after_s is not None:
                resp.headers["Retry-After"] = retry_after_header(down.retry_after_s)
        else:
            GATEWAY_ERRORS.labels("internal").inc()
            log.exception("unhandled error (trace %s)", trace_id)
            resp = json_error(500, "internal", f"internal error; quote trace id {trace_id}")
    if not resp.prepared and isinstance(resp, web.Response) and request.get(API_PROJECT):
        # the rest of an API call's tokens, by its size (a stream charges as it writes; a body
        # refused for its size was not read)
        read = (request.content_length or 0) if resp.status != 413 else 0
        await charge_api(request, read, resp.content_length or 0)
    if not resp.prepared:  # a stream (server-sent events) sent its headers already
        resp.headers[TRACE_ID_HEADER] = trace_id
        if request.get(CLOSE_AFTER):
            resp.force_close()  # Connection: close — the client opens a new one
        decision = request.get(DECISION)
        if isinstance(decision, RateDecision):
            resp.headers.update(decision.headers())
    route = _route(request)
    method = request.method if request.method in _METHODS else "other"
    child(HTTP_REQUESTS, route, method, str(resp.status)).inc()
    child(HTTP_DURATION, route).observe(time.perf_counter() - start)
    return resp
