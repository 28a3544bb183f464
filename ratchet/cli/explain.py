"""``ratchet explain EVENT_ID --project P``: one stored verdict explained in words.

Reads the verdict (and its approval), the chain's node labels and the from-node's known
successors from Redis (``ratchet.store.explain``); prints the explanation (``--json``: the same
facts as one JSON object). The engine settings (``--config`` / ``RATCHET_ENGINE_CONFIG``) name
the floor, fallback and window the threshold is compared with. Exit 2 when the event has no
stored verdict (unknown, undecided or expired after ``RATCHET_VERDICT_TTL_S``).
"""

from __future__ import annotations

import argparse
import asyncio
import json

from models.errors import ConfigError, NotFoundError
from models.explain import Explanation, render_text
from ratchet.cli.connect import open_redis
from ratchet.config.engine import engine_params
from ratchet.config.settings import get_settings
from ratchet.store.explain import Explainer
from ratchet.store.keys import Keys

__all__ = ["register"]


def _explain(args: argparse.Namespace) -> Explanation:
    settings = get_settings()
    if not settings.redis_url:
        raise ConfigError("set RATCHET_REDIS_URL to the Redis that holds the verdicts")
    params = engine_params(args.config, settings)
    url = settings.redis_url

    async def run() -> Explanation | None:
        redis = await open_redis(settings, url)
        try:
            return await Explainer(redis, Keys(settings.key_prefix), params).explain_event(
                args.project, args.event_id
            )
        finally:
            await redis.aclose()

    found = asyncio.run(run())
    if found is None:
        raise NotFoundError(f"project {args.project} has no stored verdict for event "
                            f"{args.event_id} (unknown, not decided yet, or expired)")
    return found


def _cmd_explain(args: argparse.Namespace) -> int:
    e = _explain(args)
    if args.json:
        print(json.dumps(e.to_dict(), indent=2, default=str))
    else:
        print(render_text(e))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "explain", help="a verdict in words: the calls, the new key paths, p, bits, threshold, "
                        "mode and guardrail rules",
        description="Explain the stored verdict of one event in words: the previous and the "
                    "current call, the key paths new to the chain, the transition's probability "
                    "and bits against the threshold, the chain's mode and the guardrail rules "
                    "that fired (docs/explain.md). Reads RATCHET_REDIS_URL under "
                    "RATCHET_KEY_PREFIX; a verdict is kept as long as RATCHET_VERDICT_TTL_S "
                    "(allow: RATCHET_VERDICT_ALLOW_TTL_S).",
    )
    p.add_argument("event_id", metavar="EVENT_ID", help="the event whose verdict to explain")
    p.add_argument("--project", required=True, help="project id (prj_...)")
    p.add_argument("--config", default=None,
                   help="engine TOML the workers run with (default RATCHET_ENGINE_CONFIG)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.set_defaults(func=_cmd_explain, project_must_exist=False)
