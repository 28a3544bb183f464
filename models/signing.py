"""Event signatures (DESIGN.md §2): HMAC-SHA256 over canonical JSON. Pure: no I/O, no clock reads.

The signed message is the canonical JSON of exactly these seven fields::

    {"action", "agent_id", "event_id", "payload", "project_id", "service", "timestamp"}

serialized with sorted keys at every level, no whitespace, UTF-8, non-ASCII characters kept as
they are (``ensure_ascii=False``) and NaN/Infinity refused — i.e. Python's
``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)``.
``timestamp`` is an integer number of Unix seconds. The signature travels as ``v1=<64 hex>``; the
``v1`` names this scheme so a later one can be introduced next to it.

>>> sig = sign("s3cret", "p", "a", "crm", "read", {"id": 1}, "e1", 1700000000)
>>> sig.startswith("v1=") and len(sig) == 67
True
>>> verify("s3cret", "p", "a", "crm", "read", {"id": 1}, "e1", 1700000000, sig,
...        now=1700000010, window_s=300)
>>> canonical_json({"b": 1, "a": "é"})
b'{"a":"\\xc3\\xa9","b":1}'
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from typing import Any

import orjson

from models.errors import AuthError

__all__ = [
    "SCHEME",
    "canonical_json",
    "parse_timestamp",
    "reference_canonical_json",
    "sign",
    "signing_message",
    "verify",
]

#: Version tag of the signature scheme, sent as ``v1=<hex>``.
SCHEME = "v1"


def canonical_json(value: Any) -> bytes:
    """The canonical serialization both sides sign: sorted keys, no whitespace, UTF-8.

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


def sign(
    secret: str,
    project_id: str,
    agent_id: str,
    service: str,
    action: str,
    payload: Mapping[str, Any],
    event_id: str,
    timestamp: int,
) -> str:
    """``v1=<hex HMAC-SHA256>`` of :func:`signing_message` under the agent's secret."""
    message = signing_message(project_id, agent_id, service, action, payload, event_id, timestamp)
    # hmac.digest: the one-shot C implementation, the same bytes as hmac.new(...).digest()
    digest = hmac.digest(secret.encode("utf-8"), message, "sha256").hex()
    return f"{SCHEME}={digest}"


def parse_timestamp(raw: object) -> int:
    """A signature timestamp from a header string or a JSON number; :class:`AuthError` if bad."""
    if isinstance(raw, bool):
        raise AuthError("signature timestamp must be an integer number of Unix seconds")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.strip().isdigit() and len(raw.strip()) <= 12:
        return int(raw.strip())
    raise AuthError("signature timestamp must be an integer number of Unix seconds")


def verify(
    secret: str,
    project_id: str,
    agent_id: str,
    service: str,
    action: str,
    payload: Mapping[str, Any],
    event_id: str,
    timestamp: int,
    signature: str,
    *,
    now: float,
    window_s: int,
) -> None:
    """Raise :class:`AuthError` unless ``signature`` is valid and ``timestamp`` is fresh.

    The freshness check comes first (a stale request is refused whatever its signature) and the
    digest comparison is constant-time (:func:`hmac.compare_digest`).
    """
    if abs(now - timestamp) > window_s:
        raise AuthError(
            f"stale signature: timestamp is more than {window_s}s from the server clock; "
            "sign with the current time (and check the client's clock)"
        )
    scheme, sep, _ = signature.partition("=")
    if not sep or scheme != SCHEME:
        raise AuthError(f"signature must look like '{SCHEME}=<hex>'")
    expected = sign(secret, project_id, agent_id, service, action, payload, event_id, timestamp)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace")):
        raise AuthError("bad signature: it does not match the event and the agent's secret")
