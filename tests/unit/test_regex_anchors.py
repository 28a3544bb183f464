"""Validators match whole strings: ``$`` also matches before a trailing newline.

``re.compile(r"^[a-z]+$").match("abc\\n")`` succeeds, so a validator written that way lets a
newline through (an agent id ``"bot\\n"`` was registered and then refused on every event). The
product's patterns use ``fullmatch`` (or ``\\Z``) instead; the first test walks every product
module and fails on a compiled pattern ending in an unescaped ``$`` (outside ``re.MULTILINE``),
the others feed each validator a trailing newline.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from models.audit import validate_actor
from models.errors import ConfigError, ValidationError
from models.idempotency import validate_key
from models.ratelimit import parse_tiers
from ratchet.platform.signup import parse_redeem, parse_signup_request

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("models", "ratchet", "gateway", "streams")


def _ends_with_dollar(pattern: str) -> bool:
    """True if the pattern's last token is an unescaped ``$``."""
    if not pattern.endswith("$"):
        return False
    backslashes = len(pattern[:-1]) - len(pattern[:-1].rstrip("\\"))
    return backslashes % 2 == 0


def _multiline(call: ast.Call) -> bool:
    return "MULTILINE" in ast.unparse(call) or "re.M" in ast.unparse(call)


def _dollar_patterns(source: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "compile" and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
                and _ends_with_dollar(node.args[0].value) and not _multiline(node)):
            found.append((node.lineno, node.args[0].value))
    return found


def test_no_product_pattern_ends_in_a_dollar() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {pattern!r}"
        for folder in PRODUCT for path in sorted((ROOT / folder).rglob("*.py"))
        for line, pattern in _dollar_patterns(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], "use fullmatch (or \\Z): $ matches before a trailing newline\n" + \
        "\n".join(offenders)


def test_the_check_catches_a_dollar_pattern() -> None:
    assert _dollar_patterns('import re\nX = re.compile(r"^[a-z]+$")\n') == [(2, "^[a-z]+$")]
    assert _dollar_patterns('import re\nX = re.compile(r"[a-z]+\\$")\n') == []
    assert _dollar_patterns('import re\nX = re.compile(r"^x$", re.MULTILINE)\n') == []
    assert re.compile(r"^[a-z]+$").match("abc\n")  # why the rule exists


def test_agent_ids_with_a_trailing_newline_are_refused() -> None:
    with pytest.raises(ValidationError):
        parse_redeem({"token": "st_x", "agent_id": "bot\n"})
    assert parse_redeem({"token": "st_x", "agent_id": "bot"})[2] == "bot"


def test_emails_with_a_trailing_newline_are_refused() -> None:
    with pytest.raises(ValidationError):
        parse_signup_request({"email": "a@b.com\n"})
    assert parse_signup_request({"email": "a@b.com"}).email == "a@b.com"


def test_idempotency_keys_and_actors_with_a_trailing_newline_are_refused() -> None:
    with pytest.raises(ValidationError):
        validate_key("key-1\n")
    assert validate_key("key-1") == "key-1"
    with pytest.raises(ValidationError):
        validate_actor("cli\n")
    assert validate_actor("cli") == "cli"


def test_tier_names_with_a_trailing_newline_are_refused() -> None:
    with pytest.raises(ConfigError):
        parse_tiers("gold\n:100:10")
    assert "gold" in parse_tiers("gold:100:10")
