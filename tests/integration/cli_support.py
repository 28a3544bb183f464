"""Helpers of the CLI tests: run ``python -m ratchet`` in a child process, read its fields."""

from __future__ import annotations

import os
import subprocess
import sys

__all__ = ["field", "ratchet_cli"]


def ratchet_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``ratchet ARGS`` with only the given ``RATCHET_*`` variables set."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "ratchet", *args], capture_output=True,
                          text=True, env=full, timeout=60, check=False)


def field(out: str, name: str) -> str:
    """The value of a ``name: value`` line of a command's output."""
    for line in out.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} not in {out!r}")
