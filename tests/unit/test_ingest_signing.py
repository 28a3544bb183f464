"""The bulk path's signature shortcuts give the reference's answers: the keyed HMAC equals
``hmac.digest``, the signing bytes parsing produces equal :func:`models.signing.signing_bytes`
(RFC 8785 through ``rfc8785``), and :func:`gateway.ingest.check_signatures` refuses exactly the
items, with exactly the errors, that the full per-item check refuses."""

from __future__ import annotations

import hmac
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gateway.ingest
from gateway.auth import verify_event
from gateway.ingest import Checked, check_signatures, check_timestamp, parse_batch
from models.errors import AuthError, ValidationError
from models.ingest_schema import decode_event, decode_signed_event
from models.jcs import reference_jcs
from models.signing import _hmac_hex, sign, signature_matches, signed_object, signing_bytes

T = 1_700_000_000
#: Signing bytes the property tests compared (a test checks they compared some).
_FOUND: list[bytes] = []
GOOD: dict[str, Any] = {"event_id": "e1", "agent_id": "a", "run_id": "r", "service": "crm",
                        "action": "contacts.read", "payload": {"id": 1, "q": "x"}}


@settings(max_examples=300, deadline=None)
@given(secret=st.text(max_size=100) | st.sampled_from(["", "k" * 64, "k" * 65, "é" * 40]),
       message=st.binary(max_size=300))
def test_keyed_hmac_is_hmac_sha256(secret: str, message: bytes) -> None:
    expected = hmac.digest(secret.encode(), message, "sha256").hex()
    assert _hmac_hex(secret, message) == expected
    assert _hmac_hex(secret, message) == expected  # the cached pads give it again
    assert signature_matches(secret, message, "v2=" + expected)
    assert not signature_matches(secret, message, "v1=" + expected)
    assert not signature_matches(secret, message + b"x", "v2=" + expected)


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**15), max_value=10**15),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15),
    st.text(max_size=5),
    st.sampled_from([0.0, -0.0, 12.0, 1e-5, 5e-5, 1e-4, 0.1 + 0.2, 1e15 - 0.5, 1767225600.0,
                     1767225600.097, "é", "\ue000", ":1.0,"]),
)
_values = st.recursive(
    _scalars, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                     st.dictionaries(st.text(max_size=4) | st.just("é"), kids,
                                                     max_size=3)),
    max_leaves=12,
)


@settings(max_examples=800, deadline=None)
@given(payload=st.dictionaries(st.text(max_size=4) | st.just("\U0001F600"), _values,
                               max_size=4),
       extra=st.dictionaries(st.sampled_from(["ts", "cost", "metadata", "priority", "label",
                                              "project_id", "zz", "end_of_run"]), _values,
                             max_size=3),
       timestamp=st.just(T) | st.integers(min_value=-(2**63), max_value=2**63 - 1)
       | st.sampled_from([T, T, T, 2**53, True, "1700000000", 1.5]))
def test_signing_bytes_of_parsing_are_the_reference(payload: dict[str, Any],
                                                    extra: dict[str, Any],
                                                    timestamp: Any) -> None:
    obj = {**GOOD, "payload": payload, **extra, "signature": "v2=00", "timestamp": timestamp}
    try:
        event, body = decode_signed_event(obj, "p")
    except ValidationError as exc:
        try:
            decode_event(obj, "p")
        except ValidationError as ref:
            assert (str(exc), exc.field) == (str(ref), ref.field)
            return
        raise AssertionError("decode_signed_event refused what decode_event accepts") from None
    assert event == decode_event(obj, "p")
    if body is not None:
        _FOUND.append(body)
        assert body == reference_jcs(signed_object(obj, "p", timestamp))
        assert body == signing_bytes(obj, "p", timestamp)


@settings(max_examples=400, deadline=None)
@given(payload=st.dictionaries(st.text("abc", max_size=3), _values, max_size=5),
       ts=_scalars)
def test_ordinary_items_signing_bytes_are_the_reference(payload: dict[str, Any], ts: Any) -> None:
    """Ordinary items (known fields, no metadata): every number shape reaches the bytes."""
    obj = {**GOOD, "payload": payload, "ts": ts, "signature": "v2=00", "timestamp": T}
    try:
        _, body = decode_signed_event(obj, "p")
    except ValidationError:
        return
    if body is not None:
        _FOUND.append(body)
        assert body == reference_jcs(signed_object(obj, "p", T))


def test_a_lone_surrogate_leaves_the_signing_bytes_to_the_full_check() -> None:
    obj = {**GOOD, "payload": {"q": "a\ud800"}, "signature": "v2=00", "timestamp": T}
    assert decode_signed_event(obj, "p")[1] is None


def test_the_property_saw_signing_bytes() -> None:
    """The property above compared bytes, not only refusals (it runs first, in file order)."""
    assert len(_FOUND) > 50


def test_ordinary_items_get_their_signing_bytes_from_parsing() -> None:
    for item in ({**GOOD, "timestamp": T, "signature": "v2=x"},
                 {**GOOD, "ts": 1767225600.097, "cost": 0.002, "priority": "high",
                  "end_of_run": True, "timestamp": T, "signature": "v2=x"}):
        _, body = decode_signed_event(item, "p")
        assert body == signing_bytes(item, "p", T)
    # an integral float, metadata, an unknown field: the full check computes them
    for other in ({"payload": {"n": 12.0}}, {"metadata": {"k": "v"}}, {"zz": 1}):
        assert decode_signed_event({**GOOD, **other, "timestamp": T}, "p")[1] is None


def _reference(items: list[Checked], secrets: dict[str, str], now: float) -> list[Any]:
    """The full per-item check (what check_signatures did for every item before)."""
    out: list[Any] = []
    for item in items:
        if item.event is None or item.error is not None:
            out.append(item.error and (type(item.error), str(item.error)))
            continue
        try:
            check_timestamp(item.raw.get("timestamp"), f"events[{item.index}].timestamp")
            verify_event(item.event, item.raw, secrets, item.raw.get("signature"),
                         item.raw.get("timestamp"), now=now, window_s=300)
            out.append(None)
        except (AuthError, ValidationError) as exc:
            out.append((type(exc), str(exc)))
    return out


_tamper = st.sampled_from(["none", "payload", "signature", "v1", "stale", "string_ts", "no_sig",
                           "other_agent", "float_ts", "bool_ts", "integral", "metadata"])


@settings(max_examples=200, deadline=None)
@given(st.lists(_tamper, min_size=1, max_size=8))
def test_check_signatures_refuses_what_the_full_check_refuses(tampers: list[str]) -> None:
    secrets = {"a": "secret-a", "b": "secret-b"}
    now = float(T)
    events = []
    for i, how in enumerate(tampers):
        agent = "b" if how == "other_agent" else "a"
        ev: dict[str, Any] = {**GOOD, "event_id": f"e{i}", "agent_id": agent}
        if how == "integral":
            ev["payload"] = {"n": 3.0}
        if how == "metadata":
            ev["metadata"] = {"k": 0.5}
        ts = T - 1000 if how == "stale" else T
        ev["signature"] = sign(secrets["a"], "p", ev, ts)  # "other_agent": signed with a's
        ev["timestamp"] = ts
        if how == "payload":
            ev["payload"] = {"id": 2}
        elif how == "signature":
            ev["signature"] = ev["signature"][:-1] + ("0" if ev["signature"][-1] != "0" else "1")
        elif how == "v1":
            ev["signature"] = "v1=" + ev["signature"][3:]
        elif how == "string_ts":
            ev["timestamp"] = str(ts)
        elif how == "float_ts":
            ev["timestamp"] = float(ts)
        elif how == "bool_ts":
            ev["timestamp"] = True
        elif how == "no_sig":
            del ev["signature"]
        events.append(ev)
    body = orjson.loads(orjson.dumps({"events": events}))
    fast = parse_batch(body, "p", 100)
    slow = parse_batch(body, "p", 100)
    for item in slow:
        item.signing = None  # the full check for every item
    check_signatures(fast, secrets, now=now, window_s=300)
    expected = _reference(slow, secrets, now)
    assert [it.error and (type(it.error), str(it.error)) for it in fast] == expected
    assert expected[tampers.index("none")] is None if "none" in tampers else True


def test_good_items_take_the_shortcut(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ordinary signed item is accepted without the full check (which is counted here)."""
    ev = {**GOOD, "timestamp": T}
    ev["signature"] = sign("s", "p", ev, T)
    items = parse_batch({"events": [ev]}, "p", 10)
    assert items[0].signing is not None
    calls: list[Any] = []
    monkeypatch.setattr(gateway.ingest, "verify_event", lambda *a, **k: calls.append(a))
    check_signatures(items, {"a": "s"}, now=float(T), window_s=300)
    assert items[0].error is None and calls == []
