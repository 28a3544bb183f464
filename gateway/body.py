"""Reading request input: JSON bodies within the size limit, and query parameters."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ratchet.errors import ValidationError

__all__ = ["int_query", "read_json"]


class BodyTooLarge(web.HTTPRequestEntityTooLarge):
    """Raised before reading when ``Content-Length`` already exceeds the limit."""


async def read_json(request: web.Request, max_bytes: int) -> Any:
    """The decoded JSON body; 413 above ``max_bytes`` (declared or actual), 400 if not JSON."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise BodyTooLarge(max_size=max_bytes, actual_size=declared)
    raw = await request.read()  # aiohttp's client_max_size enforces the limit while reading
    if not raw:
        raise ValidationError("request body is empty; send a JSON object", None)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"request body is not valid JSON: {exc}", None) from None


def int_query(request: web.Request, name: str, low: int, high: int, default: int | None) -> int | None:
    """An optional integer query parameter within ``[low, high]``; 400 naming it otherwise."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"{name} must be an integer, got {raw[:40]!r}", name) from None
    if not low <= value <= high:
        raise ValidationError(f"{name} must be between {low} and {high}", name)
    return value
