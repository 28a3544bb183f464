"""Pure webhook parts: signatures, the address rule, request validation, breaker, backoff."""

from __future__ import annotations

import doctest
import importlib

import pytest

from models.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from models.errors import AuthError, ValidationError
from models.webhook_signing import sign_delivery, verify_delivery
from models.webhooks import (
    address_problem,
    backoff_delay,
    delivery_id,
    destination_of,
    parse_webhook_request,
)

BODY = b'{"type":"verdict.pause"}'


@pytest.mark.parametrize("name", ["models.webhooks", "models.breaker", "models.webhook_signing",
                                  "models.audit", "ratchet.platform.audit_export"])
def test_doctests(name: str) -> None:
    assert doctest.testmod(importlib.import_module(name)).failed == 0


# --- signatures ---------------------------------------------------------------------------
def test_signature_roundtrip_and_window() -> None:
    header = sign_delivery("whsec_a", BODY, timestamp=1_000_000)
    verify_delivery("whsec_a", BODY, header, now=1_000_000 + 300)
    verify_delivery("whsec_a", BODY, header, now=1_000_000 - 300)
    with pytest.raises(AuthError, match="more than 300 s"):
        verify_delivery("whsec_a", BODY, header, now=1_000_000 + 301)
    with pytest.raises(AuthError, match="more than 300 s"):
        verify_delivery("whsec_a", BODY, header, now=1_000_000 - 301)


@pytest.mark.parametrize("secret,body", [("whsec_b", BODY), ("whsec_a", BODY + b" ")])
def test_wrong_secret_or_body_refused(secret: str, body: bytes) -> None:
    header = sign_delivery("whsec_a", BODY, timestamp=1_000_000)
    with pytest.raises(AuthError, match="does not match"):
        verify_delivery(secret, body, header, now=1_000_000)


def test_timestamp_is_signed() -> None:
    header = sign_delivery("whsec_a", BODY, timestamp=1_000_000)
    moved = header.replace("t=1000000", "t=1000200")  # replay with a fresh-looking time
    with pytest.raises(AuthError, match="does not match"):
        verify_delivery("whsec_a", BODY, moved, now=1_000_200)


@pytest.mark.parametrize("header", ["", "v1=abc", "t=1000000", "t=x,v1=ab", "garbage"])
def test_malformed_headers_refused(header: str) -> None:
    with pytest.raises(AuthError):
        verify_delivery("whsec_a", BODY, header, now=1_000_000)


def test_rotation_accepts_any_listed_signature() -> None:
    good = sign_delivery("whsec_a", BODY, timestamp=1_000_000).split(",")[1]
    verify_delivery("whsec_a", BODY, f"t=1000000,v1={'0' * 64},{good}", now=1_000_000)


# --- addresses ------------------------------------------------------------------------------
@pytest.mark.parametrize("address,problem", [
    ("127.0.0.1", "loopback"), ("127.9.9.9", "loopback"), ("::1", "loopback"),
    ("10.0.0.1", "private"), ("172.16.5.4", "private"), ("192.168.1.1", "private"),
    ("fc00::1", "private"), ("169.254.1.1", "link-local"), ("fe80::1", "link-local"),
    ("169.254.169.254", "cloud metadata"), ("fd00:ec2::254", "cloud metadata"),
    ("100.64.0.1", "carrier-grade NAT"), ("100.127.255.254", "carrier-grade NAT"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("0.0.0.0", "unspecified"),
    ("::", "unspecified"), ("::ffff:10.0.0.1", "private"), ("::ffff:169.254.169.254",
                                                             "cloud metadata"),
    ("2002:7f00:1::", "loopback"), ("240.0.0.1", "private"), ("192.0.2.1", "private"),
])
def test_forbidden_addresses(address: str, problem: str) -> None:
    assert address_problem(address, allow_loopback=False) == problem


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_allowed(address: str) -> None:
    assert address_problem(address, allow_loopback=False) is None


def test_loopback_only_with_the_dev_setting() -> None:
    assert address_problem("127.0.0.1", allow_loopback=True) is None
    assert address_problem("::1", allow_loopback=True) is None
    assert address_problem("10.0.0.1", allow_loopback=True) == "private"
    assert address_problem("169.254.169.254", allow_loopback=True) == "cloud metadata"


@pytest.mark.parametrize("url,words", [
    ("https://0.0.0.0/hook", "points at an unspecified address;"),
    ("https://10.1.2.3/hook", "points at a private address;"),
    ("https://[ff02::1]/hook", "points at a multicast address;"),
])
def test_refusals_read_as_english(url: str, words: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_webhook_request({"url": url}, allow_loopback=False)
    assert words in str(err.value) and " a unspecified" not in str(err.value)


# --- request validation ---------------------------------------------------------------------
def test_valid_request() -> None:
    spec = parse_webhook_request({"url": "https://hooks.example.com/r", "actions": ["reject",
                                 "pause"]}, allow_loopback=False)
    assert spec.host == "hooks.example.com" and spec.actions == ("pause", "reject")
    assert parse_webhook_request({"url": "https://a.example"},
                                 allow_loopback=False).actions == ("flag", "pause", "reject")


@pytest.mark.parametrize("body,field", [
    ({"url": "ftp://a.example/x"}, "url"),
    ({"url": "https://user:pw@a.example/"}, "url"),
    ({"url": "https:///nohost"}, "url"),
    ({"url": "https://a.example:99999/"}, "url"),
    ({"url": "http://127.0.0.1:8080/"}, "url"),
    ({"url": "http://[::1]/"}, "url"),
    ({"url": "http://169.254.169.254/latest/meta-data"}, "url"),
    ({"url": "http://[fd00:ec2::254]/"}, "url"),
    ({"url": "http://localhost/"}, "url"),
    ({"url": "http://10.1.1.1/"}, "url"),
    ({"url": "https://a.example/\n"}, "url"),
    ({"url": 5}, "url"),
    ({"url": "https://a.example", "actions": ["allow"]}, "actions"),
    ({"url": "https://a.example", "actions": []}, "actions"),
    ({"url": "https://a.example", "actions": "flag"}, "actions"),
    ({"url": "https://a.example", "secret": "mine"}, "secret"),
    ({"url": "https://a.example", "description": "x" * 201}, "description"),
])
def test_invalid_requests_name_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_webhook_request(body, allow_loopback=False)
    assert info.value.field == field


def test_loopback_url_allowed_only_in_development() -> None:
    spec = parse_webhook_request({"url": "http://127.0.0.1:9/"}, allow_loopback=True)
    assert spec.host == "127.0.0.1"


def test_destination_and_delivery_id() -> None:
    assert destination_of("https://A.example/x?y") == "https://a.example:443"
    assert destination_of("http://a.example:81/") == "http://a.example:81"
    assert delivery_id("wh_1", "e1") == delivery_id("wh_1", "e1") != delivery_id("wh_2", "e1")


# --- backoff ----------------------------------------------------------------------------------
def test_backoff_doubles_with_full_jitter_and_a_cap() -> None:
    assert [backoff_delay(a, base_s=1, cap_s=10, rand=1.0) for a in range(1, 7)] == [
        1, 2, 4, 8, 10, 10]
    assert backoff_delay(3, base_s=1, cap_s=10, rand=0.5) == 2.0
    assert backoff_delay(3, base_s=1, cap_s=10, rand=0.0) == 0.0


# --- circuit breaker (injected clock) -------------------------------------------------------------
def test_breaker_opens_after_n_failures_within_the_window() -> None:
    b = CircuitBreaker(failures=10, window_s=60, open_s=30)
    for i in range(9):
        assert b.record_failure(float(i)) is None
    assert b.allow(9.0) and b.state == CLOSED
    assert b.record_failure(9.5) == OPEN
    assert not b.allow(10.0) and not b.allow(39.4)
    assert b.retry_at() == 39.5


def test_spread_out_failures_do_not_open() -> None:
    b = CircuitBreaker(failures=10, window_s=60, open_s=30)
    for i in range(30):
        b.record_failure(i * 7.0)  # 10 failures never fall within 60 s
    assert b.state == CLOSED


def test_half_open_lets_exactly_one_trial_through() -> None:
    b = CircuitBreaker(failures=2, window_s=60, open_s=30)
    b.record_failure(0.0)
    b.record_failure(1.0)
    assert b.allow(31.0) and b.state == HALF_OPEN
    assert not b.allow(31.1) and not b.allow(50.0)
    assert b.record_failure(51.0) == OPEN  # failed trial reopens for a full period
    assert not b.allow(80.0)
    assert b.allow(81.0)
    assert b.record_success(81.5) == CLOSED
    assert b.allow(81.6) and b.allow(81.7)


def test_success_while_closed_changes_nothing() -> None:
    b = CircuitBreaker(failures=2, window_s=60, open_s=30)
    assert b.record_success(0.0) is None and b.state == CLOSED
