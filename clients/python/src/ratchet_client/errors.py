"""The SDK's exceptions: one class per way a call can fail, each carrying what the gateway said.

Every error answer of the gateway is ``{"error", "field", "message"}`` plus an ``X-Trace-Id``
header; :func:`error_for` turns one into the matching exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "ActionRejected",
    "ApprovalTimeout",
    "AuthError",
    "ConflictError",
    "DecisionTimeout",
    "NotFoundError",
    "RatchetError",
    "RateLimitedError",
    "UnavailableError",
    "ValidationError",
    "error_for",
]


class RatchetError(Exception):
    """Base class: ``status`` (HTTP, 0 if none), ``code`` (the gateway's ``error``), ``field``
    (dotted path of the bad input, if any) and the ``trace_id`` to quote to an operator."""

    def __init__(self, message: str, *, status: int = 0, code: str = "",
                 field: str | None = None, trace_id: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field
        self.trace_id = trace_id


class AuthError(RatchetError):
    """401: a missing or wrong API key, or an event whose signature does not verify."""


class ValidationError(RatchetError):
    """400/413/422: the request or an event is malformed; ``field`` names what (e.g.
    ``payload.amount`` or ``events[3].priority``)."""


class NotFoundError(RatchetError):
    """404: no such event or verdict in this project (or not decided yet)."""


class ConflictError(RatchetError):
    """409: the event id was used for another event, or the approval was already decided."""


class RateLimitedError(RatchetError):
    """429 after the retries: ``retry_after`` is the gateway's ``Retry-After`` in seconds."""

    def __init__(self, message: str, *, retry_after: float = 0.0, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class UnavailableError(RatchetError):
    """503/5xx or no connection, after the retries: the gateway (or Kafka behind it) is down."""


class DecisionTimeout(RatchetError):
    """No verdict (or, for a paused event, no human decision) within the timeout; ``event_id``
    can be waited on again."""

    def __init__(self, message: str, *, event_id: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.event_id = event_id


class ApprovalTimeout(DecisionTimeout):
    """A paused event was neither approved nor rejected within the timeout."""


class ActionRejected(RatchetError):
    """A guarded tool call was refused: the verdict was ``reject``, or a person rejected the
    paused call. ``verdict`` is the :class:`ratchet_client.Verdict` that refused it."""

    def __init__(self, message: str, *, verdict: Any) -> None:
        super().__init__(message)
        self.verdict = verdict


_BY_STATUS = {400: ValidationError, 401: AuthError, 403: AuthError, 404: NotFoundError,
              409: ConflictError, 413: ValidationError, 422: ValidationError,
              429: RateLimitedError}


def error_for(status: int, body: Any, headers: Mapping[str, str]) -> RatchetError:
    """The exception for an error answer (``body``: its decoded JSON, or text)."""
    if isinstance(body, dict):
        message = str(body.get("message") or body.get("error") or f"HTTP {status}")
        code = str(body.get("error") or "")
        field = body.get("field")
    else:
        message, code, field = (str(body)[:500] or f"HTTP {status}"), "", None
    kw: dict[str, Any] = {"status": status, "code": code,
                          "field": None if field is None else str(field),
                          "trace_id": headers.get("x-trace-id", "")}
    if status == 429:
        return RateLimitedError(message, retry_after=retry_after_s(headers) or 0.0, **kw)
    cls = _BY_STATUS.get(status, UnavailableError if status >= 500 else RatchetError)
    return cls(message, **kw)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds (the gateway sends whole seconds), or ``None``."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None
