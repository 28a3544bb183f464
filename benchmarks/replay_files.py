"""Files the outside-traffic benchmarks hand to ``ratchet replay`` and read back, and the replay
itself in a child process (the same code path a user runs)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

__all__ = ["ROOT", "read_jsonl", "replay_child", "write_jsonl"]

#: The repository (the replay runs from it).
ROOT = Path(__file__).resolve().parents[1]


def write_jsonl(path: Path, lines: Iterable[str]) -> None:
    """One line per item (already JSON)."""
    with path.open("w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")


def read_jsonl(path: Path) -> Iterator[Any]:
    """Parsed lines of a JSONL file, one at a time."""
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                yield orjson.loads(line)


def replay_child(name: str, events: Path, verdicts: Path, summary: Path, warmup: int,
                 guardrails: bool) -> None:
    """``ratchet replay`` in a child process (the ``ratchet`` console script is
    ``ratchet.cli.main:main``); it starts and removes its own redis-server. ``name``: the
    benchmark, in the error when the replay fails."""
    cmd = [sys.executable, "-m", "ratchet.cli.main", "replay", "--input", str(events),
           "--output", str(verdicts), "--json", str(summary), "--warmup", str(warmup)]
    if not guardrails:
        cmd.append("--no-guardrails")
    rc = subprocess.run(cmd, cwd=ROOT, check=False).returncode
    if rc != 0:
        raise SystemExit(f"{name}: ratchet replay exited with {rc}")
