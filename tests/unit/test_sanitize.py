"""models.sanitize: what is shown back to humans carries no markup and no hidden characters."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.openapi import build_openapi
from models.sanitize import UNSAFE_CLASS, clean_text, display_problem, is_display_safe, shown


@given(st.text())
def test_clean_text_is_always_display_safe(text: str) -> None:
    cleaned = clean_text(text)
    assert is_display_safe(cleaned)
    assert not any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in cleaned)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp"),
                                      blacklist_characters="<>")))
def test_safe_text_is_left_alone(text: str) -> None:
    assert display_problem(text) is None
    assert clean_text(text) == text.strip()


@pytest.mark.parametrize(("text", "problem"), [
    ("a\x00b", "control characters"),
    ("a\x9bb", "control characters"),  # C1 CSI: terminal escape
    ("a\u202eb", "invisible formatting characters"),  # right-to-left override
    ("a\u2066b", "invisible formatting characters"),  # bidi isolate
    ("a\ufeffb", "invisible formatting characters"),
    ("a<b", "HTML markup (angle brackets)"),
])
def test_display_problem_names_the_problem(text: str, problem: str) -> None:
    assert display_problem(text) == problem


def test_clean_text_strips_tags_and_cuts() -> None:
    assert clean_text('<a href="javascript:x()">click</a> me') == "click me"
    assert clean_text("<<script>>x") == "x"
    assert clean_text("a" * 50, 10) == "a" * 9 + "…"
    assert shown({"a": 1}) == "a JSON object" and shown(None) == "None"
    assert shown("<b>x</b>") == "'x'"


def test_openapi_patterns_use_the_same_character_class() -> None:
    pattern = build_openapi()["components"]["schemas"]["Event"]["properties"]["agent_id"]["pattern"]
    assert UNSAFE_CLASS[1:-1] in pattern
    assert re.match(pattern, "billing-bot") and not re.match(pattern, "a<b")
