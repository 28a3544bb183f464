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
