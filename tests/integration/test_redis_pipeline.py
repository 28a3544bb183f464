"""Plain pipelines of the single-server client (ratchet/store/pipeline.py) against a real
redis-server: the same answers as redis-py's own pipeline for every kind of reply (response
callbacks with their options, script replies, error replies in the middle), the first error
raised with redis-py's message, connection errors retried once as redis-py retries them, a
cancelled pipeline leaving no reply behind, and transactions still redis-py's."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from models.errors import UnavailableError
from ratchet.sandbox.servers import free_port
from ratchet.store.pipeline import LeanPipeline
from ratchet.store.redis import connect, translate

SCRIPT = """
if ARGV[1] == 'err' then return redis.error_reply('ERR told to fail') end
return {1, 'two', {3, 'four'}, redis.call('HGET', KEYS[1], 'a')}
"""


def _queue(pipe: Any, sha: str) -> None:
    pipe.set("lp:s", "v")
    pipe.get("lp:s")
    pipe.get("lp:missing")
    pipe.hset("lp:h", mapping={"a": "1", "b": "2"})
    pipe.hgetall("lp:h")
    pipe.expire("lp:h", 100)
    pipe.ttl("lp:h")
    pipe.zadd("lp:z", {"m1": 1.5, "m2": 2.5})
    pipe.zrange("lp:z", 0, -1, withscores=True)  # a callback with options
    pipe.lpush("lp:s", "x")  # wrong type: an error reply in the middle
    pipe.evalsha(sha, 1, "lp:h", "ok")
    pipe.evalsha(sha, 1, "lp:h", "err")
    pipe.execute_command("PUBLISH", "lp:ch", b"\x00bytes")
    pipe.exists("lp:s", "lp:h", "lp:none")
    pipe.hget("lp:h", "b")


def _comparable(answers: list[Any]) -> list[Any]:
    return [(type(a).__name__, str(a)) if isinstance(a, Exception) else a for a in answers]


async def _run(pipe: Any, sha: str, *, raise_on_error: bool = False) -> list[Any]:
    _queue(pipe, sha)
    return list(await pipe.execute(raise_on_error=raise_on_error))


async def test_the_same_answers_as_redis_pys_pipeline(redis_url: str) -> None:
    client = connect(redis_url)
    plain = Redis.from_url(redis_url)
    try:
        sha = await client.script_load(SCRIPT)
        for _ in range(2):  # the second time over keys the first wrote
            await client.delete("lp:s", "lp:h", "lp:z")
            ours = await _run(client.pipeline(transaction=False), sha)
            await client.delete("lp:s", "lp:h", "lp:z")
            theirs = await _run(plain.pipeline(transaction=False), sha)
            assert _comparable(ours) == _comparable(theirs)
        assert ours[4] == {b"a": b"1", b"b": b"2"} and ours[8] == [(b"m1", 1.5), (b"m2", 2.5)]
        assert isinstance(ours[9], ResponseError) and "WRONGTYPE" in str(ours[9])
        assert ours[10] == [1, b"two", [3, b"four"], b"1"]
        assert isinstance(ours[11], ResponseError) and "told to fail" in str(ours[11])
    finally:
        await client.aclose()
        await plain.aclose()


async def test_the_lean_path_is_taken(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """redis-py's pipeline step is never reached by a plain pipeline of the client."""

    async def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("redis-py's _execute_pipeline ran")

    monkeypatch.setattr(Pipeline, "_execute_pipeline", refuse)
    client = connect(redis_url)
    try:
        pipe = client.pipeline(transaction=False)
        assert isinstance(pipe, LeanPipeline)
        pipe.set("lp:taken", 1)
        pipe.get("lp:taken")
        assert await pipe.execute() == [True, b"1"]
    finally:
        await client.aclose()


async def test_the_first_error_is_raised_after_every_reply_was_read(redis_url: str) -> None:
    client = connect(redis_url)
    plain = Redis.from_url(redis_url)
    try:
        sha = await client.script_load(SCRIPT)
        await client.delete("lp:s", "lp:h", "lp:z")
        with pytest.raises(ResponseError) as ours:
            await _run(client.pipeline(transaction=False), sha, raise_on_error=True)
        await client.delete("lp:s", "lp:h", "lp:z")
        with pytest.raises(ResponseError) as theirs:
            await _run(plain.pipeline(transaction=False), sha, raise_on_error=True)
        assert str(ours.value) == str(theirs.value)
        assert "Command # 10" in str(ours.value) and "WRONGTYPE" in str(ours.value)
        # every reply was read: the connection answers the next command with its own reply
        for i in range(20):
            assert await client.echo(f"after{i}") == f"after{i}".encode()
    finally:
        await client.aclose()
        await plain.aclose()


async def test_a_connection_lost_mid_pipeline_is_sent_again_once(redis_url: str) -> None:
    """The pipeline kills its own connection after its first command: redis-py's rule (the
    connection's Retry, once) closes it and sends the whole pipeline again on a new one — so
    the first command ran twice, and the kill, sent again, kills nobody."""
    client = connect(redis_url)
    try:
        first = await client.client_id()
        pipe = client.pipeline(transaction=False)
        pipe.incr("lp:counter")
        pipe.execute_command("CLIENT", "KILL", "ID", first, "SKIPME", "no")
        pipe.client_id()
        count, killed, second = await pipe.execute(raise_on_error=False)
        assert count == 2 and int(await client.get("lp:counter") or 0) == 2
        assert killed == 0  # the new-style CLIENT KILL answers how many it killed
        assert second != first
    finally:
        await client.aclose()


async def test_an_unreachable_server_fails_as_unavailable() -> None:
    client = connect(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.get("lp:k")
        with pytest.raises(RedisConnectionError) as err:
            await pipe.execute()
        assert isinstance(translate(err.value), UnavailableError)
    finally:
        await client.aclose()


async def test_a_cancelled_pipeline_leaves_no_reply_behind(redis_url: str) -> None:
    client = connect(redis_url, max_connections=1)
    try:
        slow = client.pipeline(transaction=False)
        slow.execute_command("EVAL", "local t = redis.call('TIME') local s = t[1] * 1e6 + t[2] "
                             "repeat local n = redis.call('TIME') "
                             "until n[1] * 1e6 + n[2] - s > 300000 return 'late'", 0)
        slow.set("lp:cancelled", "x")
        task = asyncio.create_task(slow.execute())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the one connection is usable again and answers its own commands, not 'late'
        for i in range(5):
            pipe = client.pipeline(transaction=False)
            pipe.echo(f"mine{i}")
            assert await pipe.execute() == [f"mine{i}".encode()]
    finally:
        await client.aclose()


async def test_transactions_stay_redis_pys(redis_url: str) -> None:
    client = connect(redis_url)
    try:
        pipe = client.pipeline()  # MULTI/EXEC
        pipe.set("lp:t", "1")
        pipe.incr("lp:t")
        assert await pipe.execute() == [True, 2]
        async with client.pipeline(transaction=True) as watched:
            await watched.watch("lp:t")
            value = int(await watched.get("lp:t"))
            watched.multi()
            watched.set("lp:t", value + 1)
            assert await watched.execute() == [True]
        assert await client.get("lp:t") == b"3"
    finally:
        await client.aclose()
