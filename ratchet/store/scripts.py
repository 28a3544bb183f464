"""Lua scripts: loaded once from package data, includes expanded, registered by SHA.

A line ``--- @include "name"`` in a script is replaced by ``lua/includes/name.lua`` (shared
helpers are included, never copied). Scripts are redis-py ``Script`` objects: EVALSHA with an
automatic reload after a ``SCRIPT FLUSH``.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from ratchet.store.round import Round, ScriptCall

__all__ = [
    "SCRIPTS",
    "ScriptRegistry",
    "run_many",
    "script_source",
    "scripts_for",
]

#: Every script in ``lua/`` (a test checks this list against the package data). The one place
#: that knows script names; callers ask :func:`scripts_for` for them by name.
SCRIPTS: tuple[str, ...] = (
    "approval_resolve", "audit_append", "chains_admit", "event_ids_claim", "event_ids_release", "feedback",
    "guard_feedback", "guardrails", "idempotency_begin", "idempotency_end", "label_nodes", "observe", "ratelimit",
    "reset", "rotate_key", "rotate_scoped_key", "rotate_secret", "save_verdicts",
    "signup_issue", "verdict_get", "webhook_add",
)

_INCLUDE = re.compile(r'^--- @include "([a-z_]+)"\s*$', re.MULTILINE)


@cache
def script_source(name: str) -> str:
    """The full text of ``lua/<name>.lua`` with its includes expanded."""
    if name not in SCRIPTS:
        raise KeyError(f"no Lua script named {name!r}; known: {', '.join(SCRIPTS)}")
    text = resources.files("lua").joinpath(f"{name}.lua").read_text(encoding="utf-8")

    def expand(match: re.Match[str]) -> str:
        inc = resources.files("lua.includes").joinpath(f"{match.group(1)}.lua")
        return inc.read_text(encoding="utf-8")

    return _INCLUDE.sub(expand, text)


class ScriptRegistry:
    """The scripts of one client, each registered at most once (on first use), called by SHA."""

    def __init__(self, client: Redis | RedisCluster) -> None:
        self._client = client
        self._scripts: dict[str, AsyncScript] = {}

    def __getitem__(self, name: str) -> AsyncScript:
        script = self._scripts.get(name)
        if script is None:
            script = self._client.register_script(script_source(name))
            self._scripts[name] = script
        return script


_registries: weakref.WeakKeyDictionary[Any, ScriptRegistry] = weakref.WeakKeyDictionary()


def scripts_for(client: Redis | RedisCluster) -> ScriptRegistry:
    """The one registry of ``client``: every store on the same client shares it."""
    registry = _registries.get(client)
    if registry is None:
        registry = ScriptRegistry(client)
        _registries[client] = registry
    return registry


async def run_many(
    client: Redis | RedisCluster,
    script: AsyncScript,
    calls: Sequence[tuple[list[str], list[Any]]],
    also: Sequence[tuple[AsyncScript, list[str], list[Any]]] = (),
) -> list[Any]:
    """Run ``script`` once per ``(keys, args)``, answers in order: one pipeline round trip on a
    single Redis; concurrent calls on a cluster (each call's keys share one slot, calls don't).
    ``also``: further ``(script, keys, args)`` calls sent along in the same round trip (best
    effort writes such as node labels); their answers are dropped. Scripts go as ``EVALSHA``
    in the pipeline (:class:`ratchet.store.round.Round`), never behind a ``SCRIPT EXISTS``."""
    if len(calls) == 1 and not also:
        return [await script(keys=calls[0][0], args=calls[0][1])]
    rnd = Round(client)
    for k, a in calls:
        rnd.add(ScriptCall(script, k, a))
    for extra, k, a in also:
        rnd.add(ScriptCall(extra, k, a))
    return (await rnd.run())[: len(calls)]
