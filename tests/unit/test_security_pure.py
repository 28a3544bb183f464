"""Pure parts of the platform controls: tier parsing, rate headers, client IP, signup input."""

from __future__ import annotations

import doctest
import math

import pytest

import gateway.client_ip
import models.ratelimit
from gateway.client_ip import client_ip, limit_subject, parse_networks
from models.errors import ConfigError, ValidationError
from models.ratelimit import RateDecision, parse_tiers, retry_after_header
from ratchet.config.settings import Settings
from ratchet.platform.signup import parse_redeem, parse_signup_request


@pytest.mark.parametrize("module", [models.ratelimit, gateway.client_ip])
def test_doctests(module: object) -> None:
    assert doctest.testmod(module).failed == 0  # type: ignore[arg-type]


def test_default_tiers_match_the_design() -> None:
    tiers = parse_tiers(Settings().rate_limit_tiers)
    assert (tiers["free"].ingest_per_min, tiers["free"].register_per_min) == (120, 20)
    assert tiers["high_volume"].ingest_per_min == 100_000
    assert Settings().default_tier == "free"
    assert Settings.from_env({"RATCHET_SIGNUP_DISABLED": "1"}).signup_disabled


@pytest.mark.parametrize("spec", ["", "free:120", "Free:1:1", "free:x:1", "free:0:1",
                                  "a:1:1,a:2:2"])
def test_bad_tier_specs_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError, match="RATCHET_RATE_LIMIT_TIERS"):
        parse_tiers(spec)


def test_rate_headers() -> None:
    d = RateDecision(False, 120, -1, 0.2, 0.4)
    assert d.headers() == {"X-RateLimit-Limit": "120", "X-RateLimit-Remaining": "0",
                           "X-RateLimit-Reset": "1"}
    assert retry_after_header(0.01) == "1" and retry_after_header(10.0) == "10"
    assert retry_after_header(10.001) == "11"
    assert not math.isinf(float(retry_after_header(3599.2)))


@pytest.mark.parametrize(("peer", "xff", "trusted", "expected"), [
    ("127.0.0.1", "6.6.6.6", "", "127.0.0.1"),  # off by default: the header is ignored
    ("10.0.0.5", "6.6.6.6, 198.51.100.7", "10.0.0.0/8", "198.51.100.7"),
    ("10.0.0.5", "198.51.100.7, 10.0.0.9", "10.0.0.0/8", "198.51.100.7"),
    ("203.0.113.1", "6.6.6.6", "10.0.0.0/8", "203.0.113.1"),  # peer not a trusted proxy
    ("10.0.0.5", "garbage", "10.0.0.0/8", "10.0.0.5"),
    ("10.0.0.5", "6.6.6.6, garbage, 10.0.0.9", "10.0.0.0/8", "10.0.0.5"),
    ("::1", "2001:db8::1", "::1", "2001:db8::1"),
    (None, "6.6.6.6", "", "unknown"),
])
def test_client_ip(peer: str | None, xff: str, trusted: str, expected: str) -> None:
    assert client_ip(peer, xff, parse_networks(trusted)) == expected


@pytest.mark.parametrize(("address", "subject"), [
    ("198.51.100.7", "198.51.100.7"),
    ("2001:db8:1:2::5", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:abcd:1:2:3", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::5", "2001:db8:1:3::/64"),
    ("::ffff:198.51.100.7", "198.51.100.7"),
    ("unknown", "unknown"),
])
def test_limit_subject(address: str, subject: str) -> None:
    assert limit_subject(address) == subject


def test_bad_trusted_proxies() -> None:
    with pytest.raises(ConfigError, match="RATCHET_TRUSTED_PROXIES"):
        parse_networks("10.0.0.0/8, not-an-ip")


@pytest.mark.parametrize(("body", "field"), [
    ({"email": "a@b"}, "email"), ({"email": "x" * 300 + "@example.com"}, "email"),
    ({"org_name": ""}, "org_name"), ({"org_name": "x" * 201}, "org_name"),
    ({"org_name": "a<b"}, "org_name"),
])
def test_signup_request_fields(body: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_signup_request(body)
    assert info.value.field == field


@pytest.mark.parametrize(("body", "field"), [
    ({}, "token"), ({"token": "rk_x"}, "token"), ({"token": "st_" + "x" * 200}, "token"),
    ({"token": "st_x", "agent_id": "bad id"}, "agent_id"),
    ({"token": "st_x", "project_name": "\x07"}, "project_name"),
])
def test_redeem_fields(body: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_redeem(body)
    assert info.value.field == field


def test_good_signup_input() -> None:
    assert parse_signup_request(None).email is None
    req = parse_signup_request({"email": "ops@example.com", "org_name": " Acme "})
    assert (req.email, req.org_name) == ("ops@example.com", "Acme")
    assert parse_redeem({"token": "st_abc", "agent_id": "bot-1"}) == ("st_abc", None, "bot-1")
