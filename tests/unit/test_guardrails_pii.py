"""PII and secrets: each detector's hits and near misses, realistic payloads, no leaks."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.guardrails import parse_policy_toml
from models.guardrails.budget import ScanBudget
from models.guardrails.decode import with_decoded
from models.guardrails.paths import walk
from models.guardrails.pii import (
    DETECTOR_NAMES,
    PII_STEPS_PER_CHAR,
    PiiConfig,
    check_pii,
    parse_pii,
)
from models.guardrails.pii_checks import card_ok, iban_ok, luhn_ok

CFG = PiiConfig(detectors=DETECTOR_NAMES)  # every detector, not only the default set


def found(value: Any, name: str = "value", cfg: PiiConfig = CFG) -> list[str]:
    return [r.detail["detector"] for r in check_pii(cfg, walk({name: value}))]


# Test secrets are assembled at run time so that secret scanners do not flag this file.
AWS = "AKIA" + "IOSFODNN7EXAMPLE"
GITHUB = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
GITHUB_PAT = "github_pat_" + "11ABCDEFG0" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0u1V2w3X4y5Z6"
SLACK = "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
STRIPE = "sk_live_" + "51H8aBcDeFgHiJkLmNoPqRsT"
OPENAI = "sk-" + "proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
GOOGLE = "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"
PEM = "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7Yx...\n-----END RSA PRIVATE KEY-----"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    + ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    + ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
RANDOM_TOKEN = base64.urlsafe_b64encode(random.Random(7).randbytes(30)).decode()


@pytest.mark.parametrize(
    ("detector", "value"),
    [
        ("email", "x.y+tag@sub.example.org"),
        ("email", "Contact: <ann.o-neil@example.com>"),
        ("email", "mailto:bob@example.com?subject=hi"),
        ("card", "4111111111111111"),
        ("card", "4111 1111 1111 1111"),
        ("card", "5555-5555-5555-4444"),
        ("card", "3782 822463 10005"),
        ("card", "card 4012888888881881, exp 12/26"),
        ("card", "4111 1111 1111 1111 12/26"),
        ("card", "4111-1111-1111-1111-0"),
        ("card", "2223003122003222"),
        ("phone", "+14155552671"),
        ("phone", "+1 (415) 555-2671"),
        ("phone", "(415) 555-2671"),
        ("phone", "415.555.2671"),
        ("phone", "call me at 415 555 2671 tomorrow"),
        ("phone", "+44 20 7946 0958"),
        ("phone", "+44 (0)20 7946 0958"),
        ("phone", "020 7946 0958"),
        ("phone", "07700 900123"),
        ("phone", "01 23 45 67 89"),
        ("phone", "+49 30 12345678"),
        ("phone", "0171-1234567"),
        ("us_ssn", "536-22-8726"),
        ("us_ssn", "SSN 536 22 8726"),
        ("uk_nino", "AB 12 34 56 C"),
        ("uk_nino", "AB123456C"),
        ("es_dni", "12345678Z"),
        ("es_dni", "X1234567L"),
        ("iban", "GB82 WEST 1234 5698 7654 32"),
        ("iban", "DE89370400440532013000"),
        ("iban", "FR14 2004 1010 0505 0001 3M02 606"),
        ("iban", "NL91ABNA0417164300"),
        ("secret", AWS),
        ("secret", GITHUB),
        ("secret", GITHUB_PAT),
        ("secret", SLACK),
        ("secret", STRIPE),
        ("secret", OPENAI),
        ("secret", GOOGLE),
        ("secret", PEM),
        ("secret", "Authorization: Bearer " + JWT),
        ("entropy", "token=" + RANDOM_TOKEN),
    ],
)
def test_detector_finds(detector: str, value: str) -> None:
    assert found(value) == [detector]


@pytest.mark.parametrize(
    "value",
    [
        "4111 1111 1111 1112",  # Luhn-invalid
        "4111111111111112",
        "1234567812345670",  # Luhn-valid, but no card brand starts with 1
        "0000 0000 0000 0000",
        "1700000000000",  # epoch milliseconds
        "1541815603606036480",  # snowflake id
        "123e4567-e89b-12d3-a456-426614174000",  # UUID
        "12345678-1234-1234-1234-123456789012",  # all-digit UUID
        "2024-01-15T10:30:00+01:00",
        "2024-01-15 10:30:00",
        "01/02/2024",
        "1700000000",  # epoch seconds
        "4155552671",  # bare digits outside a phone field are ids
        "ORD-555-123-4567",
        "192.168.100.200",
        "10.4.1234.5678",
        "978-3-16-148410-0",  # ISBN
        "1 234 567,89",
        "52.520008, 13.404954",
        "00:12:34.567",
        "000-12-3456",  # SSN area 000
        "666-12-3456",
        "912-12-3456",
        "536-00-8726",
        "536-22-0000",
        "DA123456C",  # NINO prefix letters not issued
        "BG123456C",
        "QQ123456C",
        "12345678A",  # DNI check letter wrong
        "GB82 WEST 1234 5698 7654 33",  # IBAN mod-97 wrong
        "XX82WEST12345698765432",
        "9fceb02d0ae598e95dc970b74767f19372d61af8",  # git sha: hex stays below 4 bits
        "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
        "sk-learn-preprocessing-pipeline-v2",
        "task-1234567890abcdefghijklmnop",
        "ghost_protocol_enabled",
        "src/components/UserProfile/AvatarUploadButton.tsx",
        "customer_relationship_management_system_v2_final",
        "git@github.com:acme/billing.git",
        "see icon@2x.png",
        "AKIA",
        "eyJ",
    ],
)
def test_near_misses_are_not_findings(value: str) -> None:
    assert found(value) == []


def test_field_names_let_bare_numbers_count() -> None:
    assert found("4155552671", "mobile_phone") == ["phone"]
    assert found("+4915112345678", "msisdn") == ["phone"]
    assert found("536228726", "ssn") == ["us_ssn"]
    assert found("536228726", "customer_id") == []
    assert found("4155552671", "telemetry_id") == []


def test_card_numbers_as_json_numbers() -> None:
    assert found(4111111111111111) == ["card"]
    assert found(4111111111111112) == []
    assert found(1541815603606036480) == []


@pytest.mark.parametrize("text", ["378282246310005", "378282246310005.0",
                                  "3.78282246310005e14", "378282246310005e0", "37828224631000.5e1"])
def test_a_card_number_in_any_json_form_of_one_number(text: str) -> None:
    """Round 11 of the outside attack runs: the integer was found, its float forms (which sign
    the same: RFC 8785 writes them all as the integer) passed. The walk reads an integral float
    as the integer it equals."""
    assert found(orjson.loads(text)) == ["card"]
    assert found([orjson.loads(text)]) == ["card"]


@pytest.mark.parametrize(("name", "value", "detectors"), [
    ("ssn", 536221234, ["us_ssn"]), ("SSN", 536221234.0, ["us_ssn"]),
    ("ssn", 5.36221234e8, ["us_ssn"]), ("phone", 14155550123, ["phone"]),
    ("customer_id", 536221234, []), ("n", 123456789, []),
])
def test_numbers_are_read_as_their_digits(name: str, value: float, detectors: list[str]) -> None:
    """Round 12 of the outside attack runs: ``{"ssn": "536221234"}`` was found, the same
    digits as a JSON number were not (nor a phone number). An integer of nine digits or more
    is read as a string of its digits, field-name hints included."""
    cfg = PiiConfig(detectors=("us_ssn", "phone", "card"))
    assert found(value, name, cfg) == detectors


def test_checksums() -> None:
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert card_ok("6011 1111 1111 1117") and card_ok("3530111333300000")
    assert iban_ok("gb82 west 1234 5698 7654 32")  # case and spaces do not matter
    assert not iban_ok("GB82WEST1234569876543")  # wrong length for GB


CRM_RECORD = {
    "id": "0b7e6f2c-3d1a-4c8e-9f5b-2a6d8c4e1f07",
    "object": "contact",
    "created_at": "2023-11-02T14:05:09Z",
    "updated_at": 1716900000,
    "owner_id": 90412,
    "properties": {
        "firstname": "Maria",
        "lastname": "García López",
        "email": "maria.garcia@example.es",
        "phone": "+34 612 345 678",
        "mobilephone": "612345678",
        "company": "Transportes Ibéricos SL",
        "address": "Calle Mayor 12, 3º B",
        "zip": "28013",
        "annualrevenue": "1250000",
        "website": "https://www.example.es",
        "hs_object_id": "51234567890",
        "num_employees": 85,
    },
    "notes": [
        {
            "ts": "2024-02-14 10:22",
            "text": "Called back on +34 612 345 678, asked for a quote for 12 pallets "
            "(order ref PO-2024-11873). Follow up on 2024-03-01.",
        },
        {"ts": "2024-03-01 09:10", "text": "Sent quote Q-88121 for EUR 4,350.00."},
    ],
    "associations": {"deals": [{"id": "17728391023"}, {"id": "8812345"}]},
}

GIT_DIFF = {
    "repo": "git@github.com:acme/billing.git",
    "commit": "9fceb02d0ae598e95dc970b74767f19372d61af8",
    "author": "Jane Doe <jane.doe@acme.io>",
    "date": "Tue Mar 5 14:22:01 2024 +0100",
    "patch": """diff --git a/src/billing/invoice.py b/src/billing/invoice.py
index 83db48f..bf269f4 100644
--- a/src/billing/invoice.py
+++ b/src/billing/invoice.py
@@ -12,7 +12,8 @@ from decimal import Decimal
 TAX_RATE = Decimal("0.19")
-MAX_LINES = 250
+MAX_LINES = 500
+RETRY_BACKOFF_MS = [100, 200, 400, 800, 1600]
 def total(lines):
-    return sum(l.amount for l in lines)
+    # see https://github.com/acme/billing/issues/4821 and commit 1a2b3c4d5e6f7a8b9c0d
+    return sum((l.amount * (1 + TAX_RATE)).quantize(Decimal("0.01")) for l in lines)
 VERSION = "2.14.3"
 BUILD_ID = "20240305.142201.7781"
 UUID = "123e4567-e89b-12d3-a456-426614174000"
 TIMEOUT = 30_000
 CHECKSUM = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
""",
}

INVOICE = {
    "invoice_number": "INV-2024-000872",
    "issue_date": "2024-04-30",
    "seller": {
        "name": "Nordlicht Logistik GmbH",
        "vat_id": "DE123456789",
        "iban": "DE89 3704 0044 0532 0130 00",
        "bic": "COBADEFFXXX",
        "phone": "+49 30 1234567",
        "email": "billing@nordlicht.example",
    },
    "buyer": {"name": "Acme Ltd", "address": "221B Baker Street, London NW1 6XE", "po": "PO-77812"},
    "lines": [
        {"sku": "PAL-EU-1200x800", "qty": 12, "unit_price": "85.00", "amount": "1,020.00"},
        {"sku": "INS-STD", "description": "Cargo insurance 0.3 %", "qty": 1, "amount": "30.60"},
    ],
    "totals": {"net": "1,050.60", "vat_rate": "19 %", "vat": "199.61", "gross": "1,250.21"},
    "payment_terms": "Net 30. Please quote INV-2024-000872 on transfer. Tel. 030 1234567",
    "created": 1714464000123,
}


def summary(payload: dict[str, Any], cfg: PiiConfig = CFG) -> dict[str, tuple[int, list[str]]]:
    return {
        r.detail["detector"]: (r.detail["count"], r.detail["paths"])
        for r in check_pii(cfg, walk(payload))
    }


def test_crm_record_finds_contact_details_only() -> None:
    assert summary(CRM_RECORD) == {
        "email": (1, ["properties.email"]),
        "phone": (3, ["properties.phone", "properties.mobilephone", "notes[0].text"]),
    }


def test_git_diff_finds_the_author_email_only() -> None:
    assert summary(GIT_DIFF) == {"email": (1, ["author"])}
    leaked = dict(GIT_DIFF, patch=GIT_DIFF["patch"] + f'+AWS_KEY = "{AWS}"\n')
    result = summary(leaked)
    assert result["secret"] == (1, ["patch"])


def test_invoice_finds_iban_email_and_phones() -> None:
    assert summary(INVOICE) == {
        "email": (1, ["seller.email"]),
        "phone": (2, ["seller.phone", "payment_terms"]),
        "iban": (1, ["seller.iban"]),
    }


def test_reason_shape_and_per_detector_actions() -> None:
    cfg = parse_pii({"detector_actions": {"secret": "reject"}}, "g", CFG)
    reasons = check_pii(cfg, walk({"a": AWS, "b": GITHUB, "c": "ann@example.com"}))
    assert [(r.source, r.action, r.detail["rule"]) for r in reasons] == [
        ("guardrail:pii", "flag", "pii.email"),
        ("guardrail:pii", "reject", "pii.secret"),
    ]
    secret = reasons[1].detail
    assert secret["count"] == 2
    assert secret["kinds"] == ["aws_access_key_id", "github_token"]
    assert secret["hints"] == ["AKIA…(20 chars)", "ghp_…(40 chars)"]
    assert secret["paths"] == ["a", "b"]


def test_examples_are_capped_but_counts_are_exact() -> None:
    payload = {"emails": [f"user{i}@example.com" for i in range(12)]}
    (r,) = check_pii(CFG, walk(payload))
    assert r.detail["count"] == 12
    assert len(r.detail["paths"]) == 5


def test_detectors_paths_and_exclusions_are_configurable() -> None:
    payload = {"to": "ann@example.com", "meta": {"reply": "bob@example.com"}, "key": AWS}
    only_secrets = parse_pii({"detectors": ["secret"]}, "g", CFG)
    assert summary(payload, only_secrets) == {"secret": (1, ["key"])}
    excluded = parse_pii({"exclude_paths": ["meta.**"]}, "g", CFG)
    assert summary(payload, excluded)["email"] == (1, ["to"])
    selected = parse_pii({"paths": ["meta.*"]}, "g", CFG)
    assert summary(payload, selected) == {"email": (1, ["meta.reply"])}
    assert check_pii(PiiConfig(enabled=False), walk(payload)) == []
    assert check_pii(parse_pii({"detectors": []}, "g", CFG), walk(payload)) == []


def test_service_override_switches_detectors_off() -> None:
    p = parse_policy_toml(
        """
        [guardrails.pii]
        detectors = ["email", "phone", "secret", "card"]
        [guardrails.pii.by_service.crm]
        detectors = ["secret", "card"]
        """
    )
    assert summary(CRM_RECORD, p.pii.for_event("crm", "normal")) == {}
    assert "email" in summary(CRM_RECORD, p.pii.for_event("mail", "normal"))


def test_values_are_scanned_up_to_the_limit_only() -> None:
    cfg = parse_pii({"max_scan_chars": 1_000}, "g", CFG)
    assert found("x" * 990 + " ann@example.com", cfg=cfg) == []
    assert found("x" * 900 + " ann@example.com", cfg=cfg) == ["email"]


def test_needles_at_the_end_of_long_text_are_found() -> None:
    """64 K characters of digit-heavy text with a needle at the end: linear, windowed."""

    text = ("order 12345 shipped 2024-01-01 qty 3 ref 99-1234-5 " * 1300)[:65_000]
    text += " reach me: ann@example.com, +44 20 7946 0958, " + AWS
    assert sorted(found(text)) == ["email", "phone", "secret"]


def test_padding_cannot_hide_a_value() -> None:
    """Many decoy anchors or @ signs before the real thing do not exhaust a budget."""
    assert found("sk-" * 5_000 + " " + AWS) == ["secret"]
    assert found("a@" * 5_000 + " ann@example.com") == ["email"]
    assert found("1-" * 20_000 + " 4111 1111 1111 1111") == ["card"]


def test_entropy_bounds() -> None:
    long_blob = base64.b64encode(random.Random(1).randbytes(600)).decode()
    assert found(long_blob) == []  # longer than entropy_max_length: the media guardrail's job
    assert found(RANDOM_TOKEN[:20]) == []  # shorter than entropy_min_length
    cfg = parse_pii({"entropy_min_bits": 5.9}, "g", CFG)
    assert found("token=" + RANDOM_TOKEN, cfg=cfg) == []


# --- never the value ------------------------------------------------------------------------

_KEYS = st.sampled_from(["a", "b", "note", "to", "data", "meta", "items", "value", "body"])
_INJECT = st.sampled_from(
    [
        "ann.smith@example.com",
        "4111 1111 1111 1111",
        "5555555555554444",
        "+44 20 7946 0958",
        "536-22-8726",
        "AB 12 34 56 C",
        "GB82 WEST 1234 5698 7654 32",
        AWS,
        GITHUB,
        STRIPE,
        OPENAI,
        GOOGLE,
        JWT,
        "token=" + RANDOM_TOKEN,
    ]
)
_TEXT = st.text(min_size=0, max_size=40).filter(lambda s: "…" not in s)


def _payload() -> st.SearchStrategy[Any]:
    leaf = st.one_of(_TEXT, st.integers(), st.booleans(), st.none())
    return st.recursive(
        leaf,
        lambda kids: st.one_of(
            st.lists(kids, max_size=4), st.dictionaries(_KEYS, kids, max_size=4)
        ),
        max_leaves=12,
    )


def _body(secret: str) -> str:
    """The part of an injected value that must never appear (its public prefix may)."""
    for prefix in ("token=", "AKIA", "ghp_", "sk_live_", "sk-proj-", "AIza", "eyJ"):
        if secret.startswith(prefix):
            return secret[len(prefix) :]
    return secret


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payload=_payload(),
    key=_KEYS,
    secret=_INJECT,
    before=_TEXT,
    after=_TEXT,
)
def test_details_never_contain_the_matched_value(
    payload: Any, key: str, secret: str, before: str, after: str
) -> None:
    doc = {"wrap": payload, key: f"{before} {secret} {after}"}
    reasons = check_pii(CFG, walk(doc))
    assert reasons, "the injected value must be found"
    text = json.dumps([r.to_dict() for r in reasons], ensure_ascii=False)
    body = _body(secret)
    assert body not in text
    assert body.replace(" ", "") not in text
    for i in range(len(body) - 8):  # not even a piece of it
        assert body[i : i + 8] not in text


@settings(max_examples=150, deadline=None)
@given(payload=_payload())
def test_no_payload_value_is_echoed(payload: Any) -> None:
    reasons = check_pii(CFG, walk({"p": payload}))
    text = json.dumps([r.to_dict() for r in reasons], ensure_ascii=False)
    for leaf in walk({"p": payload}):
        if isinstance(leaf.value, str) and len(leaf.value) >= 8:
            assert leaf.value not in text


def test_detector_names_are_documented_in_the_example_policy() -> None:
    from pathlib import Path

    example = (Path(__file__).resolve().parents[2] / "docs" / "policy.example.toml").read_text()
    for name in DETECTOR_NAMES:
        assert f'"{name}"' in example


def test_a_spent_scan_budget_fails_closed() -> None:
    """Values the event's budget cannot cover are not scanned; a pii.scan_limit reason with the
    strictest detector action says so (an agent cannot pad an event past the detectors)."""
    cfg = parse_pii({"detector_actions": {"secret": "reject"}}, "guardrails.pii", PiiConfig())
    secret = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
    leaves = walk({"pad": "lorem ipsum " * 1_000, "key": secret})
    first = len("lorem ipsum " * 1_000) * PII_STEPS_PER_CHAR
    enough = ScanBudget(first + len(secret) * PII_STEPS_PER_CHAR)
    assert [r.detail["rule"] for r in check_pii(cfg, leaves, enough)] == ["pii.secret"]
    assert enough.steps == 0
    (limit,) = check_pii(cfg, leaves, ScanBudget(first))  # the padding spends it all
    assert limit.detail["rule"] == "pii.scan_limit" and limit.action == "reject"
    assert limit.detail["unscanned_values"] == 1


def test_fullwidth_and_invisible_characters_do_not_hide_a_card() -> None:
    """A card number in fullwidth digits, or with zero-width spaces between its groups, is the
    same card to the detectors (values are folded before they are read)."""
    for value in ("４１１１ １１１１ １１１１ １１１１", "4111\u200b1111\u200b1111\u200b1111",
                  "4111\u00a01111\u00a01111\u00a01111"):
        assert "card" in found(value, "note"), repr(value)


def _b64(text: str, urlsafe: bool = False) -> str:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return encode(text.encode()).decode()


@pytest.mark.parametrize("detector, plain", [
    ("card", "4111 1111 1111 1111"),
    ("us_ssn", "536-22-8726"),
    ("es_dni", "12345678Z"),
    ("secret", AWS),
    ("secret", STRIPE),
])
def test_base64_does_not_hide_a_value(detector: str, plain: str) -> None:
    """A value sent base64-encoded (standard or URL-safe, alone, inside text, inside a JSON
    document, or encoded twice) is read as if it were plain; the path says it was decoded."""
    assert detector in found(plain, "note")
    raw = plain.encode()
    for value in (_b64(plain), _b64(plain, urlsafe=True), f"blob={_b64(plain)};",
                  _b64(json.dumps({"data": {"v": plain}})), _b64(_b64(plain)),
                  _b64(_b64(_b64(plain))),
                  # round 10: a control character, UTF-16 and Latin-1 hid the text
                  base64.b64encode(raw + b"\x00").decode(), base64.b64encode(b"\x1b" + raw).decode(),
                  base64.b64encode(plain.encode("utf-16")).decode(),
                  base64.b64encode(plain.encode("utf-16-le")).decode(),
                  base64.b64encode((plain + " é").encode("latin-1")).decode()):
        reasons = check_pii(CFG, with_decoded(walk({"note": value})))
        assert detector in [r.detail["detector"] for r in reasons], value
        (reason,) = [r for r in reasons if r.detail["detector"] == detector]
        assert reason.detail["paths"] == ["note (base64)"]


def test_base64_of_binary_or_plain_ids_finds_nothing() -> None:
    """Random bytes, hashes and ordinary identifiers are not readable text once decoded."""
    rng = random.Random(5)
    quiet = PiiConfig(detectors=tuple(d for d in DETECTOR_NAMES if d != "entropy"))
    for _ in range(200):
        blob = base64.b64encode(rng.randbytes(rng.randint(9, 300))).decode()
        assert with_decoded(walk({"attachment": blob})) == walk({"attachment": blob})
        assert check_pii(quiet, with_decoded(walk({"attachment": blob}))) == []
    for value in ("550e8400e29b41d4a716446655440000", "internationalization",
                  "contacts_search_v2_results", "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="):
        assert with_decoded(walk({"ref": value})) == walk({"ref": value})


def test_decoded_text_is_charged_to_the_scan_budget() -> None:
    """Decoded text costs what plain text costs; a budget it cannot cover fails closed."""
    cfg = parse_pii({"detector_actions": {"card": "reject"}}, "guardrails.pii", PiiConfig())
    plain = "4111 1111 1111 1111"
    value = _b64(plain)
    leaves = with_decoded(walk({"note": value}))
    both = (len(value) + len(plain)) * PII_STEPS_PER_CHAR
    budget = ScanBudget(both)
    assert [r.detail["rule"] for r in check_pii(cfg, leaves, budget)] == ["pii.card"]
    assert budget.used == both
    (limit,) = check_pii(cfg, leaves, ScanBudget(both - 1))
    assert limit.detail["rule"] == "pii.scan_limit" and limit.action == "reject"


@pytest.mark.parametrize("text", [
    "4111.1111.1111.1111", "4111/1111/1111/1111", "4111_1111_1111_1111", "4111\t1111\t1111\t1111",
    "4111\u20131111\u20131111\u20131111", "4111\u22121111\u22121111\u22121111",
    "\u0664\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661",
    "\u096a\u0967\u0967\u0967 \u0967\u0967\u0967\u0967 \u0967\u0967\u0967\u0967 \u0967\u0967\u0967\u0967",
    "4111\u034f1111\u034f1111\u034f1111", "4111111111111111\ufe0f", "41\U000e0100" + "11111111111111",
    "4111\u31641111\u31641111\u31641111",
])
def test_card_numbers_however_they_are_spelled(text: str) -> None:
    """Round 11 of the outside attack runs: other separators, digits of other scripts and
    default-ignorable characters (U+034F, U+FE0F, U+3164, U+E0100) hid card numbers."""
    assert found(text) == ["card"], text


def test_invisible_characters_do_not_hide_a_secret() -> None:
    for c in ("\u034f", "\ufe0f", "\u3164", "\U000e0100", "\u200b"):
        assert found(AWS[:6] + c + AWS[6:]) == ["secret"], repr(c)


@pytest.mark.parametrize(("text", "detector"), [
    ("536.22.1234", "us_ssn"), ("536/22/1234", "us_ssn"), ("536_22_1234", "us_ssn"),
    ("536\t22\t1234", "us_ssn"), ("536\u00ad-22-1234", "us_ssn"),
    ("ab 12 34 56 c", "uk_nino"), ("ab123456c", "uk_nino"), ("12345678z", "es_dni"),
    ("x1234567l", "es_dni"),
])
def test_national_ids_with_other_separators_or_letter_case(text: str, detector: str) -> None:
    """Round 12 of the outside attack runs: SSNs grouped by . / _ or tabs, and lower-case
    NINOs and DNIs, passed."""
    assert found(text) == [detector], text


def test_a_dotted_version_or_date_is_no_card() -> None:
    for text in ("2024.0101.1234.5678", "1.2.3.4", "2026/12/05", "10.0.0.1"):
        assert found(text) == [], text
