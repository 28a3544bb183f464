"""Request bodies name their fields: an unknown one is an error with the closest known name."""

from __future__ import annotations

import pytest

from models.errors import ValidationError
from models.known_fields import refuse_unknown_fields
from models.webhooks import parse_webhook_request
from ratchet.platform.signup import parse_redeem, parse_signup_request
from ratchet.store.verdicts import _decode_cursor, _encode_cursor


def test_the_first_unknown_field_is_named_with_a_hint_and_cleaned() -> None:
    refuse_unknown_fields({"a": 1}, ("a", "b"))  # known fields pass
    with pytest.raises(ValidationError) as err:
        refuse_unknown_fields({"decision": "approve", "reasn": "x"}, ("decision", "reason"))
    assert err.value.field == "reasn" and "did you mean 'reason'" in str(err.value)
    with pytest.raises(ValidationError) as err:
        refuse_unknown_fields({"<b>x</b>\u202e": 1}, ("a",), "events[2].")
    assert err.value.field == "events[2].bx/b" and "<" not in str(err.value)


def test_signup_bodies_refuse_unknown_fields() -> None:
    with pytest.raises(ValidationError) as err:
        parse_signup_request({"emial": "a@b.co"})
    assert err.value.field == "emial"
    with pytest.raises(ValidationError) as err:
        parse_redeem({"token": "st_x", "agentid": "bot"})
    assert err.value.field == "agentid"


def test_webhook_actions_are_listed_once() -> None:
    with pytest.raises(ValidationError) as err:
        parse_webhook_request({"url": "https://example.com/h", "actions": ["flag", "flag"]},
                              allow_loopback=False)
    assert err.value.field == "actions"
    spec = parse_webhook_request({"url": "https://example.com/h", "actions": ["flag"]},
                                 allow_loopback=False)
    assert spec.actions == ("flag",)


@pytest.mark.parametrize("cursor", ["1_0:x", "\u0661:x", "  1:x", "1:x\n", "1:x", "1.0:",
                                    "inf:x", "1.0:<b>", "garbage"])
def test_a_cursor_the_api_did_not_write_is_refused(cursor: str) -> None:
    with pytest.raises(ValueError):
        _decode_cursor(cursor)


def test_cursors_the_api_writes_round_trip() -> None:
    for score, member in ((100.0, "e03"), (1733400000.123456, "evt-1"), (1e20, "a:b")):
        assert _decode_cursor(_encode_cursor(score, member)) == (score, member)


def test_policy_and_override_errors_quote_client_keys_and_values_clean() -> None:
    from models.guardrails import parse_policy_toml
    from models.overrides import parse_override
    cases = [lambda: parse_override({"<script>alert(1)</script>\u202e": 1}),
             lambda: parse_override({"window": "<b>" + "A" * 5000}),
             lambda: parse_policy_toml('[guardrails.velocity]\n"<img src=x onerror=1>" = 1')]
    for case in cases:
        with pytest.raises(ValidationError) as err:
            case()
        text = str(err.value) + str(err.value.field)
        assert not any(c in text for c in "<>\u202e") and len(text) < 400, text
    with pytest.raises(ValidationError) as err:
        parse_policy_toml('[guardrails.velocity]\n"<img src=x onerror=1>" = 1')
    assert "velocity.img src=x onerror=1 is not a known key" in str(err.value)
