"""``ratchet baselines reset``: an operator's explicit, audited reset of one chain's baseline."""

from __future__ import annotations

import argparse
import asyncio

from models.errors import ConfigError
from models.nodes import ChainId
from ratchet.config.settings import Settings, get_settings
from ratchet.engine.engine import Engine
from ratchet.kafka.audit_sink import kafka_sink
from ratchet.store.audit import AuditLog
from ratchet.store.keys import Keys
from ratchet.store.redis import connect

__all__ = ["register", "reset_baseline"]


async def reset_baseline(settings: Settings, chain: ChainId, actor: str) -> int:
    if not settings.redis_url:
        raise ConfigError("set RATCHET_REDIS_URL to the Redis that holds the baselines")
    redis = connect(settings.redis_url, timeout_s=settings.redis_timeout_s)
    keys = Keys(settings.key_prefix)
    try:
        async with kafka_sink(settings.kafka_bootstrap) as sink:
            audit = AuditLog(redis, keys, settings, sink=sink)
            engine = Engine.create(redis, keys=keys)
            return await engine.reset(chain, audit=audit, actor=actor)
    finally:
        await redis.aclose()


def _cmd_reset(args: argparse.Namespace) -> int:
    chain = ChainId(args.project, args.agent, args.service, critical=args.critical)
    actor = f"operator:{args.operator}" if args.operator else "cli"
    deleted = asyncio.run(reset_baseline(get_settings(), chain, actor))
    state = "reset" if deleted else "had no learned state (nothing to reset)"
    print(f"chain {chain.label}: {state}; it starts again in shadow mode (audited)")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    baselines = subparsers.add_parser("baselines", help="manage learned baselines (chains)")
    sub = baselines.add_subparsers(dest="baselines_command", metavar="ACTION")
    sub.required = True
    reset = sub.add_parser(
        "reset", help="forget one chain's learned behaviour; it restarts in shadow (audited)",
    )
    reset.add_argument("--project", required=True, help="project id (prj_...)")
    reset.add_argument("--agent", required=True, help="agent id")
    reset.add_argument("--service", required=True, help="service of the chain")
    reset.add_argument("--critical", action="store_true",
                       help="the agent's critical-priority chain of that service")
    reset.add_argument("--operator", default=None,
                       help="who asks (recorded as operator:<name>; default 'cli')")
    reset.set_defaults(func=_cmd_reset)
