"""The ``ratchet`` command: one entry point, subcommands registered by the modules that own them."""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from redis.exceptions import AskError

from models.errors import ConfigError, RatchetError, UnavailableError
from ratchet.cli import (
    approvals,
    audit,
    baselines,
    config,
    connect,
    demo,
    explain,
    gateway,
    overrides,
    record,
    replay,
    stdout,
    topics,
    tune,
    webhooks,
    worker,
)
from ratchet.config.settings import Settings, get_settings, redacted_url
from ratchet.store.redis import REDIS_ERRORS, translate
from ratchet.telemetry.logs import setup_logging

__all__ = ["COMMANDS", "build_parser", "main"]

#: One module per command family, each exposing ``register(subparsers)``.
COMMANDS = (replay, record, tune, demo, gateway, worker, approvals, audit, webhooks, baselines, explain,
            overrides, topics, config)


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
    parser.add_argument("--version", action=_VersionAction,
                        help="print the version of Ratchet (and of its Redis and Kafka clients)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS:
        module.register(sub)
    return parser


def _version() -> str:
    """``ratchet <version>`` and the client libraries whose versions matter in a bug report."""
    def of(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"
    return (f"ratchet {of('ratchet-firewall')} (Python {platform.python_version()}, "
            f"redis-py {of('redis')}, aiokafka {of('aiokafka')}, "
            f"faust-streaming {of('faust-streaming')})")


class _VersionAction(argparse.Action):
    """``--version``: one unwrapped line on stdout, looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                         nargs=0, help=kwargs.get("help"))

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(_version())
        parser.exit()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        try:
            settings = get_settings()
            setup_logging("DEBUG" if args.verbose else settings.log_level, settings.log_format)
        except ConfigError:
            if not getattr(args, "lenient_settings", False):
                raise
            settings = Settings()  # `config check` reports the problem itself
            setup_logging(settings.log_level, settings.log_format)
        project = getattr(args, "project", None)
        project_url = getattr(args, "redis_url", None) or settings.redis_url
        # a mistyped --project is refused before anything is written or answered as empty;
        # reads of chains (baselines, explain) also serve a replay's kept namespace, which has
        # chains but no project records, and say themselves when they find nothing
        if project and project_url and getattr(args, "project_must_exist", True):
            asyncio.run(connect.require_project(settings, project, project_url))
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return status
    except BrokenPipeError as exc:  # before REDIS_ERRORS: it is a ConnectionError too
        if stdout.stdout_closed():
            return stdout.leave_quietly()
        return _redis_failure(exc)
    except RatchetError as exc:
        print(f"ratchet: error: {_message(exc, exc.__cause__)}{_redis_hint(exc, exc.__cause__)}",
              file=sys.stderr)
        return 2
    except REDIS_ERRORS as exc:  # a command that talks to Redis directly, not through a store
        return _redis_failure(exc)
    except KeyboardInterrupt:
        print("ratchet: interrupted", file=sys.stderr)
        return 130


def _redis_failure(exc: BaseException) -> int:
    err = translate(exc)
    print(f"ratchet: error: {_message(err, exc)}{_redis_hint(err, exc)}", file=sys.stderr)
    return 2


def _message(err: RatchetError, cause: BaseException | None) -> str:
    """``err`` in words; a ``MOVED`` answer names the Redis URL the command used and says
    whether the cluster setting is the fix."""
    if isinstance(cause, AskError):
        return connect.moved_message() or str(err)
    return str(err)


def _redis_hint(err: RatchetError, cause: BaseException | None) -> str:
    """For an operator at a terminal (not an HTTP caller): what Redis said, and where it was
    looked for — the password left out."""
    if not isinstance(err, UnavailableError) or not isinstance(cause, REDIS_ERRORS):
        return ""
    where = connect.unavailable_hint()
    if where is None:
        try:
            url = get_settings().redis_url
        except ConfigError:
            url = None
        where = f"RATCHET_REDIS_URL={redacted_url(url)}" if url else "RATCHET_REDIS_URL is not set"
    return f"\n  Redis said: {cause}\n  {where}: is that Redis running and reachable from here?"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
