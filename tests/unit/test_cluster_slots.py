"""A script's slot on a Redis Cluster (ratchet/store/redis.py ``_Cluster._determine_slot``):
hashing each distinct hash tag once gives redis-py's own answer — the same slot, or its error
when the keys fall in different slots — for any keys, braces anywhere, ``str`` or ``bytes``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

from ratchet.store.redis import _Cluster, _hashed_part

_TEXT = st.text(alphabet="ab{}☃x", max_size=8)
_KEY = st.one_of(_TEXT, _TEXT.map(lambda t: t.encode()))


def _expected(keys: list[Any]) -> int | None:
    slots = {key_slot(k.encode() if isinstance(k, str) else k) for k in keys}
    return slots.pop() if len(slots) == 1 else None


def _ours(keys: list[Any]) -> int | None:
    client = _Cluster(host="127.0.0.1", port=1)  # never connected: the slot is computed locally
    try:
        return asyncio.run(client._determine_slot("EVALSHA", "0" * 40, len(keys), *keys, "arg"))
    except RedisClusterException:
        return None


@settings(max_examples=400, deadline=None)
@given(st.lists(_KEY, min_size=2, max_size=6))
def test_the_slot_of_any_keys_is_redis_pys(keys: list[Any]) -> None:
    assert _ours(keys) == _expected(keys)


@settings(max_examples=200, deadline=None)
@given(_TEXT, st.lists(_TEXT, min_size=1, max_size=5))
def test_keys_sharing_a_tag_share_its_slot(tag: str, rests: list[str]) -> None:
    keys = [f"p:{{{tag}}}:{rest}" for rest in rests] + [f"q{{{tag}}}".encode()]
    assert _ours(keys) == _expected(keys)


@pytest.mark.parametrize("key, part", [
    ("rt:{c:x}:meta", "c:x"), ("{}abc{x}", "{}abc{x}"), ("a{b{c}d", "b{c"), ("plain", "plain"),
    (b"rt:{e:p}:ids", b"e:p"), ("{", "{"), ("}{", "}{"), (7, 7),
])
def test_the_hashed_part(key: Any, part: Any) -> None:
    assert _hashed_part(key) == part


def test_other_commands_keep_redis_pys_path() -> None:
    client = _Cluster(host="127.0.0.1", port=1)
    got = asyncio.run(client._determine_slot("EVALSHA", "0" * 40, 1, "rt:{c:x}:meta"))
    assert got == RedisCluster.keyslot(client, "rt:{c:x}:meta")
