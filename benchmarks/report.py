"""Printing and saving a benchmark's result mapping (one place for every ``--json FILE``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

__all__ = ["emit"]


def emit(res: Mapping[str, Any], json_path: str | None) -> None:
    """Print ``key: value`` lines to stdout; also write indented JSON when ``json_path`` is set."""
    for k, v in res.items():
        print(f"{k}: {v}")
    if json_path:
        Path(json_path).write_bytes(orjson.dumps(dict(res), option=orjson.OPT_INDENT_2))
