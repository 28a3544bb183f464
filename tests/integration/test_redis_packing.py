"""Commands are packed by hiredis (ratchet/store/redis.py): the same bytes as redis-py's own
packer, on a client that talks to a real Redis."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis._parsers.encoders import Encoder
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from ratchet.store.redis import _HiredisPack, connect

pytestmark = pytest.mark.asyncio

COMMANDS: list[tuple[Any, ...]] = [
    ("EVALSHA", "a" * 40, 2, "rt:{c:x}:meta", b"raw\x00bytes", 1_780_000_000_123, "0.0001",
     3.25, -7, "snow ☃ man", memoryview(b"view")),
    ("CONFIG GET", "maxmemory"),
    (b"HSET", "k", "f", "v" * 10_000),
    ("PUBLISH", "rt:{r:abc}:reply", bytes(range(256))),
]


async def test_the_packed_bytes_are_redis_pys_own(redis_url: str) -> None:
    client = connect(redis_url)
    fast = client.connection_pool.connection_class(**client.connection_pool.connection_kwargs)
    plain = Connection(**client.connection_pool.connection_kwargs)
    assert isinstance(fast, _HiredisPack)
    for args in COMMANDS:
        assert b"".join(fast.pack_command(*args)) == b"".join(plain.pack_command(*args)), args
    with pytest.raises(DataError):
        fast.pack_command("SET", "k", object())  # type: ignore[arg-type]
    await client.aclose()


async def test_a_hiredis_packing_client_round_trips(redis_url: str) -> None:
    client = connect(redis_url)
    try:
        await client.hset("pack:test", mapping={"☃": "v" * 10_000, "n": 3.25})
        async with client.pipeline(transaction=False) as pipe:
            pipe.hget("pack:test", "☃")
            pipe.hget("pack:test", "n")
            got = await pipe.execute()
        assert got == [b"v" * 10_000, b"3.25"]
    finally:
        await client.delete("pack:test")
        await client.aclose()


_ARG = st.one_of(
    st.text(max_size=20), st.binary(max_size=20), st.integers(), st.floats(allow_nan=False),
    st.binary(max_size=8).map(memoryview), st.binary(max_size=8).map(bytearray),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.sampled_from(["EVALSHA", "CONFIG GET", "HSET"]),
                 st.sampled_from([b"HSET", b"CLIENT LIST"])),
       st.lists(_ARG, max_size=8))
async def test_packed_bytes_equal_redis_pys_on_any_arguments(head: Any, rest: list[Any]) -> None:
    """The fast path (hiredis directly) packs what redis-py's serializer packs, for every
    argument type a command may carry (and falls back for the ones hiredis refuses)."""
    from redis.connection import PythonRespSerializer

    from ratchet.store.redis import _HiredisPack

    fast = _HiredisPack().pack_command(head, *rest)
    plain = PythonRespSerializer(6000, Encoder("utf-8", "strict", False).encode).pack(head, *rest)
    assert b"".join(fast) == b"".join(plain)


async def test_a_cluster_client_packs_in_c_on_every_node(redis_cluster: Any) -> None:
    """Nodes known at start and nodes discovered later build connections that pack with
    hiredis (redis-py hard-codes its pure-Python one for cluster clients); commands of every
    slot round-trip."""
    client = connect(redis_cluster.url, cluster=True)
    try:
        for i in range(30):  # keys on every master
            await client.set(f"pack:{{k{i}}}", f"v{i}")
        assert [await client.get(f"pack:{{k{i}}}") for i in range(30)] == [
            f"v{i}".encode() for i in range(30)]
        nodes = client.get_nodes()
        assert len(nodes) >= 3
        for node in nodes:
            assert issubclass(node.connection_class, _HiredisPack), node
            assert all(isinstance(c, _HiredisPack) for c in node._connections)
        assert sum(len(node._connections) for node in nodes) >= 3
        conn = nodes[0].connection_class(**nodes[0].connection_kwargs)
        for args in COMMANDS:
            plain = Connection(**nodes[0].connection_kwargs)
            assert b"".join(conn.pack_command(*args)) == b"".join(plain.pack_command(*args))
    finally:
        await client.aclose()
