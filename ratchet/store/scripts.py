"""Lua scripts: loaded once from package data, includes expanded, registered by SHA.

A line ``--- @include "name"`` in a script is replaced by ``lua/includes/name.lua`` (shared
helpers are included, never copied). Scripts are redis-py ``Script`` objects: EVALSHA with an
automatic reload after a ``SCRIPT FLUSH``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

__all__ = [
    "CONTROL_SCRIPT_NAMES",
    "SCRIPT_NAMES",
    "ControlScripts",
    "Scripts",
    "ratelimit_script",
    "run_many",
    "script_source",
]

SCRIPT_NAMES: tuple[str, ...] = ("observe", "feedback", "reset", "guardrails", "save_verdicts")
#: Scripts of the gateway's control plane (rate limits, signup, credential rotation).
CONTROL_SCRIPT_NAMES: tuple[str, ...] = (
    "ratelimit", "signup_issue", "signup_redeem", "rotate_key", "rotate_secret",
)

_INCLUDE = re.compile(r'^--- @include "([a-z_]+)"\s*$', re.MULTILINE)


@cache
def script_source(name: str) -> str:
    """The full text of ``lua/<name>.lua`` with its includes expanded."""
    text = resources.files("lua").joinpath(f"{name}.lua").read_text(encoding="utf-8")

    def expand(match: re.Match[str]) -> str:
        inc = resources.files("lua.includes").joinpath(f"{match.group(1)}.lua")
        return inc.read_text(encoding="utf-8")

    return _INCLUDE.sub(expand, text)


class Scripts:
    """The engine's scripts, registered once on a client (or cluster client)."""

    def __init__(self, client: Redis) -> None:
        self.observe: AsyncScript = client.register_script(script_source("observe"))
        self.feedback: AsyncScript = client.register_script(script_source("feedback"))
        self.reset: AsyncScript = client.register_script(script_source("reset"))
        self.guardrails: AsyncScript = client.register_script(script_source("guardrails"))


class ControlScripts:
    """The control plane's scripts, registered once on a client."""

    def __init__(self, client: Redis) -> None:
        self.signup_issue: AsyncScript = client.register_script(script_source("signup_issue"))
        self.signup_redeem: AsyncScript = client.register_script(script_source("signup_redeem"))
        self.rotate_key: AsyncScript = client.register_script(script_source("rotate_key"))
        self.rotate_secret: AsyncScript = client.register_script(script_source("rotate_secret"))


def ratelimit_script(client: Redis) -> AsyncScript:
    """``ratelimit.lua`` registered on ``client`` (the rate-limit Redis may be a separate one)."""
    return client.register_script(script_source("ratelimit"))


async def run_many(
    client: Redis | RedisCluster,
    script: AsyncScript,
    calls: Sequence[tuple[list[str], list[Any]]],
) -> list[Any]:
    """Run ``script`` once per ``(keys, args)``, answers in order: one pipeline round trip on a
    single Redis; concurrent calls on a cluster (each call's keys share one slot, calls don't)."""
    if isinstance(client, RedisCluster) or len(calls) == 1:
        return list(await asyncio.gather(*(script(keys=k, args=a) for k, a in calls)))
    pipe = client.pipeline(transaction=False)
    for k, a in calls:
        await script(keys=k, args=a, client=pipe)
    return list(await pipe.execute())
