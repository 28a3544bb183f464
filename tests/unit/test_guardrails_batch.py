"""The batch scan (models.guardrails.batch) finds exactly what the per-event reference does.

Random JSON events with injected secrets, PII and strings the tenant patterns look for; the
per-event path (``evaluate``, one event at a time) is the reference. Same reasons per event,
in the same order, with the same details — including under tight scan budgets.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.events import IngestEvent, parse_event
from models.guardrails import GuardrailState, evaluate, parse_policy_toml
from models.guardrails.batch import evaluate_batch
from models.guardrails.budget import ScanBudget
from models.guardrails.pattern import PatternConfig, parse_pattern
from models.guardrails.pattern_set import rule_set
from models.guardrails.pii_secrets import find_high_entropy, token_pattern, token_spans

# Test secrets are assembled at run time so that secret scanners do not flag this file.
AWS = "AKIA" + "IOSFODNN7EXAMPLE"
GITHUB = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
STRIPE = "sk_live_" + "51H8aBcDeFgHiJkLmNoPqRsT"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" + ".eyJzdWIiOiIxMjM0NTY3ODkwIn0"
       + ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
TOKEN = "Zq8" + "Xw3Rt7Yp2Lm9Kd4Hs6Vb1Nc5Fg0Jx8Tz3Qw"
INJECT = [
    AWS, GITHUB, STRIPE, JWT, TOKEN, "bob@example.com", "ann.o-neil@mail.example.org",
    "4111 1111 1111 1111", "4012888888881881", "5555-5555-5555-4444", "+44 20 7946 0958",
    "(415) 555-2671", "536-22-8726", "AB 12 34 56 C", "12345678Z", "X1234567L",
    "GB82 WEST 1234 5698 7654 32", "DE89370400440532013000", "DROP TABLE users",
    "drop  database x", "https://internal.example.com/a", "INTERNAL.EXAMPLE.COM", "secret-42",
    "x@y", "2024-01-15T10:30:00Z", "123e4567-e89b-12d3-a456-426614174000", "4155552671",
    "a" * 40, "Ab1" * 20, "drop table t " + "y" * 80, "x" * 70 + " internal.example.com", "line one\nsecret-7 end", "ünïcødé " + AWS, "\x00" + AWS,
]
POLICY = parse_policy_toml('''
version = 1
[guardrails.pattern]
max_scan_chars = 64
[[guardrails.pattern.rules]]
id = "sql-drop"
paths = ["sql", "query", "**.sql", "**"]
regex = '(?i)\\bdrop\\s+(?:table|database)\\b'
action = "reject"
[[guardrails.pattern.rules]]
id = "internal-host"
paths = ["**.url", "**"]
literal = "internal.example.com"
ignore_case = true
[[guardrails.pattern.rules]]
id = "anchored"
regex = '^secret-\\d+$'
[[guardrails.pattern.rules]]
id = "text-anchor"
regex = '\\Asecret'
action = "pause"
[[guardrails.pattern.rules]]
id = "no-multiline"
regex = '(?-m:^line)'
[[guardrails.pattern.rules]]
id = "number"
paths = ["**.n"]
regex = '^4[0-9]+$'
[guardrails.pattern.by_service.reporting]
disabled_rules = ["internal-host"]
[guardrails.pii]
detectors = ["email", "card", "phone", "us_ssn", "uk_nino", "es_dni", "iban", "secret",
             "entropy"]
exclude_paths = ["**.sha"]
max_scan_chars = 4096
[guardrails.pii.by_service.crm]
detectors = ["card", "secret", "entropy"]
entropy_min_length = 20
[guardrails.pii.detector_actions]
secret = "pause"
''')
KEYS = ["sql", "query", "url", "note", "phone", "ssn", "sha", "n", "to", "body", "mobile",
        "tel", "x", "rows", "email"]
SERVICES = ["crm", "mail", "reporting", "search"]

texts = st.one_of(
    st.sampled_from(INJECT),
    st.text(max_size=30),
    st.builds(lambda a, b, c: f"{a} {b} {c}", st.text(max_size=12), st.sampled_from(INJECT),
              st.text(max_size=12)),
    st.builds(lambda a, b: a + b, st.sampled_from(INJECT), st.sampled_from(INJECT)),
    # base64-encoded injections (standard and URL-safe), alone or inside text: decoded leaves
    st.builds(lambda a, v, safe: f"{a} " + (base64.urlsafe_b64encode if safe else
                                            base64.b64encode)(v.encode()).decode(),
              st.text(max_size=8), st.sampled_from(INJECT), st.booleans()),
)
scalars = st.one_of(texts, st.integers(min_value=-(10**15), max_value=10**15), st.floats(
    allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15), st.booleans(),
    st.none(), st.sampled_from([378282246310005, 4222222222222, 123456789012]))
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=4),
    ),
    max_leaves=14,
)
payloads = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6)


def make_event(i: int, payload: dict[str, Any], service: str) -> IngestEvent:
    return parse_event({"event_id": f"e{i}", "agent_id": "a", "run_id": "r", "service": service,
                        "action": "do", "payload": payload}, project_id="p")


events_st = st.lists(st.tuples(payloads, st.sampled_from(SERVICES)), min_size=1, max_size=8)


def reasons_as_data(reasons: list[Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(r.source, r.action, dict(r.detail)) for r in reasons]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events_st, st.lists(st.sampled_from([None, 0, 2_000, 5_000, 20_000, 200_000, 10**9]),
                           min_size=8, max_size=8))
def test_batch_finds_exactly_what_the_per_event_path_finds(
    items: list[tuple[dict[str, Any], str]], steps: list[int | None]
) -> None:
    events = [make_event(i, p, s) for i, (p, s) in enumerate(items)]
    state = GuardrailState(node="n", run_nodes=("n",) * 30, run_events=31,
                           agent_events_in_window=5, run_events_in_window=5, run_cost=1.0,
                           agent_daily_cost=1.0)

    def budgets() -> list[ScanBudget | None]:
        return [None if s is None else ScanBudget(s) for s in steps[:len(events)]]

    ref_budgets = budgets()
    reference = [evaluate(POLICY, e, state, b) for e, b in zip(events, ref_budgets, strict=True)]
    batch_budgets = budgets()
    got = evaluate_batch([POLICY] * len(events), events, [state] * len(events), batch_budgets)
    assert [reasons_as_data(r) for r in got] == [reasons_as_data(r) for r in reference]
    assert [b and (b.steps, b.used) for b in batch_budgets] == [
        b and (b.steps, b.used) for b in ref_budgets
    ]


def test_the_injected_values_are_found_at_all() -> None:
    """The agreement above is not vacuous: the batch reports pattern and PII reasons."""
    events = [make_event(i, {"sql": v, "note": v, "url": v}, "mail") for i, v in enumerate(INJECT)]
    got = evaluate_batch([POLICY] * len(events), events)
    rules = {r.detail["rule"] for reasons in got for r in reasons}
    assert {"pattern.sql-drop", "pattern.internal-host", "pattern.anchored",
            "pattern.text-anchor", "pattern.no-multiline", "pii.secret", "pii.entropy",
            "pii.email", "pii.card", "pii.phone", "pii.us_ssn", "pii.uk_nino", "pii.es_dni",
            "pii.iban"} <= rules


def test_pattern_rules_and_pii_read_base64_encoded_values() -> None:
    """An injected value sent base64-encoded meets the same pattern rules and detectors, on
    both paths; its path says it was decoded."""
    encoded = [base64.b64encode(v.encode()).decode() for v in INJECT]
    events = [make_event(i, {"sql": v, "note": v, "url": v}, "mail") for i, v in enumerate(encoded)]
    got = evaluate_batch([POLICY] * len(events), events)
    rules = {r.detail["rule"] for reasons in got for r in reasons}
    assert {"pattern.sql-drop", "pattern.internal-host", "pii.secret", "pii.card",
            "pii.us_ssn", "pii.iban"} <= rules
    assert got == [evaluate(POLICY, e) for e in events]
    paths = {p for reasons in got for r in reasons for p in r.detail.get("paths", [])}
    assert "sql (base64)" in paths


@pytest.mark.parametrize("value", ["x secret-1", "line two\nsecret-3"])
def test_anchored_rules_do_not_match_inside_a_value_even_when_joined(value: str) -> None:
    """``^``/``\\A`` anchor at the value's start: a batch where another value starts with the
    text must not make this one match."""
    events = [make_event(0, {"note": "secret-1"}, "mail"), make_event(1, {"note": value}, "mail")]
    got = evaluate_batch([POLICY] * 2, events)
    assert "pattern.anchored" in {r.detail["rule"] for r in got[0]}
    assert "pattern.anchored" not in {r.detail["rule"] for r in got[1]}
    assert "pattern.text-anchor" not in {r.detail["rule"] for r in got[1]}


def test_each_event_keeps_its_own_email_windows_in_a_batch() -> None:
    """An event with over 1,000 ``@`` is scanned whole, one with fewer in windows around each
    (which can cut a very long address). Together in a batch, each keeps its own way: the
    batch's ``@`` count must not switch the other event to a whole scan."""
    long_email = "bob@" + "a" * 60 + ("." + "b" * 60) * 4 + ".com"
    events = [make_event(0, {"note": "x@ " * 600}, "mail"),
              make_event(1, {"note": " y@" * 500 + " " + long_email}, "mail")]
    reference = [evaluate(POLICY, e) for e in events]
    got = evaluate_batch([POLICY] * 2, events)
    assert [reasons_as_data(r) for r in got] == [reasons_as_data(r) for r in reference]
    assert any(r.detail["rule"] == "pii.email" for r in got[1])


def test_rule_set_is_compiled_once_per_rule_tuple() -> None:
    assert rule_set(POLICY.pattern.base.rules) is rule_set(POLICY.pattern.base.rules)
    other = parse_pattern({"rules": [{"id": "a", "regex": "a"}]}, "p", PatternConfig())
    assert rule_set(other.rules) is not rule_set(POLICY.pattern.base.rules)


def test_rules_outside_the_prefilter_are_always_searched_value_by_value() -> None:
    always = rule_set(POLICY.pattern.base.rules).always
    names = [r.id for i, r in enumerate(POLICY.pattern.base.rules) if i in always]
    # the built-in rules have their own prefilter (builtin_scope), outside the author sets
    assert names == ["text-anchor", "no-multiline"] + [
        r.id for r in POLICY.pattern.base.rules if r.id.startswith("builtin-")]


_OLD_TOKEN = {k: re.compile(token_pattern(k, 256)) for k in (16, 20, 32)}


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from("aB3+/=_-.é \x00\n"), max_size=400),
       st.sampled_from([16, 20, 32]))
def test_token_spans_on_re2_equal_the_lookaround_pattern(text: str, min_length: int) -> None:
    """The entropy token finder moved from Python ``re`` (lookarounds) to RE2 (maximal runs
    filtered by length): the same spans."""
    old = [m.span() for m in _OLD_TOKEN[min_length].finditer(text)]
    assert token_spans(text, min_length, 256) == old


def test_high_entropy_tokens_are_still_found_after_non_ascii_text() -> None:
    text = "é" * 5 + " " + TOKEN
    (f,) = find_high_entropy(text, min_length=32, max_length=256, min_bits=4.5)
    assert text[f.start:f.end] == TOKEN


class _Unfinished:
    """A compiled set whose scan could not finish (RE2 answers nothing, not even index 0)."""

    def Match(self, text: bytes) -> None:
        return None


def test_a_set_that_cannot_finish_flags_every_rule_never_none() -> None:
    rules = parse_pattern({"rules": [{"id": "a", "regex": "zzz"}, {"id": "b", "regex": "yyy"}]},
                          "p", PatternConfig()).rules
    rs = rule_set(rules)
    assert rs.candidates((0, 1), [b"nothing here"]) == frozenset()
    rs._sets[(0, 1)] = _Unfinished()
    assert rs.candidates((0, 1), [b"nothing here"]) == frozenset({0, 1})
