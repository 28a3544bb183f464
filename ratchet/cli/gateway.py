"""Subcommands ``ratchet gateway``, ``ratchet projects create|rotate-key|set-tier``,
``ratchet agents create|rotate-secret``, ``ratchet keys create|list|rotate|revoke``.

Secrets are printed once, to stdout, with a warning on stderr; they are never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from aiohttp import web

from models.errors import ConfigError, NotFoundError, ValidationError
from models.ratelimit import parse_tiers
from models.scopes import ROLES
from ratchet.cli.connect import open_redis
from ratchet.config.settings import Settings, get_settings
from ratchet.kafka.audit_sink import kafka_sink
from ratchet.kafka.security import client_kwargs
from ratchet.platform.api_keys import create_key, list_keys, revoke_key, rotate_key
from ratchet.platform.credentials import (
    list_agents,
    rotate_agent_secret,
    rotate_api_key_of_project,
    set_project_tier,
)
from ratchet.platform.provisioning import (
    create_agent,
    create_project,
    list_projects,
    project_exists,
)
from ratchet.store.audit import AuditLog
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient
from ratchet.store.scripts import scripts_for
from streams.tuning import tune_gc

__all__ = ["main_gateway", "register"]

T = TypeVar("T")

#: The shipped tiers in words, for --help (RATCHET_RATE_LIMIT_TIERS may define others).
_TIERS_HELP = "shipped tiers: " + ", ".join(
    f"{t.name} ({t.ingest_per_min:,} events/min)"
    for t in parse_tiers(Settings().rate_limit_tiers).values()
) + "; agents streaming bulk traffic need high_volume"

_WARNING = (
    "WARNING: this {what} is shown once and cannot be recovered; store it in a secret manager now."
)


def main_gateway(settings: Settings, host: str | None = None, port: int | None = None) -> int:
    """Run the gateway until interrupted."""
    from gateway.access_log import ACCESS_LOGGER, AccessLogger
    from gateway.app import AUTO_DECOMPRESS, build_app

    app = build_app(settings)
    tune_gc(settings.gateway_gc_gen0)  # a bulk request allocates ≈ 15 objects per event
    web.run_app(
        app,
        loop=_event_loop(settings),
        host=host or settings.gateway_host,
        port=port or settings.gateway_port,
        access_log_class=AccessLogger,
        access_log=logging.getLogger(ACCESS_LOGGER),
        print=lambda msg: print(msg, file=sys.stderr),
        auto_decompress=AUTO_DECOMPRESS,
    )
    return 0


def _event_loop(settings: Settings) -> asyncio.AbstractEventLoop:
    """uvloop's loop when ``RATCHET_GATEWAY_UVLOOP`` (the default) and uvloop is installed."""
    if settings.gateway_uvloop:
        try:
            import uvloop
        except ImportError:  # a platform without uvloop (Windows): the standard loop
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _with_redis(
    settings: Settings, work: Callable[[RedisClient, Keys, AuditLog], Awaitable[T]]
) -> T:
    if not settings.redis_url:
        raise ConfigError("set RATCHET_REDIS_URL to the Redis that holds projects and agents")
    url = settings.redis_url

    async def run() -> T:
        redis = await open_redis(settings, url)
        keys = Keys(settings.key_prefix)
        try:
            security = client_kwargs(settings)
            async with kafka_sink(settings.kafka_bootstrap, security=security) as sink:
                return await work(redis, keys, AuditLog(redis, keys, settings, sink=sink))
        finally:
            await redis.aclose()

    return asyncio.run(run())


def _cmd_gateway(args: argparse.Namespace) -> int:
    return main_gateway(get_settings(), args.host, args.port)


def _tier(settings: Settings, tier: str | None) -> str | None:
    known = parse_tiers(settings.rate_limit_tiers)
    if tier is not None and tier not in known:
        raise ValidationError(f"unknown tier {tier!r}; configured: {', '.join(known)}", "tier")
    return tier


def _cmd_project_create(args: argparse.Namespace) -> int:
    name: str = args.name
    settings = get_settings()
    tier = _tier(settings, args.tier)
    project_id, api_key = _with_redis(
        settings, lambda r, k, a: create_project(r, k, name, tier, audit=a)
    )
    print(f"project_id: {project_id}")
    print(f"api_key:    {api_key}")
    print(_WARNING.format(what="API key"), file=sys.stderr)
    return 0


def _cmd_project_list(args: argparse.Namespace) -> int:
    settings = get_settings()
    found = _with_redis(settings, lambda r, k, a: list_projects(r, k))
    if args.json:
        print(orjson.dumps([dataclasses.asdict(p) for p in found]).decode())
        return 0
    if not found:
        print("no projects yet: create one with `ratchet projects create --name NAME`")
        return 0
    print(f"{'project':<22}  {'tier':<12}  {'agents':>6}  {'created (UTC)':<19}  name")
    for p in found:
        tier = p.tier or f"({settings.default_tier})"
        print(f"{p.project_id:<22}  {tier:<12}  {p.agents:>6}  {_utc(p.created_at):<19}  "
              f"{p.name}")
    return 0


def _cmd_agent_create(args: argparse.Namespace) -> int:
    project: str = args.project
    wanted: str | None = args.agent_id
    settings = get_settings()
    agent_id, secret = _with_redis(
        settings, lambda r, k, a: create_agent(r, k, project, wanted, audit=a,
                                               max_agents=settings.max_agents_per_project)
    )
    print(f"agent_id:     {agent_id}")
    print(f"agent_secret: {secret}")
    print(_WARNING.format(what="agent secret"), file=sys.stderr)
    return 0


def _cmd_agent_list(args: argparse.Namespace) -> int:
    project: str = args.project
    found = _with_redis(get_settings(), lambda r, k, a: _agents_of(r, k, project))
    if args.json:
        print(orjson.dumps(found).decode())
        return 0
    if not found:
        print(f"project {project}: no agents yet (ratchet agents create --project {project})")
        return 0
    print(f"{'agent':<40}  {'created (UTC)':<19}  secret rotated (UTC)")
    for agent in found:
        print(f"{agent['agent_id']:<40}  {_utc(agent.get('created_at')):<19}  "
              f"{_utc(agent.get('secret_rotated_at'))}")
    return 0


async def _agents_of(redis: RedisClient, keys: Keys, project: str) -> list[dict[str, str]]:
    if not await project_exists(redis, keys, project):
        raise NotFoundError(f"project {project} does not exist (ratchet projects list)")
    return await list_agents(redis, keys, project)


def _utc(at: str | float | None) -> str:
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(at)))


def _cmd_project_rotate(args: argparse.Namespace) -> int:
    project: str = args.project
    api_key = _with_redis(get_settings(), lambda r, k, a: rotate_api_key_of_project(
        r, k, scripts_for(r), project, audit=a))
    print(f"project_id: {project}")
    print(f"api_key:    {api_key}")
    print("the previous API key no longer works.", file=sys.stderr)
    print(_WARNING.format(what="API key"), file=sys.stderr)
    return 0


def _cmd_project_tier(args: argparse.Namespace) -> int:
    project: str = args.project
    settings = get_settings()
    known = frozenset(parse_tiers(settings.rate_limit_tiers))
    _with_redis(settings, lambda r, k, a: set_project_tier(r, k, project, args.tier, known))
    print(f"project {project}: tier {args.tier} (gateways apply it within "
          f"{settings.tier_cache_s:g} s)")
    return 0


def _cmd_agent_rotate(args: argparse.Namespace) -> int:
    project: str = args.project
    agent: str = args.agent_id
    secret = _with_redis(get_settings(), lambda r, k, a: rotate_agent_secret(
        r, k, scripts_for(r), project, agent, audit=a))
    print(f"agent_id:     {agent}")
    print(f"agent_secret: {secret}")
    print("the previous secret no longer verifies.", file=sys.stderr)
    print(_WARNING.format(what="agent secret"), file=sys.stderr)
    return 0


def _cmd_key_create(args: argparse.Namespace) -> int:
    project: str = args.project
    info, api_key = _with_redis(get_settings(), lambda r, k, a: create_key(
        r, k, project, args.role, args.agent_id, audit=a))
    print(f"key_id:   {info.key_id}")
    print(f"role:     {info.role}")
    print(f"agent_id: {info.agent_id or '(any agent of the project)'}")
    print(f"api_key:  {api_key}")
    print(_WARNING.format(what="API key"), file=sys.stderr)
    return 0


def _cmd_key_list(args: argparse.Namespace) -> int:
    project: str = args.project
    found = _with_redis(get_settings(), lambda r, k, a: list_keys(r, k, project))
    print(f"{'key_id':<12}  {'role':<6}  agent_id")
    for key in found:
        print(f"{key.key_id}  {key.role:<6}  {key.agent_id or '-'}"
              f"{'  (project key)' if key.primary else ''}")
    return 0


def _cmd_key_rotate(args: argparse.Namespace) -> int:
    project: str = args.project
    info, api_key = _with_redis(get_settings(), lambda r, k, a: rotate_key(
        r, k, scripts_for(r), project, args.key_id, audit=a))
    print(f"key_id:   {info.key_id}")
    print(f"role:     {info.role}")
    print(f"agent_id: {info.agent_id or '(any agent of the project)'}")
    print(f"api_key:  {api_key}")
    print(f"the previous key ({args.key_id}) no longer works.", file=sys.stderr)
    print(_WARNING.format(what="API key"), file=sys.stderr)
    return 0


def _cmd_key_revoke(args: argparse.Namespace) -> int:
    project: str = args.project
    _with_redis(get_settings(), lambda r, k, a: revoke_key(r, k, project, args.key_id, audit=a))
    print(f"key {args.key_id} revoked")
    return 0


def _register_keys(subparsers: Any) -> None:
    keys = subparsers.add_parser(
        "keys", help="role-scoped API keys: ingest keys for agents, admin keys for people")
    ksub = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    ksub.required = True
    kcreate = ksub.add_parser("create", help="make a key; prints it once")
    kcreate.add_argument("--project", required=True, help="project id (prj_...)")
    kcreate.add_argument("--role", required=True, choices=ROLES,
                         help="ingest: send events and read their verdicts; admin: everything")
    kcreate.add_argument("--agent-id", default=None,
                         help="bind an ingest key to this agent (default: any agent)")
    kcreate.set_defaults(func=_cmd_key_create)
    klist = ksub.add_parser("list", help="list the project's keys (ids and roles, never keys)")
    klist.add_argument("--project", required=True, help="project id (prj_...)")
    klist.set_defaults(func=_cmd_key_list)
    krotate = ksub.add_parser("rotate", help="replace a key (same role; the old one stops working)")
    krotate.add_argument("--project", required=True, help="project id (prj_...)")
    krotate.add_argument("--key-id", required=True, help="12 hex digits, from 'keys list'")
    krotate.set_defaults(func=_cmd_key_rotate)
    krevoke = ksub.add_parser("revoke", help="revoke a scoped key at once")
    krevoke.add_argument("--project", required=True, help="project id (prj_...)")
    krevoke.add_argument("--key-id", required=True, help="12 hex digits, from 'keys list'")
    krevoke.set_defaults(func=_cmd_key_revoke)


def register(subparsers: Any) -> None:
    """Add ``gateway``, ``projects``, ``agents`` and ``keys`` to the ``ratchet`` command."""
    gw = subparsers.add_parser(
        "gateway", help="run the HTTP gateway",
        description="Run the HTTP gateway until interrupted: it checks each event's API key "
                    "and its agent's signature, rate-limits, puts the event on the Kafka ingest "
                    "topic and serves verdicts (waiting for one with wait_ms), and serves each "
                    "project's API: agents, keys, policies, approvals, webhooks, audit. Settings "
                    "come from RATCHET_* variables (RATCHET_REDIS_URL, RATCHET_KAFKA_BOOTSTRAP, "
                    "RATCHET_GATEWAY_HOST/PORT; docs/configuration.md); the API is docs/api.md.")
    gw.add_argument("--host", default=None, help="bind address (default RATCHET_GATEWAY_HOST)")
    gw.add_argument("--port", type=int, default=None,
                    help="port (default RATCHET_GATEWAY_PORT)")
    gw.set_defaults(func=_cmd_gateway)

    projects = subparsers.add_parser("projects", help="manage projects and their API keys")
    psub = projects.add_subparsers(dest="projects_command", metavar="ACTION")
    psub.required = True
    pcreate = psub.add_parser("create", help="create a project; prints its API key once")
    pcreate.add_argument("--name", required=True, help="a name for people (not unique)")
    pcreate.add_argument("--tier", default=None,
                         help="rate-limit tier (default: RATCHET_DEFAULT_TIER, shipped "
                              f"{Settings().default_tier!r}); {_TIERS_HELP}")
    pcreate.set_defaults(func=_cmd_project_create)
    plist = psub.add_parser(
        "list", help="list the projects: id, tier, agents, created, name (never keys)",
        description="List every project, oldest first: its id, rate-limit tier (in "
                    "parentheses: none set, the gateways' default applies), number of "
                    "registered agents, creation time (UTC) and name. Keys and secrets are "
                    "never shown.")
    plist.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    plist.set_defaults(func=_cmd_project_list)
    protate = psub.add_parser("rotate-key",
                              help="replace the project's API key (the old one stops working)")
    protate.add_argument("--project", required=True, help="project id (prj_...)")
    protate.set_defaults(func=_cmd_project_rotate)
    ptier = psub.add_parser("set-tier", help="set the project's rate-limit tier")
    ptier.add_argument("--project", required=True, help="project id (prj_...)")
    ptier.add_argument("--tier", required=True,
                       help=f"a tier of RATCHET_RATE_LIMIT_TIERS; {_TIERS_HELP}")
    ptier.set_defaults(func=_cmd_project_tier)

    agents = subparsers.add_parser("agents", help="manage agent credentials")
    asub = agents.add_subparsers(dest="agents_command", metavar="ACTION")
    asub.required = True
    acreate = asub.add_parser("create", help="register an agent; prints its secret once")
    acreate.add_argument("--project", required=True, help="project id (prj_...)")
    acreate.add_argument("--agent-id", default=None, help="agent id (default: generated)")
    acreate.set_defaults(func=_cmd_agent_create)
    alist = asub.add_parser("list", help="list a project's agents (ids and times, never secrets)")
    alist.add_argument("--project", required=True, help="project id (prj_...)")
    alist.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    alist.set_defaults(func=_cmd_agent_list)
    arotate = asub.add_parser("rotate-secret",
                              help="replace an agent's secret (the old one stops verifying)")
    arotate.add_argument("--project", required=True, help="project id (prj_...)")
    arotate.add_argument("--agent-id", required=True, help="the agent whose secret to replace")
    arotate.set_defaults(func=_cmd_agent_rotate)
    _register_keys(subparsers)
