"""Webhook delivery signatures. Pure: the current time is always passed in.

A delivery carries::

    Ratchet-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
    Ratchet-Delivery: <delivery id>   (the same on every retry of one delivery)

Receivers verify with :func:`verify_delivery` (or the same few lines in their language): recompute
the HMAC over the timestamp, a dot and the raw body bytes, compare in constant time, and refuse
timestamps more than 5 minutes away from their clock (replays).

>>> header = sign_delivery("whsec_x", b'{"a":1}', timestamp=1700000000)
>>> header.startswith("t=1700000000,v1=")
True
>>> verify_delivery("whsec_x", b'{"a":1}', header, now=1700000100)
>>> verify_delivery("whsec_x", b'{"a":2}', header, now=1700000100)
Traceback (most recent call last):
...
models.errors.AuthError: webhook signature does not match the body
"""

from __future__ import annotations

import hashlib
import hmac

from models.errors import AuthError

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TOLERANCE_S",
    "sign_delivery",
    "verify_delivery",
]

SIGNATURE_HEADER = "Ratchet-Signature"
DELIVERY_HEADER = "Ratchet-Delivery"
EVENT_HEADER = "Ratchet-Event"
#: Oldest (or most future) signature timestamp a receiver accepts, seconds.
TOLERANCE_S = 300


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign_delivery(secret: str, body: bytes, *, timestamp: int) -> str:
    """The ``Ratchet-Signature`` header value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def verify_delivery(
    secret: str, body: bytes, header: str, *, now: float, tolerance_s: int = TOLERANCE_S
) -> None:
    """Raise :class:`AuthError` unless ``header`` signs ``body`` and is at most ``tolerance_s``
    away from ``now``. Several ``v1=`` values (secret rotation) are accepted if any matches."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif name == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise AuthError("webhook signature header must be 't=<unix seconds>,v1=<hex>'")
    if abs(now - timestamp) > tolerance_s:
        raise AuthError(f"webhook signature timestamp is more than {tolerance_s} s from now "
                        "(stale or replayed delivery)")
    expected = _mac(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise AuthError("webhook signature does not match the body")
