"""Event signatures: canonical form, round trip, tampering, staleness, wrong secret."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from models.signing import canonical_json, parse_timestamp, sign, signing_message, verify
from ratchet.errors import AuthError

T = 1_700_000_000
ARGS = ("p1", "agent-1", "crm", "contacts.read", {"b": [1, 2.5, None], "a": "ü"}, "e1")


def _verify(signature: str, *, secret: str = "s", now: float = T, ts: int = T) -> None:
    verify(secret, *ARGS, ts, signature, now=now, window_s=300)


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": {"d": 1, "c": 2}, "a": "é"}) == '{"a":"é","b":{"c":2,"d":1}}'.encode()


def test_canonical_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_signature_is_hmac_sha256_of_the_canonical_message() -> None:
    message = signing_message(*ARGS, T)
    assert b'"timestamp":1700000000' in message
    expected = hmac.new(b"s", message, hashlib.sha256).hexdigest()
    assert sign("s", *ARGS, T) == f"v1={expected}"


def test_key_order_of_payload_does_not_matter() -> None:
    a = sign("s", "p", "a", "svc", "act", {"x": 1, "y": 2}, "e", T)
    b = sign("s", "p", "a", "svc", "act", {"y": 2, "x": 1}, "e", T)
    assert a == b


def test_good_signature_verifies() -> None:
    _verify(sign("s", *ARGS, T))


def test_window_edges() -> None:
    sig = sign("s", *ARGS, T)
    _verify(sig, now=T + 300)
    _verify(sig, now=T - 300)
    with pytest.raises(AuthError, match="stale signature"):
        _verify(sig, now=T + 301)
    with pytest.raises(AuthError, match="stale signature"):
        _verify(sig, now=T - 301)


@pytest.mark.parametrize(
    "field, value",
    [(0, "p2"), (1, "agent-2"), (2, "billing"), (3, "contacts.delete"), (4, {"a": "u"}), (5, "e2")],
)
def test_any_tampered_field_fails(field: int, value: object) -> None:
    sig = sign("s", *ARGS, T)
    args = list(ARGS)
    args[field] = value
    with pytest.raises(AuthError, match="bad signature"):
        verify("s", *args, T, sig, now=T, window_s=300)  # type: ignore[arg-type]


def test_other_secret_fails() -> None:
    with pytest.raises(AuthError, match="bad signature"):
        _verify(sign("other", *ARGS, T))


def test_tampered_timestamp_fails() -> None:
    with pytest.raises(AuthError, match="bad signature"):
        _verify(sign("s", *ARGS, T), ts=T + 1)


@pytest.mark.parametrize("bad", ["", "abc", "v2=" + "0" * 64, "v1=" + "0" * 64, "v1=zz", "v1=é"])
def test_malformed_signatures_fail(bad: str) -> None:
    with pytest.raises(AuthError):
        _verify(bad)


@pytest.mark.parametrize("raw, ok", [("1700000000", True), (T, True), ("-5", False),
                                     ("1.5", False), (True, False), (None, False), ("9" * 20, False)])
def test_parse_timestamp(raw: object, ok: bool) -> None:
    if ok:
        assert parse_timestamp(raw) == T
    else:
        with pytest.raises(AuthError):
            parse_timestamp(raw)
