"""Event signatures (docs/design.md §2): HMAC-SHA256 over a canonical form. Pure: no I/O, no clock.

**v2** (current, ``v2=<64 hex>``) signs the RFC 8785 (JCS) canonical form (:mod:`models.jcs`)
of the *whole* event object as sent, with two fields bound in:

- ``signature`` is removed (a batch item carries it in the body);
- ``project_id`` is set to the project of the caller's API key (whatever the body says), so a
  signed event cannot be replayed into another project;
- ``timestamp`` is set to the signature timestamp, an integer number of Unix seconds (the
  ``X-Ratchet-Timestamp`` header of a single event, the ``timestamp`` field of a batch item).

Every other field the client sent (``run_id``, ``priority``, ``cost``, ``ts``, ``end_of_run``,
``metadata``, and fields the server ignores) is signed as it was sent, so none can be changed
or added in flight; an omitted optional field is signed by its absence.

**v1** (deprecated, ``v1=<64 hex>``) signs only seven fields in Python's ``json.dumps`` form; the
gateway accepts it only before the date in ``RATCHET_SIGNATURE_V1_UNTIL`` (unset: never).

>>> ev = {"event_id": "e1", "agent_id": "a", "run_id": "r", "service": "crm",
...       "action": "read", "payload": {"id": 1}}
>>> signing_bytes(ev, "p", 1700000000)
b'{"action":"read","agent_id":"a","event_id":"e1","payload":{"id":1},"project_id":"p","run_id":"r","service":"crm","timestamp":1700000000}'
>>> sig = sign("s3cret", "p", ev, 1700000000)
>>> sig.startswith("v2=") and len(sig) == 67
True
>>> verify("s3cret", "p", ev, 1700000000, sig, now=1700000010, window_s=300)
>>> canonical_json({"b": 1, "a": "é"})
b'{"a":"\\xc3\\xa9","b":1}'
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

import orjson

from models.errors import AuthError, ValidationError
from models.jcs import jcs

__all__ = [
    "SCHEME",
    "SCHEME_V1",
    "SIGNATURE_FIELD",
    "canonical_json",
    "parse_timestamp",
    "reference_canonical_json",
    "sign",
    "sign_v1",
    "signature_matches",
    "signed_object",
    "signing_bytes",
    "signing_message",
    "v1_sunset",
    "verify",
]

#: Version tag of the current scheme, sent as ``v2=<hex>``.
SCHEME = "v2"
#: The deprecated seven-field scheme (``v1=<hex>``).
SCHEME_V1 = "v1"
#: The field of a batch item that carries its signature; never part of the signed object.
SIGNATURE_FIELD = "signature"


def canonical_json(value: Any) -> bytes:
    """Python's sorted compact JSON (v1 signatures and the audit hash chain; not RFC 8785).

    The definition is :func:`reference_canonical_json` (Python's ``json``). orjson writes the
    same bytes for plain JSON values — str keys, strings, ints within 64 bits, floats whose
    shortest repr has no exponent (0, or 1e-4 <= |x| < 1e16) — about 8x faster, so those take
    the fast path; anything else (other floats, NaN, big ints, non-str keys, other types) the
    reference. ``tests/unit/test_signing.py`` checks the two agree on generated values.
    """
    if _orjson_safe(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # nesting orjson refuses; the reference decides
            pass
    return reference_canonical_json(value)


def reference_canonical_json(value: Any) -> bytes:
    """The canonical form as specified: ``json.dumps(sort_keys, compact, ensure_ascii=False)``."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


_INT_LIMIT = 2**63


def _orjson_safe(value: Any) -> bool:
    """True when orjson's bytes for ``value`` are exactly the reference's (exact types only)."""
    t = type(value)
    if t is dict:
        for k, v in value.items():
            if type(k) is not str:
                return False
            if type(v) is not str and not _orjson_safe(v):
                return False
        return True
    if t is list:
        for v in value:
            if type(v) is not str and not _orjson_safe(v):
                return False
        return True
    if t is str or t is bool or value is None:
        return True
    if t is int:
        return bool(-_INT_LIMIT <= value < _INT_LIMIT)
    if t is float:
        # NaN and infinities fail both comparisons (the reference refuses them)
        return bool(value == 0.0 or 1e-4 <= abs(value) < 1e16)
    return False


def signing_message(
    project_id: str,
    agent_id: str,
    service: str,
    action: str,
    payload: Mapping[str, Any],
    event_id: str,
    timestamp: int,
) -> bytes:
    """The exact bytes that are signed for one event."""
    return canonical_json(
        {
            "project_id": project_id,
            "agent_id": agent_id,
            "service": service,
            "action": action,
            "payload": payload,
            "event_id": event_id,
            "timestamp": timestamp,
        }
    )


def sign_v1(
    secret: str,
    project_id: str,
    agent_id: str,
    service: str,
    action: str,
    payload: Mapping[str, Any],
    event_id: str,
    timestamp: int,
) -> str:
    """Deprecated: ``v1=<hex HMAC-SHA256>`` of :func:`signing_message` (seven fields)."""
    message = signing_message(project_id, agent_id, service, action, payload, event_id, timestamp)
    return f"{SCHEME_V1}={_hmac_hex(secret, message)}"


def _hmac_hex(secret: str, message: bytes) -> str:
    """Hex HMAC-SHA256 (RFC 2104), the same bytes as ``hmac.digest(secret, message, "sha256")``.

    One-shot HMAC through OpenSSL 3 sets up a MAC context per call (≈ 2.9 µs for an event);
    here each secret's keyed inner and outer SHA-256 states are computed once and copied per
    message (≈ 0.8 µs). ``tests/unit/test_signing.py`` compares the two on generated keys.
    """
    pads = _PADS.get(secret)
    if pads is None:
        pads = _keyed_pads(secret)
    inner = pads[0].copy()
    inner.update(message)
    outer = pads[1].copy()
    outer.update(inner.digest())
    hexdigest: str = outer.hexdigest()
    return hexdigest


#: Keyed SHA-256 states per secret (inner, outer); bounded: cleared when full.
_PADS: dict[str, tuple[Any, Any]] = {}
_MAX_PADS = 4096
_BLOCK = 64  # SHA-256 block size, bytes
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _keyed_pads(secret: str) -> tuple[Any, Any]:
    key = secret.encode("utf-8")
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    pads = (hashlib.sha256(key.translate(_IPAD)), hashlib.sha256(key.translate(_OPAD)))
    if len(_PADS) >= _MAX_PADS:
        _PADS.clear()
    _PADS[secret] = pads
    return pads


def signed_object(event: Mapping[str, Any], project_id: str, timestamp: int) -> dict[str, Any]:
    """The object v2 signs: the event as sent, less ``signature``, with the key's
    ``project_id`` and the integer signature ``timestamp`` bound in."""
    out = {k: v for k, v in event.items() if k != SIGNATURE_FIELD}
    out["project_id"] = project_id
    out["timestamp"] = timestamp
    return out


def signing_bytes(event: Mapping[str, Any], project_id: str, timestamp: int) -> bytes:
    """The exact bytes v2 signs: RFC 8785 of :func:`signed_object`; :class:`ValidationError`
    if the event has no canonical form (an integer beyond ±(2**53 − 1), a lone surrogate)."""
    try:
        return jcs(signed_object(event, project_id, timestamp))
    except ValueError as exc:
        raise ValidationError(
            f"the event cannot be signed portably ({exc}); integers must be within "
            "±9007199254740991 and strings valid Unicode", None
        ) from None


def signature_matches(secret: str, message: bytes, signature: str) -> bool:
    """Whether ``signature`` is ``v2=`` and the hex HMAC-SHA256 of ``message`` (the event's
    :func:`signing_bytes`, already computed) under ``secret``; compared in constant time.
    ``False`` says only "not proven good": :func:`verify` gives the reason."""
    return (signature.startswith(_V2_PREFIX) and signature.isascii()
            and hmac.compare_digest(_hmac_hex(secret, message), signature[3:]))


_V2_PREFIX = f"{SCHEME}="


def sign(secret: str, project_id: str, event: Mapping[str, Any], timestamp: int) -> str:
    """``v2=<hex HMAC-SHA256>`` of :func:`signing_bytes` under the agent's secret."""
    return f"{SCHEME}={_hmac_hex(secret, signing_bytes(event, project_id, timestamp))}"


@lru_cache(maxsize=8)
def v1_sunset(until: str) -> float | None:
    """Unix time at which v1 signatures stop being accepted: 00:00 UTC of ``until``
    (``YYYY-MM-DD``, the ``RATCHET_SIGNATURE_V1_UNTIL`` setting); ``None`` (never accepted) when
    empty. ``ValueError`` names a malformed date.

    >>> v1_sunset("2027-03-01")
    1803859200.0
    >>> v1_sunset("") is None
    True
    """
    if not until.strip():
        return None
    try:
        day = date.fromisoformat(until.strip())
    except ValueError:
        raise ValueError(
            f"RATCHET_SIGNATURE_V1_UNTIL={until!r} is not a date YYYY-MM-DD (or empty)"
        ) from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def parse_timestamp(raw: object) -> int:
    """A signature timestamp from a header string or a JSON number; :class:`AuthError` if bad."""
    if isinstance(raw, bool):
        raise AuthError("signature timestamp must be an integer number of Unix seconds")
    if isinstance(raw, int):
        return raw
    text = raw.strip() if isinstance(raw, str) else ""
    if text.isascii() and text.isdigit() and len(text) <= 12:  # isdigit alone takes '²'
        return int(text)
    raise AuthError("signature timestamp must be an integer number of Unix seconds")


def verify(
    secret: str,
    project_id: str,
    event: Mapping[str, Any],
    timestamp: int,
    signature: str,
    *,
    now: float,
    window_s: int,
    v1_accepted: bool = False,
) -> None:
    """Raise :class:`AuthError` unless ``signature`` is valid for the event and fresh.

    The freshness check comes first (a stale request is refused whatever its signature) and the
    digest comparison is constant-time (:func:`hmac.compare_digest`). A ``v1=`` signature is
    checked only when ``v1_accepted`` (the deprecation window is open), else refused by name.
    """
    if abs(now - timestamp) > window_s:
        raise AuthError(
            f"stale signature: timestamp is more than {window_s}s from the server clock; "
            "sign with the current time (and check the client's clock)"
        )
    scheme, sep, _ = signature.partition("=")
    if sep and scheme == SCHEME:
        expected = sign(secret, project_id, event, timestamp)
    elif sep and scheme == SCHEME_V1:
        if not v1_accepted:
            raise AuthError(
                "v1 signatures are no longer accepted: sign every field of the event with "
                "v2 (RFC 8785; see docs/api.md, 'Event signatures')"
            )
        expected = _expected_v1(secret, project_id, event, timestamp)
    else:
        raise AuthError(f"signature must look like '{SCHEME}=<hex>'")
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace")):
        raise AuthError("bad signature: it does not match the event and the agent's secret")


def _expected_v1(secret: str, project_id: str, event: Mapping[str, Any], timestamp: int) -> str:
    fields = [event.get(name) for name in ("agent_id", "service", "action", "event_id")]
    payload = event.get("payload")
    if not all(isinstance(f, str) for f in fields) or not isinstance(payload, Mapping):
        raise AuthError("bad signature: it does not match the event and the agent's secret")
    agent_id, service, action, event_id = (str(f) for f in fields)
    return sign_v1(secret, project_id, agent_id, service, action, payload, event_id, timestamp)
