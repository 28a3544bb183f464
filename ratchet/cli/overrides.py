"""``ratchet overrides show|set|delete``: a project's engine override, from the command line.

The same store and checks as ``PUT /v1/policy/engine``: the file is an ``[engine]`` table,
validated by the strict engine-config model (an unknown key is an error with a "did you mean"),
the change is audited (``engine.override_replaced`` / ``engine.override_deleted``, actor ``cli``
or ``operator:<name>``), and workers pick it up within ``RATCHET_POLICY_REFRESH_S`` without a
restart. ``ratchet tune --project P --apply`` stores its recommendation through
:func:`apply_override`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from models.audit import check_action_actor
from models.errors import ConfigError, ValidationError
from models.overrides import override_toml, parse_override_toml
from ratchet.cli.connect import open_redis
from ratchet.config.settings import Settings, get_settings
from ratchet.kafka.audit_sink import kafka_sink
from ratchet.kafka.security import client_kwargs
from ratchet.store.audit import AuditLog
from ratchet.store.engine_overrides import (
    StoredOverride,
    delete_override,
    load_override,
    save_override,
)
from ratchet.store.keys import Keys

__all__ = ["apply_override", "register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "overrides",
        help="a project's engine override (engine parameters for one project; audited)",
        description=(
            "Show, set or delete a project's engine override: [engine] parameters for this "
            "project only, on top of the global ones (RATCHET_ENGINE_CONFIG). Workers apply a "
            "change within RATCHET_POLICY_REFRESH_S, without a restart. Needs RATCHET_REDIS_URL. "
            "The API equivalent is GET/PUT/DELETE /v1/policy/engine."
        ),
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    show = verbs.add_parser("show", help="print the project's override as TOML (or --json)")
    show.add_argument("--project", required=True, help="project id (prj_...)")
    show.add_argument("--json", action="store_true", help="JSON with version and author")
    show.set_defaults(func=_show)
    put = verbs.add_parser("set", help="replace the override with FILE's [engine] table")
    put.add_argument("--project", required=True, help="project id (prj_...)")
    put.add_argument("file", help="TOML file with an [engine] table")
    put.add_argument("--operator", help="who asks (audited as operator:<name>; default 'cli')")
    put.set_defaults(func=_set)
    rm = verbs.add_parser("delete", help="remove the override (the global parameters apply)")
    rm.add_argument("--project", required=True, help="project id (prj_...)")
    rm.add_argument("--operator", help="who asks (audited as operator:<name>; default 'cli')")
    rm.set_defaults(func=_delete)


def _url(settings: Settings) -> str:
    if not settings.redis_url:
        raise ConfigError("set RATCHET_REDIS_URL to the deployment's Redis")
    return settings.redis_url


async def apply_override(settings: Settings, url: str, project: str,
                         values: Mapping[str, Any] | None, actor: str) -> StoredOverride:
    """Store (``values``) or delete (None) the override, audited like the API does."""
    action = "engine.override_deleted" if values is None else "engine.override_replaced"
    check_action_actor(action, actor)
    redis = await open_redis(settings, url)
    keys = Keys(settings.key_prefix)
    try:
        async with kafka_sink(settings.kafka_bootstrap, security=client_kwargs(settings)) as sink:
            audit = AuditLog(redis, keys, settings, sink=sink)
            if values is None:
                stored = await delete_override(redis, keys, project, actor=actor, now=time.time())
                details: dict[str, Any] = {"version": stored.version}
            else:
                stored = await save_override(redis, keys, project, values, actor=actor,
                                             now=time.time())
                details = {"version": stored.version, "engine": dict(values)}
            await audit.append(project, action, actor, "policy/engine", details)
            return stored
    finally:
        await redis.aclose()


def _actor(args: argparse.Namespace) -> str:
    return f"operator:{args.operator}" if args.operator else "cli"


def _show(args: argparse.Namespace) -> int:
    settings = get_settings()
    url = _url(settings)

    async def read() -> StoredOverride:
        redis = await open_redis(settings, url)
        try:
            return await load_override(redis, Keys(settings.key_prefix), args.project)
        finally:
            await redis.aclose()

    stored = asyncio.run(read())
    if args.json:
        print(json.dumps(stored.to_dict(), indent=2))
    elif stored.values:
        print(f"# project {args.project}: override version {stored.version}, by "
              f"{stored.updated_by}")
        print(override_toml(stored.values), end="")
    else:
        print(f"# project {args.project}: no override; the global engine parameters apply")
    return 0


def _set(args: argparse.Namespace) -> int:
    settings = get_settings()
    url = _url(settings)
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{args.file}: {exc.strerror}") from None
    try:
        values = parse_override_toml(text)
    except ValidationError as exc:
        raise ConfigError(f"{args.file}: {exc}") from None
    stored = asyncio.run(apply_override(settings, url, args.project, values, _actor(args)))
    print(f"project {args.project}: engine override version {stored.version} stored; workers "
          f"apply it within {settings.policy_refresh_s:g}s")
    return 0


def _delete(args: argparse.Namespace) -> int:
    settings = get_settings()
    url = _url(settings)
    stored = asyncio.run(apply_override(settings, url, args.project, None, _actor(args)))
    print(f"project {args.project}: engine override removed (version {stored.version}); the "
          "global parameters apply")
    return 0
