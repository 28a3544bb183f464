"""Reading request input: JSON bodies within the size limit, and query parameters."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from gateway.connections import parser_problem
from gateway.state import state_of
from models.errors import RequestTimeoutError, ValidationError
from models.json_keys import refuse_duplicate_keys
from models.sanitize import shown

__all__ = ["CLOSE_AFTER", "BodyTooLarge", "int_query", "read_bytes", "read_json"]


#: A decimal integer of at most 18 digits (fits an int64; longer is out of every range here).
_INTEGER = re.compile(r"-?[0-9]{1,18}")


class BodyTooLarge(web.HTTPRequestEntityTooLarge):
    """A body over its route's limit: before reading when ``Content-Length`` already exceeds
    it, or while reading one of unknown length. ``limit`` is the route's (the 413 names it)."""

    def __init__(self, *, max_size: int, actual_size: int) -> None:
        super().__init__(max_size=max_size, actual_size=actual_size)
        self.limit = max_size


#: The answer closes the connection (``Connection: close``): the request's body was left unread,
#: so the connection cannot carry another request.
CLOSE_AFTER: web.RequestKey[bool] = web.RequestKey("ratchet_close_after", bool)
#: The body as read (a handler and the admission may both ask for it).
_BODY: web.RequestKey[bytes] = web.RequestKey("ratchet_body", bytes)
_CHUNK = 64 << 10


async def read_bytes(request: web.Request, max_bytes: int) -> bytes:
    """The raw body (read once, kept on the request); 413 above ``max_bytes`` — declared, or
    counted while reading a body of unknown length, which stops at the limit (aiohttp's own
    cap is the largest route's) — 408 when it does not arrive within
    ``RATCHET_GATEWAY_BODY_TIMEOUT_S`` (a body sent a byte at a time would otherwise hold its
    connection and handler for ever), 400 when its framing is malformed."""
    cached: bytes | None = request.get(_BODY)
    if cached is not None:
        if len(cached) > max_bytes:
            raise BodyTooLarge(max_size=max_bytes, actual_size=len(cached))
        return cached
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise BodyTooLarge(max_size=max_bytes, actual_size=declared)
    timeout_s = state_of(request).settings.gateway_body_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            body = await _read_capped(request, max_bytes)
            request[_BODY] = body
            return body
    except TimeoutError:
        request.protocol.close()  # the rest of the body is not worth reading
        raise RequestTimeoutError(
            f"the request body did not arrive within {timeout_s:g} s; send it at once") from None
    except RequestPayloadError as exc:
        _, message = parser_problem(exc.__cause__ or exc, 400)
        raise ValidationError(message, None) from None
    except ConnectionError:
        # the client went away mid-body: its failure, not a dependency's (a builtin
        # ConnectionError would otherwise read as "Redis unavailable" in the logs)
        raise ValidationError("the client closed the connection before its request body "
                              "arrived", None) from None


async def _read_capped(request: web.Request, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            request[CLOSE_AFTER] = True  # the rest is not read: the connection ends with the 413
            raise BodyTooLarge(max_size=max_bytes, actual_size=size)
        chunks.append(chunk)


async def read_json(request: web.Request, max_bytes: int) -> Any:
    """The decoded JSON body; 413 above ``max_bytes`` (declared or actual), 400 if not JSON,
    not UTF-8, holding a number no double can carry (``1e400``; NaN/Infinity are not JSON), or
    an object with a key twice (:mod:`models.json_keys`: orjson keeps the last, a proxy or a
    log reader may keep the first)."""
    raw = await read_bytes(request, max_bytes)
    if not raw:
        raise ValidationError("request body is empty; send a JSON object", None)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(_json_problem(str(exc)), None) from None
    refuse_duplicate_keys(raw, value)
    return value


def _json_problem(detail: str) -> str:
    if "UTF-8" in detail or "surrogate" in detail:
        return f"request body is not valid UTF-8 ({detail}); send UTF-8 encoded JSON"
    if "infinity" in detail:
        return (f"request body holds a number too large for a double ({detail}); numbers must "
                "be finite")
    return f"request body is not valid JSON: {detail}"


def int_query(request: web.Request, name: str, low: int, high: int, default: int | None) -> int | None:
    """An optional integer query parameter within ``[low, high]``; 400 naming it otherwise."""
    raw = request.query.get(name)
    if raw is None:
        return default
    # ASCII digits only: int() also takes '١٢', ' 7 ' and '1_0', and str.isdigit() takes '²'
    if not _INTEGER.fullmatch(raw):
        raise ValidationError(f"{name} must be an integer, got {shown(raw)}", name)
    value = int(raw)
    if not low <= value <= high:
        raise ValidationError(f"{name} must be between {low} and {high}", name)
    return value
