"""The query parameters each route takes, read off the gateway's OpenAPI document.

A name a route does not take is refused (400, naming the ones it does take) instead of ignored:
a typo must not quietly widen or change an answer (``GET /v1/audit?form=…`` would otherwise list
everything from the start). One source of truth: the document that ``GET /openapi.json`` serves
and the fuzz tests check the gateway against.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from models.errors import ValidationError
from models.sanitize import shown

__all__ = ["QUERY_NAMES", "SINGLE_HEADERS", "QueryNames", "check_query", "check_single_headers",
           "query_names"]

#: Headers that carry one value: a second one is refused (400), not silently ignored. (Two
#: ``X-Trace-Id`` headers are not refused: the request gets a new trace id, as for a bad one.)
SINGLE_HEADERS = ("Authorization", "X-Ratchet-Timestamp", "X-Ratchet-Signature",
                  "Idempotency-Key", "Last-Event-ID")

#: (method, route as aiohttp names it) → the query parameter names it takes.
QueryNames = Mapping[tuple[str, str], frozenset[str]]

QUERY_NAMES: web.AppKey[QueryNames] = web.AppKey("ratchet_query_names", dict)

_METHODS = ("get", "put", "post", "delete", "patch", "options", "head")


def query_names(doc: Mapping[str, Any]) -> dict[tuple[str, str], frozenset[str]]:
    """Each operation's query parameter names in an OpenAPI document (path-level ones too).

    >>> doc = {"paths": {"/v1/audit": {"get": {"parameters": [
    ...     {"name": "from", "in": "query"}, {"name": "x", "in": "header"}]}}}}
    >>> query_names(doc)
    {('GET', '/v1/audit'): frozenset({'from'})}
    """
    out: dict[tuple[str, str], frozenset[str]] = {}
    for path, item in doc.get("paths", {}).items():
        shared = item.get("parameters", [])
        for method in _METHODS:
            op = item.get(method)
            if op is None:
                continue
            out[(method.upper(), path)] = frozenset(
                p["name"] for p in [*shared, *op.get("parameters", [])] if p.get("in") == "query")
    return out


def check_query(request: web.Request, names: QueryNames) -> None:
    """Raise :class:`ValidationError` (400) when the request names a query parameter its route
    does not take, or names one twice (which of the two counts would be a guess). A route
    outside the document is not checked (the gateway refuses to start
    with one: :func:`gateway.app.build_app`)."""
    if not request.query_string:
        return
    given = [name for name, _ in request.query.items()]  # iterating the keys skips repeats
    if len(given) != len(set(given)):
        twice = next(name for i, name in enumerate(given) if name in given[:i])
        raise ValidationError(f"query parameter {shown(twice)} is given more than once; "
                              "give it once", twice)
    resource = request.match_info.route.resource
    if resource is None:
        return
    method = "GET" if request.method == "HEAD" else request.method
    allowed = names.get((method, resource.canonical))
    if allowed is None:
        return
    for name in request.query:
        if name not in allowed:
            takes = ", ".join(sorted(allowed)) if allowed else "none"
            raise ValidationError(
                f"unknown query parameter {shown(name)}; {method} {resource.canonical} takes: "
                f"{takes}", name)


def check_single_headers(request: web.Request) -> None:
    """Raise :class:`ValidationError` (400) when a header of :data:`SINGLE_HEADERS` comes twice:
    which of two timestamps or signatures counts must not be a guess."""
    headers = request.headers
    for name in SINGLE_HEADERS:
        if len(headers.getall(name, ())) > 1:
            raise ValidationError(f"send exactly one {name} header", name)
