"""docs/configuration.md is generated from the settings object and must not drift from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ratchet.config.docs import render_markdown
from ratchet.config.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_committed_doc_is_the_generated_one() -> None:
    assert DOC.read_text() == render_markdown(), (
        "docs/configuration.md is stale: python -m ratchet.config.docs > docs/configuration.md"
    )


def test_every_setting_is_documented_with_a_meaning() -> None:
    text = render_markdown()
    for f in dataclasses.fields(Settings):
        row = next(line for line in text.splitlines() if f"`RATCHET_{f.name.upper()}`" in line)
        assert not row.endswith("|  |"), f"RATCHET_{f.name.upper()} has no #: comment in settings.py"


def test_defaults_quoted_in_api_md_are_the_settings_defaults() -> None:
    """docs/api.md lists settings as `RATCHET_X` (default): every numeric default it quotes is
    the settings object's (it said 2 and 60 for RATCHET_REDIS_TIMEOUT_S and
    RATCHET_IDEMPOTENCY_LEASE_S, which are 5.0 and 6)."""
    import re

    fields = {f.name: f for f in dataclasses.fields(Settings)}
    text = (DOC.parent / "api.md").read_text()
    quoted = re.findall(r"`RATCHET_(\w+)` \(([^)]+)\)", text)
    assert quoted
    wrong = []
    for name, value in quoted:
        f = fields[name.lower()]
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = value.split(";")[0].strip().strip("`")
        try:
            if float(shown) != float(default):  # type: ignore[arg-type]
                wrong.append(f"RATCHET_{name}: api.md {shown}, settings {default}")
        except (TypeError, ValueError):
            continue  # not a number (a tier list, "off", "empty"): not compared
    assert not wrong, wrong
