"""The ``ratchet`` command: one entry point, subcommands registered by the modules that own them."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ratchet.errors import RatchetError
from ratchet.logsetup import setup_logging
from ratchet.settings import get_settings

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

#: Modules exposing ``register(subparsers)``; each adds its own subcommands.
COMMAND_MODULES: tuple[str, ...] = (
    "ratchet.replay",
    "ratchet.demo",
    "gateway.cli",
    "streams.cli",
    "ratchet.audit_cli",
    "ratchet.webhooks_cli",
    "ratchet.baseline_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ratchet",
        description=(
            "Ratchet — a streaming behavioural firewall for AI agents. Agents stream every tool "
            "call as a signed event; Ratchet learns per agent which call sequences are normal "
            "and answers allow / flag / pause / reject. Settings come from RATCHET_* "
            "environment variables (see docs/configuration.md)."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
        setup_logging("DEBUG" if args.verbose else settings.log_level, settings.log_format)
        return int(args.func(args) or 0)
    except RatchetError as exc:
        print(f"ratchet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ratchet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
