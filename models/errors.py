"""The one errors module: a base exception, its families, and Lua result codes.

Every error Ratchet raises on purpose derives from :class:`RatchetError` and carries a message
that says what was wrong and, where possible, what to do about it.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "ERROR_CODES",
    "AuthError",
    "ConfigError",
    "ConflictError",
    "ForbiddenError",
    "NotFoundError",
    "RatchetError",
    "RateLimitedError",
    "RedisUnavailableError",
    "RequestTimeoutError",
    "ScriptCode",
    "StoreError",
    "TooLargeError",
    "UnavailableError",
    "UnprocessableError",
    "UnsupportedEncoding",
    "ValidationError",
    "error_code",
    "raise_for_code",
]

#: The ``error`` code of every HTTP error answer by status: the one table the gateway uses for
#: its own errors, aiohttp's (404 no route, 405, 413) and per-item batch results.
ERROR_CODES: dict[int, str] = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_encoding",
    422: "unprocessable",
    431: "headers_too_large",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}


def error_code(status: int) -> str:
    """The ``error`` code for ``status`` (``http_error`` / ``internal`` for unlisted ones)."""
    return ERROR_CODES.get(status, "internal" if status >= 500 else "http_error")


class RatchetError(Exception):
    """Base of every error Ratchet raises deliberately."""

    status: int = 500


class ConfigError(RatchetError):
    """A setting, config file or command-line option is invalid."""

    status = 500


class ValidationError(RatchetError):
    """Client input is malformed; ``field`` names the offending field (dotted path)."""

    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def as_dict(self) -> dict[str, str | None]:
        return {"error": error_code(self.status), "field": self.field, "message": str(self)}


class TooLargeError(ValidationError):
    """Too much in one request, though each part is valid (a batch's events over its shared
    value budget): ``413``; the parts it names can be sent again in another request."""

    status = 413


class AuthError(RatchetError):
    """Missing or wrong credentials, or a bad/stale signature."""

    status = 401


class ForbiddenError(RatchetError):
    """The caller is authenticated but its key's role may not do this (e.g. an ingest key on
    an admin route, or on another agent's events)."""

    status = 403

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFoundError(RatchetError):
    status = 404


class ConflictError(RatchetError):
    """A request conflicts with stored state (e.g. a reused event id with a different body);
    ``field`` optionally names what conflicts."""

    status = 409

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnprocessableError(RatchetError):
    """Well-formed input that cannot be honoured, e.g. an ``Idempotency-Key`` reused for a
    different request; ``field`` names the offending field or header."""

    status = 422

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class RequestTimeoutError(RatchetError):
    """The client did not send its request (the body) within the time the server allows."""

    status = 408


class UnsupportedEncoding(RatchetError):
    """A request body in a ``Content-Encoding`` the gateway does not take (compressed)."""

    status = 415


class RateLimitedError(RatchetError):
    status = 429

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnavailableError(RatchetError):
    """A dependency (Redis, Kafka) is down; the request can be retried later.

    ``retry_after_s`` is the ``Retry-After`` of the 503 (short: a restarted Redis or a promoted
    replica answers within seconds); ``None`` when waiting will not help (a switched-off
    feature)."""

    status = 503
    retry_after_s: float | None = 1.0


class RedisUnavailableError(UnavailableError):
    """Redis is down or timed out (the store's one translation of a Redis failure): what the
    gateway counts as ``ratchet_gateway_errors_total{kind="redis_unavailable"}``."""


class StoreError(RatchetError):
    """A Lua script answered with an error code."""

    status = 500


class ScriptCode(IntEnum):
    """Negative result codes returned by the Lua scripts in ``lua/``."""

    OK = 0
    DUPLICATE = 1
    BAD_ARGUMENTS = -1
    UNKNOWN_EVENT = -2
    NOT_PENDING = -3
    HEAD_MOVED = -4
    LIMIT_REACHED = -5
    #: signup_issue.lua: per-IP hourly / daily limit, global daily cap.
    SIGNUP_IP_HOUR = -10
    SIGNUP_IP_DAY = -11
    SIGNUP_DAILY_CAP = -12
    #: signup redemption (ratchet/platform/signup.py): the token is unknown, expired or redeemed.
    TOKEN_INVALID = -13
    #: rotate_key.lua: the presented key no longer maps to the project (rotated concurrently).
    KEY_MISMATCH = -14
    #: rotate_secret.lua: no such agent in the project.
    UNKNOWN_AGENT = -15
    #: a freshly generated id or key already exists (astronomically unlikely; retry).
    ALREADY_EXISTS = -16
    #: idempotency_end.lua: the reservation expired or belongs to another request.
    LEASE_LOST = -20


def raise_for_code(code: int, script: str) -> None:
    """Turn a negative script code into a :class:`StoreError`."""
    if code >= 0:
        return
    try:
        name = ScriptCode(code).name
    except ValueError:
        name = f"code {code}"
    raise StoreError(f"Lua script {script} failed: {name}")
