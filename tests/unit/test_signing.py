"""Event signatures v2 (RFC 8785 over the whole event) and the deprecated v1: shared vectors,
canonical form, tampering with every field, staleness, the v1 deprecation window."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.errors import AuthError, ValidationError
from models.jcs import jcs, reference_jcs
from models.signing import (
    canonical_json,
    parse_timestamp,
    reference_canonical_json,
    sign,
    sign_v1,
    signing_bytes,
    v1_sunset,
    verify,
)

VECTORS = json.loads(
    (Path(__file__).parents[2] / "docs" / "signature-vectors.json").read_text("utf-8"))
T = 1_700_000_000
EVENT: dict[str, Any] = {
    "event_id": "e1", "agent_id": "agent-1", "run_id": "r1", "service": "crm",
    "action": "contacts.read", "payload": {"b": [1, 2.5, None], "a": "ü"},
}


def _verify(signature: str, event: dict[str, Any] = EVENT, *, secret: str = "s",
            now: float = T, ts: int = T, project: str = "p1", v1: bool = False) -> None:
    verify(secret, project, event, ts, signature, now=now, window_s=300, v1_accepted=v1)


@pytest.mark.parametrize("vector", VECTORS["canonical"], ids=lambda v: v["name"])
def test_canonical_vectors(vector: dict[str, str]) -> None:
    value = json.loads(vector["input"])
    assert reference_jcs(value) == vector["canonical"].encode("utf-8")
    assert jcs(value) == vector["canonical"].encode("utf-8")


@pytest.mark.parametrize("vector", VECTORS["refused"], ids=lambda v: v["name"])
def test_refused_vectors(vector: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        jcs(json.loads(vector["input"]))
    with pytest.raises(ValidationError, match="cannot be signed portably"):
        signing_bytes(json.loads(vector["input"]), "p", T)


@pytest.mark.parametrize("vector", VECTORS["events"], ids=lambda v: v["name"])
def test_event_vectors(vector: dict[str, Any]) -> None:
    event = json.loads(vector["event"])
    canonical = vector["canonical"].encode("utf-8")
    assert signing_bytes(event, vector["project_id"], vector["timestamp"]) == canonical
    # the file's signature is plain HMAC-SHA256 of the canonical bytes ...
    digest = hmac.new(vector["secret"].encode(), canonical, hashlib.sha256).hexdigest()
    assert vector["signature"] == f"v2={digest}"
    # ... and the server's signer and verifier agree with it
    assert sign(vector["secret"], vector["project_id"], event, vector["timestamp"]) == \
        vector["signature"]
    verify(vector["secret"], vector["project_id"], event, vector["timestamp"],
           vector["signature"], now=vector["timestamp"], window_s=300)


def test_signature_is_hmac_sha256_of_the_whole_event() -> None:
    message = signing_bytes(EVENT, "p1", T)
    assert json.loads(message) == {**EVENT, "project_id": "p1", "timestamp": T}
    assert sign("s", "p1", EVENT, T) == "v2=" + hmac.new(b"s", message, hashlib.sha256).hexdigest()


def test_key_order_does_not_matter() -> None:
    shuffled = dict(reversed(list(EVENT.items())))
    shuffled["payload"] = dict(reversed(list(EVENT["payload"].items())))
    assert sign("s", "p1", shuffled, T) == sign("s", "p1", EVENT, T)


def test_good_signature_verifies_and_signature_field_is_not_signed() -> None:
    sig = sign("s", "p1", EVENT, T)
    _verify(sig)
    _verify(sig, {**EVENT, "signature": sig})


# Every field, including those v1 left unsigned (issue 10, finding 4), and fields added.
TAMPERED = {
    "run_id": "r2", "priority": "critical", "cost": 0.01, "ts": 1.5, "end_of_run": True,
    "metadata": {"k": "v"}, "payload": {"a": "u"}, "event_id": "e2", "agent_id": "agent-2",
    "service": "billing", "action": "contacts.delete", "label": True, "extra": 1,
}


@pytest.mark.parametrize("field, value", sorted(TAMPERED.items()))
def test_any_changed_or_added_field_fails(field: str, value: object) -> None:
    base = {**EVENT, "priority": "low", "cost": 0.5, "ts": 2.5, "end_of_run": False,
            "metadata": {"k": "w"}}
    sig = sign("s", "p1", base, T)
    _verify(sig, base)
    with pytest.raises(AuthError, match="bad signature"):
        _verify(sig, {**base, field: value})


@pytest.mark.parametrize("field", ["priority", "cost", "ts", "end_of_run", "metadata"])
def test_removed_field_fails(field: str) -> None:
    base = {**EVENT, "priority": "low", "cost": 0.5, "ts": 2.5, "end_of_run": False,
            "metadata": {"k": "w"}}
    sig = sign("s", "p1", base, T)
    with pytest.raises(AuthError, match="bad signature"):
        _verify(sig, {k: v for k, v in base.items() if k != field})


def test_project_and_timestamp_are_bound() -> None:
    sig = sign("s", "p1", EVENT, T)
    with pytest.raises(AuthError, match="bad signature"):
        _verify(sig, project="p2")
    with pytest.raises(AuthError, match="bad signature"):
        _verify(sig, ts=T + 1)
    # a project_id claimed in the body does not change what is signed: the key's project is
    assert signing_bytes({**EVENT, "project_id": "p2"}, "p1", T) == signing_bytes(EVENT, "p1", T)


def test_window_edges() -> None:
    sig = sign("s", "p1", EVENT, T)
    _verify(sig, now=T + 300)
    _verify(sig, now=T - 300)
    for now in (T + 301, T - 301):
        with pytest.raises(AuthError, match="stale signature"):
            _verify(sig, now=now)


def test_other_secret_fails() -> None:
    with pytest.raises(AuthError, match="bad signature"):
        _verify(sign("other", "p1", EVENT, T))


@pytest.mark.parametrize("bad", ["", "abc", "v2=" + "0" * 64, "v2=zz", "v2=é", "v3=" + "0" * 64])
def test_malformed_signatures_fail(bad: str) -> None:
    with pytest.raises(AuthError):
        _verify(bad)


def test_v1_only_inside_the_deprecation_window() -> None:
    old = sign_v1("s", "p1", "agent-1", "crm", "contacts.read", EVENT["payload"], "e1", T)
    with pytest.raises(AuthError, match="v1 signatures are no longer accepted"):
        _verify(old)
    _verify(old, v1=True)
    # v1 never covered run_id etc.: that is why it is refused by default
    _verify(old, {**EVENT, "priority": "critical"}, v1=True)
    with pytest.raises(AuthError, match="bad signature"):
        _verify(old, {**EVENT, "payload": {}}, v1=True)


def test_v1_sunset_setting() -> None:
    assert v1_sunset("") is None
    assert v1_sunset("2027-03-01") == 1_803_859_200.0
    with pytest.raises(ValueError, match="RATCHET_SIGNATURE_V1_UNTIL"):
        v1_sunset("March 2027")


@pytest.mark.parametrize("raw, ok", [("1700000000", True), (T, True), ("-5", False),
                                     ("1.5", False), (True, False), (None, False), ("9" * 20, False)])
def test_parse_timestamp(raw: object, ok: bool) -> None:
    if ok:
        assert parse_timestamp(raw) == T
    else:
        with pytest.raises(AuthError):
            parse_timestamp(raw)


_keys = st.text(max_size=6) | st.sampled_from(["\U0001F600", "\uff61", "\ue000", "\ufb33", "é"])
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([5e-5, 1e-7, 1e16, 1e21, 5e-324, -0.0, 1e-4, 9999999999999998.0, 2.0**53,
                       0.1 + 0.2, 1e15 + 0.5])
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(_keys, children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=800, deadline=None)
@given(_json_values)
def test_jcs_fast_path_matches_the_reference(value: object) -> None:
    try:
        expected = reference_jcs(value)
    except ValueError:
        with pytest.raises(ValueError):
            jcs(value)
        return
    assert jcs(value) == expected


# --- the legacy form (v1 and the audit hash chain) ------------------------------------------------
def test_legacy_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": {"d": 1, "c": 2}, "a": "é"}) == '{"a":"é","b":{"c":2,"d":1}}'.encode()
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


@settings(max_examples=300, deadline=None)
@given(_json_values)
def test_legacy_canonical_json_fast_path_matches_its_reference(value: object) -> None:
    assert canonical_json(value) == reference_canonical_json(value)


@pytest.mark.parametrize("vector", VECTORS["events"], ids=lambda v: v["name"])
def test_the_curl_signing_script_of_the_docs(vector: dict[str, Any]) -> None:
    script = Path(__file__).parents[2] / "docs" / "examples" / "sign.py"
    done = subprocess.run([sys.executable, str(script), vector["secret"], vector["project_id"],
                           str(vector["timestamp"])], input=vector["event"], capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.strip() == vector["signature"]
