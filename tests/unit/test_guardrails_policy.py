"""Policy parsing: defaults, overrides, errors that name the field, dict round trip, hash."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.errors import ValidationError
from models.guardrails import (
    default_policy,
    parse_policy,
    parse_policy_toml,
    policy_from_dict,
    policy_hash,
    policy_to_dict,
    state_spec,
)
from models.guardrails.pattern_builtin import BUILTIN_RULES

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "policy.example.toml"


def field_of(doc: Any) -> str | None:
    with pytest.raises(ValidationError) as info:
        parse_policy_toml(doc) if isinstance(doc, str) else parse_policy(doc)
    return info.value.field


def test_default_policy_is_all_on_and_all_flag() -> None:
    p = default_policy()
    for name in ("velocity", "loop", "pattern", "pii", "cost", "entropy", "media"):
        cfg = getattr(p, name).base
        assert cfg.enabled and cfg.action == "flag", name
    assert [r.id for r in p.pattern.base.rules] == [r["id"] for r in BUILTIN_RULES]
    assert dict(p.pii.base.detector_actions) == {}
    assert parse_policy({}) == parse_policy_toml("") == p


def test_example_policy_parses_and_round_trips() -> None:
    p = parse_policy_toml(EXAMPLE.read_text())
    assert [r.id for r in p.pattern.base.rules] == [
        "refund-cap", "mail-own-domain", "sql-drop", "internal-host",
        *(r["id"] for r in BUILTIN_RULES)]
    assert p.velocity.for_event("search", "normal").per_run.limit == 1200
    assert p.velocity.for_event("crm", "normal").per_run.limit == 300
    assert "email" not in p.pii.for_event("crm", "normal").detectors
    assert p.pii.for_event("crm", "normal").detector_actions["secret"] == "pause"
    assert p.cost.for_event("payments", "critical").action == "reject"
    assert p.media.for_event("vision", "low").allow_mime_types == ("image/*",)
    assert policy_from_dict(policy_to_dict(p)) == p
    assert policy_hash(policy_from_dict(policy_to_dict(p))) == policy_hash(p)


def test_example_policy_shows_every_key_of_every_guardrail() -> None:
    """The example documents every parameter: its base tables list all keys of the dict form."""
    import tomllib

    written = tomllib.loads(EXAMPLE.read_text())["guardrails"]
    full = policy_to_dict(default_policy())["guardrails"]
    for name, keys in full.items():
        assert set(keys) <= set(written[name]), (name, set(keys) - set(written[name]))


def test_example_values_other_than_noted_examples_are_the_defaults() -> None:
    import tomllib

    doc = tomllib.loads(EXAMPLE.read_text())
    for g in doc["guardrails"].values():
        g.pop("by_service", None)
        g.pop("by_priority", None)
    doc["guardrails"]["pattern"].pop("rules")
    doc["guardrails"]["pii"].pop("exclude_paths")
    doc["guardrails"]["pii"].pop("detector_actions")
    doc.pop("description")
    assert policy_hash(parse_policy(doc)) == policy_hash(default_policy())


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ("[guardrails.velocity.per_run]\nlimit = -1", "guardrails.velocity.per_run.limit"),
        ("[guardrails.velocity.per_run]\nlimit = 1.5", "guardrails.velocity.per_run.limit"),
        ("[guardrails.velocity.per_run]\nlimt = 5", "guardrails.velocity.per_run.limt"),
        ("[guardrails.velocity]\naction = 'block'", "guardrails.velocity.action"),
        ("[guardrails.velocity]\nenabled = 'yes'", "guardrails.velocity.enabled"),
        ("[guardrails.velocity]\nper_run = 5", "guardrails.velocity.per_run"),
        ("[guardrails.speed]\nenabled = true", "guardrails.speed"),
        ("[guardrail.velocity]\nenabled = true", "guardrail"),
        ("version = 2", "version"),
        ("[guardrails.loop]\nmax_cycle_len = 5", "guardrails.loop.max_cycle_len"),
        (
            "[guardrails.loop]\nhistory = 8\nmax_repeats = 9\nmax_cycle_len = 1",
            "guardrails.loop.max_repeats",
        ),
        ("[guardrails.loop]\nhistory = 8\nmax_repeats = 8", "guardrails.loop.max_cycle_repeats"),
        ("[guardrails.loop]\nhistory = 8", "guardrails.loop.max_repeats"),
        ("[guardrails.entropy]\nwindow = 16\nmax_bits = 4.0", "guardrails.entropy.max_bits"),
        ("[guardrails.cost]\nper_run_limit = -1.0", "guardrails.cost.per_run_limit"),
        ("[guardrails.cost]\nper_run_limit = nan", "guardrails.cost.per_run_limit"),
        ("[guardrails.pii]\ndetectors = ['email', 'passport']", "guardrails.pii.detectors[1]"),
        (
            "[guardrails.pii.detector_actions]\nemial = 'flag'",
            "guardrails.pii.detector_actions.emial",
        ),
        ("[guardrails.pii]\nexclude_paths = ['a..b']", "guardrails.pii.exclude_paths[0]"),
        ("[guardrails.pii]\nentropy_max_length = 20", "guardrails.pii.entropy_max_length"),
        ("[guardrails.media]\ndeny_mime_types = ['EXE']", "guardrails.media.deny_mime_types[0]"),
        ("[guardrails.media]\nmax_blob_bytes = 0", "guardrails.media.max_blob_bytes"),
        (
            "[guardrails.cost.by_priority.urgent]\naction = 'reject'",
            "guardrails.cost.by_priority.urgent",
        ),
        (
            "[guardrails.cost.by_service.crm]\nactoin = 'reject'",
            "guardrails.cost.by_service.crm.actoin",
        ),
        (
            "[guardrails.velocity.by_service.crm.per_run]\nwindow_s = 10",
            "guardrails.velocity.by_service.crm.per_run.window_s",
        ),
        (
            "[guardrails.loop.by_service.crm]\nhistory = 10",
            "guardrails.loop.by_service.crm.history",
        ),
        (
            "[guardrails.entropy.by_priority.high]\nwindow = 8",
            "guardrails.entropy.by_priority.high.window",
        ),
        (
            "[guardrails.cost.by_service.crm.by_priority.high]\naction = 'reject'",
            "guardrails.cost.by_service.crm.by_priority",
        ),
        (
            "[guardrails.loop.by_priority.high]\nmax_repeats = 100",
            "guardrails.loop.by_priority.high.max_repeats",
        ),
    ],
)
def test_errors_name_the_dotted_field(doc: str, field: str) -> None:
    assert field_of(doc) == field


def test_error_messages_say_what_is_allowed() -> None:
    with pytest.raises(ValidationError) as info:
        parse_policy_toml("[guardrails.velocity.per_run]\nlimt = 5")
    assert "did you mean 'limit'" in str(info.value)
    assert "allowed: limit, window_s" in str(info.value)
    with pytest.raises(ValidationError) as info:
        parse_policy_toml("[guardrails.velocity]\naction = 'block'")
    assert "flag, pause, reject" in str(info.value)


def test_toml_syntax_error_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as info:
        parse_policy_toml("[guardrails.velocity\n")
    assert "not valid TOML" in str(info.value)
    assert info.value.field is None


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"paths": ["a"], "regex": "x"}, "guardrails.pattern.rules[0].id"),
        ({"id": "r", "regex": "x", "literal": "y"}, "guardrails.pattern.rules[0].regex"),
        ({"id": "r"}, "guardrails.pattern.rules[0].regex"),
        ({"id": "r", "regex": "(a)\\1"}, "guardrails.pattern.rules[0].regex"),
        ({"id": "r", "regex": "(unclosed"}, "guardrails.pattern.rules[0].regex"),
        ({"id": "r", "regex": "x", "paths": []}, "guardrails.pattern.rules[0].paths"),
        ({"id": "r", "regex": "x", "paths": ["a.**[]"]}, "guardrails.pattern.rules[0].paths[0]"),
        ({"id": "bad id!", "regex": "x"}, "guardrails.pattern.rules[0].id"),
        ({"id": "r", "regex": "x", "action": "stop"}, "guardrails.pattern.rules[0].action"),
        ({"id": "r", "regex": "x", "flags": "i"}, "guardrails.pattern.rules[0].flags"),
    ],
)
def test_pattern_rule_errors_name_the_field(rule: dict[str, Any], field: str) -> None:
    assert field_of({"guardrails": {"pattern": {"rules": [rule]}}}) == field


def test_pattern_rule_ids_are_unique_and_disabled_rules_must_exist() -> None:
    rules = [{"id": "r", "regex": "x"}, {"id": "r", "literal": "y"}]
    assert (
        field_of({"guardrails": {"pattern": {"rules": rules}}}) == "guardrails.pattern.rules[1].id"
    )
    doc = {
        "guardrails": {
            "pattern": {"rules": rules[:1], "by_service": {"s": {"disabled_rules": ["q"]}}}
        }
    }
    assert field_of(doc) == "guardrails.pattern.by_service.s.disabled_rules[0]"
    doc = {"guardrails": {"pattern": {"rules": rules[:1], "by_service": {"s": {"rules": []}}}}}
    assert field_of(doc) == "guardrails.pattern.by_service.s.rules"


def test_overrides_merge_and_priority_applies_after_service() -> None:
    p = parse_policy_toml(
        """
        [guardrails.cost]
        per_run_limit = 10.0
        [guardrails.cost.by_service.payments]
        per_run_limit = 2.0
        action = "pause"
        [guardrails.cost.by_priority.critical]
        action = "reject"
        [guardrails.pii.detector_actions]
        secret = "pause"
        [guardrails.pii.by_service.vault]
        detectors = ["email", "secret"]
        [guardrails.pii.by_service.vault.detector_actions]
        email = "reject"
        """
    )
    assert p.cost.for_event("payments", "normal").per_run_limit == 2.0
    assert p.cost.for_event("payments", "normal").action == "pause"
    assert p.cost.for_event("payments", "critical").action == "reject"
    assert p.cost.for_event("payments", "critical").per_run_limit == 2.0
    assert p.cost.for_event("crm", "critical").action == "reject"
    assert p.cost.for_event("crm", "critical").per_run_limit == 10.0
    assert p.cost.for_event("crm", "low") is p.cost.base
    # tables merge key by key
    assert dict(p.pii.for_event("vault", "normal").detector_actions) == {
        "email": "reject",
        "secret": "pause",
    }


def test_override_equal_to_base_still_wins_over_a_service_override() -> None:
    """An explicit priority value equal to the base must not vanish in the dict round trip."""
    p = parse_policy_toml(
        """
        [guardrails.cost.by_service.payments]
        action = "pause"
        [guardrails.cost.by_priority.low]
        action = "flag"
        """
    )
    assert p.cost.for_event("payments", "low").action == "flag"
    q = policy_from_dict(policy_to_dict(p))
    assert q.cost.for_event("payments", "low").action == "flag"
    assert q.cost.for_event("payments", "normal").action == "pause"


def test_policy_to_dict_spells_out_defaults_and_lists_overrides_as_written() -> None:
    d = policy_to_dict(parse_policy_toml("[guardrails.velocity.by_service.s.per_run]\nlimit = 9"))
    assert d["version"] == 1
    assert d["guardrails"]["velocity"]["per_run"] == {"window_s": 60, "limit": 300}
    assert d["guardrails"]["velocity"]["by_service"] == {"s": {"per_run": {"limit": 9}}}
    assert "by_priority" not in d["guardrails"]["velocity"]
    import json

    json.dumps(d)  # JSON-able


def test_hash_ignores_layout_order_and_spelled_out_defaults() -> None:
    a = parse_policy_toml("[guardrails.cost]\nper_run_limit = 5\naction = 'pause'\n")
    b = parse_policy_toml(
        '# comment\n[guardrails.cost]\naction = "pause"\nper_run_limit = 5.0\nenabled = true\n'
    )
    c = parse_policy_toml("[guardrails.cost]\nper_run_limit = 6\naction = 'pause'\n")
    assert policy_hash(a) == policy_hash(b) != policy_hash(c)
    assert policy_hash(default_policy()) == policy_hash(default_policy())
    assert len(policy_hash(a)) == 64


def test_state_spec_follows_the_policy() -> None:
    spec = state_spec(default_policy())
    assert (spec.agent_window_s, spec.run_window_s, spec.history) == (60, 60, 64)
    off = parse_policy_toml(
        """
        [guardrails.velocity]
        enabled = false
        [guardrails.loop]
        enabled = false
        [guardrails.entropy]
        window = 128
        max_bits = 6.0
        [guardrails.cost]
        per_run_limit = 0.0
        """
    )
    spec = state_spec(off)
    assert spec.agent_window_s is None and spec.run_window_s is None
    assert spec.history == 127 and spec.run_events
    assert not spec.run_cost and spec.agent_daily_cost
    # a guardrail switched on only for one service still needs its state
    one = parse_policy_toml(
        """
        [guardrails.velocity]
        enabled = false
        [guardrails.velocity.by_service.crm]
        enabled = true
        """
    )
    assert state_spec(one).agent_window_s == 60


_limits = st.integers(min_value=0, max_value=10_000)
_actions = st.sampled_from(["flag", "pause", "reject"])


@settings(max_examples=60, deadline=None)
@given(
    per_run=_limits,
    per_agent=_limits,
    action=_actions,
    svc_action=_actions,
    prio=st.sampled_from(["low", "normal", "high", "critical"]),
    cost=st.floats(min_value=0, max_value=1e6, allow_nan=False),
)
def test_round_trip_and_hash_are_stable(
    per_run: int, per_agent: int, action: str, svc_action: str, prio: str, cost: float
) -> None:
    doc = {
        "guardrails": {
            "velocity": {
                "action": action,
                "per_run": {"limit": per_run},
                "per_agent": {"limit": per_agent},
                "by_priority": {prio: {"per_run": {"limit": per_agent}}},
            },
            "cost": {"per_run_limit": cost, "by_service": {"x": {"action": svc_action}}},
        }
    }
    p = parse_policy(doc)
    d = policy_to_dict(p)
    q = policy_from_dict(d)
    assert q == p
    assert policy_hash(q) == policy_hash(p)
    assert policy_to_dict(q) == d


def test_configs_for_an_event_are_each_guardrails_own_resolution() -> None:
    # Policy.configs_for remembers every guardrail's config per (service, priority): the same as each
    # guardrail's for_event, with service and priority overrides; a replaced policy starts empty.
    p = parse_policy_toml("""
[guardrails.velocity.per_agent]
limit = 50
[guardrails.cost.by_service.billing]
per_run_limit = 2.0
[guardrails.pii.by_priority.critical]
action = "reject"
""")
    names = ("velocity", "loop", "entropy", "cost", "pattern", "pii", "media", "order", "value")
    for svc in ("billing", "crm"):
        for prio in ("normal", "critical"):
            want = tuple(getattr(p, n).for_event(svc, prio) for n in names)
            assert p.configs_for(svc, prio) == want
            assert p.configs_for(svc, prio) == want  # remembered
    assert p.configs_for("billing", "normal").cost.per_run_limit == 2.0
    assert p.configs_for("crm", "critical").pii.action == "reject"
    other = dataclasses.replace(p, description="x")
    assert other.configs_for("crm", "normal") == p.configs_for("crm", "normal")
    assert other._resolved_events is not p._resolved_events


# --- can_hold: whether any guardrail can pause or reject an event (the worker's direct path) ---

@pytest.mark.parametrize("toml", [
    "[guardrails.velocity]\naction = 'pause'\n",
    "[guardrails.loop]\naction = 'reject'\n",
    "[guardrails.cost]\naction = 'pause'\n",
    "[guardrails.entropy]\naction = 'pause'\n",
    "[guardrails.media]\naction = 'reject'\n",
    "[guardrails.pii]\naction = 'pause'\n",
    "[guardrails.pii]\ndetector_actions = { card = 'pause' }\n",
    "[guardrails.pattern]\nrules = [{ id = 'x', regex = 'drop table', action = 'reject' }]\n",
    "[guardrails.pattern]\naction = 'pause'\nrules = [{ id = 'x', literal = 'drop table' }]\n",
])
def test_a_policy_that_pauses_or_rejects_anywhere_can_hold(toml: str) -> None:
    assert parse_policy_toml(toml).can_hold("crm", "normal")


def test_the_default_policy_and_flag_only_policies_cannot_hold() -> None:
    assert not default_policy().can_hold("crm", "normal")
    flags = parse_policy_toml(
        "[guardrails.velocity]\naction = 'flag'\n"
        "[guardrails.pattern]\nrules = [{ id = 'x', regex = 'drop table', action = 'flag' }]\n")
    assert not flags.can_hold("crm", "critical")


def test_can_hold_follows_overrides_and_disabled_guardrails() -> None:
    p = parse_policy_toml(
        "[guardrails.velocity]\naction = 'flag'\n"
        "[guardrails.velocity.by_service.payments]\naction = 'pause'\n"
        "[guardrails.cost]\nenabled = false\naction = 'reject'\n"
        "[guardrails.loop.by_priority.critical]\naction = 'reject'\n")
    assert p.can_hold("payments", "normal")
    assert not p.can_hold("crm", "normal")  # cost rejects, but it is off
    assert p.can_hold("crm", "critical")


@given(st.sampled_from(["velocity", "loop", "cost", "entropy", "media", "pii", "pattern"]),
       st.sampled_from(["flag", "pause", "reject"]))
@settings(max_examples=40, deadline=None)
def test_can_hold_is_true_exactly_when_an_action_holds(guardrail: str, action: str) -> None:
    p = parse_policy({"guardrails": {guardrail: {"action": action}}})
    assert p.can_hold("svc", "high") == (action in ("pause", "reject"))


# --- detector_actions name detectors that are enabled somewhere they apply ---

@pytest.mark.parametrize(("toml", "field"), [
    ("[guardrails.pii.detector_actions]\nemail = 'reject'\n",
     "guardrails.pii.detector_actions.email"),
    ("[guardrails.pii]\ndetectors = ['card']\n[guardrails.pii.detector_actions]\nsecret = 'pause'",
     "guardrails.pii.detector_actions.secret"),
    ("[guardrails.pii.by_service.crm.detector_actions]\nphone = 'pause'\n",
     "guardrails.pii.by_service.crm.detector_actions.phone"),
    ("[guardrails.pii.by_priority.critical.detector_actions]\niban = 'reject'\n",
     "guardrails.pii.by_priority.critical.detector_actions.iban"),
    # crm enables email, not phone: no config of the low priority enables phone
    (("[guardrails.pii.by_service.crm]\ndetectors = ['email']\n"
     "[guardrails.pii.by_priority.low.detector_actions]\nphone = 'pause'\n"),
     "guardrails.pii.by_priority.low.detector_actions.phone"),
])
def test_an_action_for_a_detector_that_is_not_enabled_is_refused(toml: str, field: str) -> None:
    """``detector_actions`` does not enable a detector (``detectors`` does): an action that
    would never apply is refused, naming the key and how to enable the detector."""
    with pytest.raises(ValidationError) as err:
        parse_policy_toml(toml)
    assert err.value.field == field
    det = field.rpartition(".")[2]
    assert f"the {det} detector is not enabled" in str(err.value)
    assert f'adding "{det}" to ' in str(err.value) and "detectors" in str(err.value)


@pytest.mark.parametrize("toml", [
    "[guardrails.pii]\ndetectors = ['email']\n[guardrails.pii.detector_actions]\nemail = 'reject'",
    # set once at the top, enabled where it matters
    ("[guardrails.pii.detector_actions]\nemail = 'reject'\n"
    "[guardrails.pii.by_service.crm]\ndetectors = ['email']\n"),
    ("[guardrails.pii.by_priority.critical.detector_actions]\nemail = 'reject'\n"
    "[guardrails.pii.by_service.crm]\ndetectors = ['email']\n"),
    # enabled at the top, switched off for one service: the inherited action is fine there
    ("[guardrails.pii]\ndetectors = ['email']\n[guardrails.pii.detector_actions]\nemail = 'pause'"
    "\n[guardrails.pii.by_service.crm]\ndetectors = ['card']\n"),
])
def test_an_action_for_a_detector_enabled_where_it_applies_is_kept(toml: str) -> None:
    parse_policy_toml(toml)


def test_a_stored_policy_with_an_unused_action_still_loads() -> None:
    """Stored before the check: the stored form keeps loading (workers must not fail)."""
    doc = policy_to_dict(parse_policy_toml(""))
    doc["guardrails"]["pii"]["detector_actions"] = {"email": "reject"}
    assert policy_from_dict(doc).pii.base.detector_actions["email"] == "reject"
