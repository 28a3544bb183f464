"""Replay protection, the pure part: ``Idempotency-Key`` values, request and event fingerprints,
and the stored first answer. No I/O (Redis lives in :mod:`ratchet.store.idempotency`).

- A request fingerprint covers what the request *asks*: method, path, query and the exact body
  bytes. The same key with another fingerprint is a different request → 422.
- A headers digest covers the request headers that authorise what it asks beside the API key:
  on ``POST /v1/events`` the signature and its timestamp (a batch carries them in its body).
  The same key and fingerprint with another digest is not the request that was answered → 422.
  (The API key itself names the record: another key never meets it.)
- An event fingerprint covers what an event *is*: its RFC 8785 form — the canonical form the
  signature covers — without the signature and its timestamp, so a re-signed retry of the same
  event matches even when its numbers were written anew (``1.0`` for ``1``, ``1e2`` for
  ``100``), while a reused ``event_id`` with another agent, run, payload or anything else does
  not → 409.

>>> validate_key("order-42/retry") == "order-42/retry"
True
>>> validate_key("")
Traceback (most recent call last):
...
models.errors.ValidationError: Idempotency-Key must be 1 to 255 visible ASCII characters
>>> a = request_fingerprint("POST", "/v1/events", "", b'{"a": 1}')
>>> a == request_fingerprint("POST", "/v1/events", "", b'{"a": 1}')
True
>>> a == request_fingerprint("POST", "/v1/events", "", b'{"a": 2}')
False
>>> h = headers_digest(["v2=ab", "1700000000"])
>>> h == headers_digest(["v2=ab", "1700000000"]), h == headers_digest(["v2=ab", "1700000001"])
(True, False)
>>> headers_digest([None]) == headers_digest([""])
False
>>> decode_answer(encode_answer(StoredAnswer(202, b'{"ok":true}'))).status
202
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from models.errors import ValidationError
from models.events import IngestEvent
from models.jcs import jcs

__all__ = [
    "HEADER",
    "REPLAYED_HEADER",
    "StoredAnswer",
    "decode_answer",
    "encode_answer",
    "event_fingerprint",
    "headers_digest",
    "key_digest",
    "request_fingerprint",
    "validate_key",
]

#: Request header carrying the client's idempotency key.
HEADER = "Idempotency-Key"
#: Response header set on an answer replayed from the first request.
REPLAYED_HEADER = "Idempotent-Replayed"

_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def validate_key(raw: str) -> str:
    """The header value if it is 1–255 visible ASCII characters; else :class:`ValidationError`."""
    if not _KEY.fullmatch(raw):
        raise ValidationError(
            f"{HEADER} must be 1 to 255 visible ASCII characters", HEADER
        )
    return raw


def key_digest(key: str) -> str:
    """Hex SHA-256 of a key: what names its record in Redis (keys may hold any ASCII)."""
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def request_fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    """Hex SHA-256 over method, path, query string and the exact body bytes."""
    h = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), query.encode()):
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    h.update(body)
    return h.hexdigest()


def headers_digest(values: Sequence[str | None]) -> str:
    """Hex SHA-256 over header values in a fixed order (``None``: the header was not sent, told
    apart from an empty value); ``[]`` for a route that scopes no header."""
    h = hashlib.sha256()
    for value in values:
        if value is None:
            h.update(b"\xff\xff\xff\xff")  # no length is this large
            continue
        raw = value.encode("utf-8", "surrogateescape")
        h.update(len(raw).to_bytes(4, "big"))
        h.update(raw)
    return h.hexdigest()


def event_fingerprint(event: IngestEvent) -> str:
    """The first 32 hex digits of SHA-256 over the event's RFC 8785 form (:func:`models.jcs.jcs`:
    what the signature covers, so two bodies that verify under one signature have one
    fingerprint; for most events — ASCII keys, no integral floats — the same bytes as orjson's
    sorted JSON, the fingerprint before this form was chosen).

    >>> from models.events import parse_event
    >>> ev = {"event_id": "e", "agent_id": "a", "run_id": "r", "service": "s", "action": "x"}
    >>> one = parse_event({**ev, "payload": {"limit": 1}}, "p")
    >>> event_fingerprint(one) == event_fingerprint(parse_event({**ev, "payload": {"limit": 1.0}}, "p"))
    True
    >>> event_fingerprint(one) == event_fingerprint(parse_event({**ev, "payload": {"limit": 2}}, "p"))
    False
    """
    return hashlib.sha256(jcs(event.to_dict())).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """The first answer to a key: status and body (always JSON)."""

    status: int
    body: bytes


def encode_answer(answer: StoredAnswer) -> tuple[str, bytes]:
    """``(status, body)`` as the Lua script stores them."""
    return str(answer.status), answer.body


def decode_answer(stored: tuple[bytes | str, bytes]) -> StoredAnswer:
    raw_status, body = stored
    status = raw_status.decode() if isinstance(raw_status, bytes) else raw_status
    return StoredAnswer(int(status), body)
