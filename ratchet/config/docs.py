"""``docs/configuration.md`` generated from ``ratchet/config/settings.py`` (its ``#:`` field comments).

    python -m ratchet.config.docs > docs/configuration.md

A test keeps the committed file equal to this output, so the docs cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys

from ratchet.config import settings as settings_module
from ratchet.config.settings import PREFIX, Settings

__all__ = ["render_markdown"]

_FIELD = re.compile(r"    ([a-z_][a-z0-9_]*): [^=]+?(?: = .*)?")
_SECTION = re.compile(r"    # --- (.+?) -+")


def _docs() -> tuple[dict[str, str], dict[str, str]]:
    """Field → its ``#:`` comment, and field → the section it sits in."""
    source = inspect.getsource(settings_module.Settings)
    comments: dict[str, str] = {}
    sections: dict[str, str] = {}
    pending: list[str] = []
    after_field = False  # a comment group covers the consecutive fields under it
    section = "general"
    for line in source.splitlines():
        if m := _SECTION.fullmatch(line):
            section = m.group(1)
            pending, after_field = [], False
        elif line.strip().startswith("#:"):
            if after_field:
                pending, after_field = [], False
            pending.append(line.strip()[2:].strip())
        elif m := _FIELD.fullmatch(line):
            comments[m.group(1)] = " ".join(pending)
            sections[m.group(1)] = section
            after_field = True
        elif not line.strip().startswith("#"):
            pending, after_field = [], False
    return comments, sections


def _default(f: dataclasses.Field[object]) -> str:
    if f.default is not dataclasses.MISSING:
        value: object = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "(required)"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "1" if value else "0"
    return f"`{value}`"


def render_markdown() -> str:
    comments, sections = _docs()
    lines = [
        "# Configuration",
        "",
        "Every setting is an environment variable with the `RATCHET_` prefix, read once into one",
        "settings object (`ratchet/config/settings.py`); a value that cannot be cast is refused at start-up",
        "with the variable's name, and so is a `RATCHET_*` variable that is no setting (with the",
        "closest setting's name: a typo must not run silently on the default; `RATCHET_TEST_*`,",
        "`RATCHET_SDK_*`, `RATCHET_PYTHON` and `RATCHET_VENV` belong to the tests and scripts).",
        "Engine parameters (thresholds, modes, decay) are not settings but an `[engine]` TOML table",
        "(`models/params.py`, `docs/detection.md`; unknown tables and keys and values of the wrong",
        "type are refused the same way); guardrail policies are per project (`docs/guardrails.md`).",
        "",
        "`ratchet config check [--engine FILE] [--policy FILE ...]` checks the environment, the log,",
        "rate-limit and proxy settings, the engine config (`--engine` or `RATCHET_ENGINE_CONFIG`) and",
        "policy files at once, prints every problem and exits 1 if there is one.",
        "",
        "This file is generated: `python -m ratchet.config.docs > docs/configuration.md`.",
    ]
    current = None
    for f in dataclasses.fields(Settings):
        section = sections.get(f.name, "general")
        if section != current:
            lines += ["", f"## {section}", "", "| variable | default | meaning |", "| --- | --- | --- |"]
            current = section
        doc = comments.get(f.name, "").replace("|", "\\|")
        lines.append(f"| `{PREFIX}{f.name.upper()}` | {_default(f)} | {doc} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(render_markdown())
