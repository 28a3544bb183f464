"""Whether an API key is live: its record AND its project's side agree (Redis Cluster-safe).

An API key's record (``keys.api_key(sha)`` → grant) is looked up by the key's hash alone, so it
cannot share a hash tag with its project; on a Redis Cluster it lives on another slot than the
project's pointer to it (the project's ``api_key_sha256`` for its own key, the entry of
``keys.project_keys`` for a scoped key). Every change of a key is therefore a sequence of
single-slot steps (docs/security.md, "Key changes on a Redis Cluster"), and a key counts as live
only when BOTH sides name it: the record holds a grant, and the project's side points at this
key's hash. The project's side is the switch; a record the project no longer points at is a
leftover of a rotation or revocation (or of one interrupted half-way) and is refused — and
deleted on sight, so leftovers do not accumulate.
"""

from __future__ import annotations

import orjson

from models.scopes import Grant, parse_grant
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient, reply_text

__all__ = ["confirm_grant", "key_side", "live_grant", "names_key"]


def key_side(keys: Keys, sha: str, grant: Grant) -> tuple[str, str]:
    """(hash, field) holding the project's side of key ``sha``: the project's own key pointer,
    or the key's entry in the project's index of scoped keys."""
    if grant.primary:
        return keys.project(grant.project_id), "api_key_sha256"
    return keys.project_keys(grant.project_id), sha[:12]


def names_key(raw: object, sha: str, grant: Grant) -> bool:
    """Whether ``raw`` (the value at :func:`key_side`) points at key ``sha``."""
    if raw is None:
        return False
    if grant.primary:
        return reply_text(raw) == sha
    return bool(orjson.loads(reply_text(raw)).get("sha256") == sha)


async def confirm_grant(redis: RedisClient, keys: Keys, sha: str, grant: Grant) -> bool:
    """True if the project of ``grant`` points at key ``sha``; else the stale record is
    deleted and False (a leftover of a key change: never a key anyone may still use)."""
    live = names_key(await redis.hget(*key_side(keys, sha, grant)), sha, grant)
    if not live:
        await redis.delete(keys.api_key(sha))
    return live


async def live_grant(redis: RedisClient, keys: Keys, sha: str) -> Grant | None:
    """The grant of the key whose SHA-256 is ``sha`` if it is live, else ``None``."""
    raw = await redis.get(keys.api_key(sha))
    if raw is None:
        return None
    grant = parse_grant(reply_text(raw))
    return grant if await confirm_grant(redis, keys, sha, grant) else None
