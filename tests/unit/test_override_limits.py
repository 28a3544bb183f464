"""What a project's engine override may set: bounded, finite, checked as a whole.

A project's own admin key writes its override, so an override must not be able to make Redis's
work per event unbounded (no caps: one observe call ran for seconds and every tenant waited) or
carry values that mean nothing (infinite, negative). The operator's engine config keeps its
freedom, but not for non-finite or negative values either.
"""

from __future__ import annotations

import pytest

from models.errors import ConfigError, ValidationError
from models.overrides import OVERRIDE_LIMITS, apply_override, parse_override
from models.params import EngineParams, params_from_mapping


@pytest.mark.parametrize(("key", "value"), [
    ("node_cap", 1_000_000_000), ("edge_cap", 1_000_000_000), ("window", 10_000),
    ("window_large", 10_000_000), ("checkpoint_runs", 1), ("floor_bits", 1e300),
    ("sigma_multiplier", -1e300), ("repeat_factor", 1e15), ("stability", 2.0),
])
def test_an_override_out_of_bounds_is_refused_naming_the_key_and_the_range(
    key: str, value: float
) -> None:
    with pytest.raises(ValidationError) as err:
        parse_override({key: value})
    low, high = OVERRIDE_LIMITS[key]
    assert err.value.field == f"engine.{key}"
    assert f"between {low:g} and {high:g}" in str(err.value), str(err.value)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_numbers_are_refused_everywhere(value: float) -> None:
    with pytest.raises(ValidationError) as err:
        parse_override({"floor_bits": value})
    assert "finite" in str(err.value) and err.value.field == "engine.floor_bits"
    with pytest.raises(ConfigError, match="finite"):
        params_from_mapping({"sigma_multiplier": value})  # the operator's config too
    with pytest.raises(ConfigError, match=">= 0"):
        params_from_mapping({"min_support": -1})


def test_the_built_in_defaults_are_within_what_an_override_may_set() -> None:
    defaults = EngineParams()
    for key, (low, high) in OVERRIDE_LIMITS.items():
        assert low <= getattr(defaults, key) <= high, key
    assert parse_override({k: getattr(defaults, k) for k in OVERRIDE_LIMITS})


def test_keys_that_only_fit_together_are_checked_together() -> None:
    """window 100 needs window_large >= 100: given both, accepted (it used to be refused, each key
    checked alone against the other's default); given alone, the message names both values."""
    assert parse_override({"window": 100, "window_large": 100}) == {
        "window": 100, "window_large": 100}
    with pytest.raises(ValidationError) as err:
        parse_override({"window": 20})
    assert "window_large (15) must be >= engine.window (20)" in str(err.value)


def test_a_stored_override_out_of_bounds_is_not_applied() -> None:
    """An override written before these bounds (or around the API) raises, and the worker keeps
    the global parameters (store/engine_overrides.ProjectParams)."""
    base = EngineParams()
    with pytest.raises(ConfigError, match="node_cap"):
        apply_override(base, {"node_cap": 1_000_000_000})
    assert apply_override(base, {"node_cap": 64}).node_cap == 64


@pytest.mark.parametrize(("values", "field"), [
    ({"epsilon": 2.0}, "engine.epsilon"), ({"decay_rate": 1.5}, "engine.decay_rate"),
    ({"window_large": 5}, "engine.window_large"), ({"window": 20}, "engine"),
])
def test_a_value_out_of_its_own_range_names_its_key(values: dict[str, float], field: str) -> None:
    """Only a combination of keys (window 20 against the default window_large 15) is refused
    under ``engine``; a key out of its own range is named."""
    with pytest.raises(ValidationError) as err:
        parse_override(values)
    assert err.value.field == field, str(err.value)
