"""``ratchet config check``: validate the ``RATCHET_*`` environment and the config files at once.

Why: a misspelt variable, table or key must be found before a deploy, not after it ran on
defaults. Every problem is listed (not only the first), each naming the variable, file or key
and, where one is close, the name that was probably meant; the exit status is 1 when there is
any problem, so the command can gate a deploy.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gateway.client_ip import parse_networks
from models.errors import ConfigError, RatchetError
from models.guardrails.policy import parse_policy_toml
from models.params import EngineParams, engine_problems
from models.ratelimit import check_spread_burst, parse_tiers
from ratchet.config.engine import engine_params
from ratchet.config.settings import Settings, variable_problems
from ratchet.telemetry.logs import resolve_format

__all__ = ["check", "register"]


def _run(label: str, work: Callable[[], str], ok: list[str], errors: list[str]) -> None:
    try:
        ok.append(f"{label}: {work()}")
    except (RatchetError, ValueError) as exc:
        errors.append(f"{label}: {exc}")


def _overridden(params: EngineParams) -> str:
    default = EngineParams()
    changed = [f.name for f in dataclasses.fields(EngineParams)
               if getattr(params, f.name) != getattr(default, f.name)]
    return f"ok, {len(changed)} parameter(s) set" + (f": {', '.join(changed)}" if changed else "")


def _tiers(settings: Settings) -> str:
    tiers = parse_tiers(settings.rate_limit_tiers)
    if settings.default_tier not in tiers:
        raise ConfigError(f"RATCHET_DEFAULT_TIER={settings.default_tier!r} is not one of the "
                         f"tiers of RATCHET_RATE_LIMIT_TIERS ({', '.join(tiers)})")
    check_spread_burst(settings.spread_burst_s)
    return (f"ok, tiers {', '.join(tiers)}; default {settings.default_tier}; spread burst "
            f"{settings.spread_burst_s:g} s")


def _log_level(settings: Settings) -> str:
    if not isinstance(logging.getLevelName(settings.log_level.upper()), int):
        raise ConfigError(f"RATCHET_LOG_LEVEL={settings.log_level!r} is not a log level "
                          "(DEBUG, INFO, WARNING, ERROR)")
    return f"ok, {settings.log_level.upper()}"


def _log_format(settings: Settings) -> str:
    fmt = resolve_format(settings.log_format)
    auto = " (text on a terminal, else json)" if fmt != settings.log_format else ""
    return f"ok, {settings.log_format}{auto}"


def _engine(path: str, ok: list[str], errors: list[str]) -> None:
    """The engine config: every problem of it, one line each (loading it stops at the first)."""
    label = f"engine config {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        errors.append(f"{label}: cannot read it: {exc.strerror}")
        return
    problems = engine_problems(text)
    if problems:
        errors.extend(f"{label}: {p}" for p in problems)
        return
    _run(label, lambda: _overridden(engine_params(path, Settings())), ok, errors)


def _policy(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    parse_policy_toml(text)
    return "ok"


def check(
    environ: Mapping[str, str], *, engine: str | None = None, policies: tuple[str, ...] = ()
) -> tuple[list[str], list[str]]:
    """(what passed, what failed) for ``environ`` and the named files (none are changed)."""
    ok: list[str] = []
    errors = [f"environment: {p}" for p in variable_problems(environ)]
    named = sorted(k for k in environ if k.startswith("RATCHET_"))
    if errors:
        settings = None
    else:
        settings = Settings.from_env(environ)
        ok.append(f"environment: ok, {len(named)} RATCHET_* variable(s) set")
    if settings is not None:
        s = settings
        _run("log level", lambda: _log_level(s), ok, errors)
        _run("log format", lambda: _log_format(s), ok, errors)
        _run("rate limits", lambda: _tiers(s), ok, errors)
        _run("trusted proxies",
             lambda: f"ok, {len(parse_networks(s.trusted_proxies))} network(s)", ok, errors)
    path = engine or (settings.engine_config if settings is not None else
                      environ.get("RATCHET_ENGINE_CONFIG"))
    if path:
        _engine(path, ok, errors)
    for p in policies:
        _run(f"policy {p}", functools.partial(_policy, p), ok, errors)
    return ok, errors


def _cmd_check(args: argparse.Namespace) -> int:
    ok, errors = check(os.environ, engine=args.engine, policies=tuple(args.policy))
    for line in ok:
        print(line)
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    if errors:
        print(f"ratchet config check: {len(errors)} problem(s)", file=sys.stderr)
    return 1 if errors else 0


def register(sub: Any) -> None:
    """Add ``config check`` to the ``ratchet`` command."""
    p = sub.add_parser("config", help="validate settings and config files")
    psub = p.add_subparsers(dest="config_command", metavar="ACTION")
    psub.required = True
    c = psub.add_parser(
        "check",
        help="validate RATCHET_* variables, the engine config and policy files",
        description=(
            "Check every RATCHET_* environment variable (unknown names, values of the wrong "
            "type), the log settings, rate-limit tiers, trusted proxies, the engine config "
            "(--engine or RATCHET_ENGINE_CONFIG) and any policy files; print every problem and "
            "exit 1 if there is one."
        ),
    )
    c.add_argument("--engine", default=None, metavar="FILE",
                   help="engine config (TOML, [engine] table; default RATCHET_ENGINE_CONFIG); "
                        "every wrong key is listed")
    c.add_argument("--policy", action="append", default=[], metavar="FILE",
                   help="a guardrail policy file (TOML) to validate; repeatable")
    c.set_defaults(func=_cmd_check, lenient_settings=True)
