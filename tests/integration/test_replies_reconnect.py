"""The gateway's reply listener survives a Redis restart: it subscribes again by itself.

A redis-server of the test's own is killed (SIGKILL) and started again on the same port; the
listener (built as the gateway builds it, on :func:`ratchet.store.redis.connect`) must be back on
its channel within seconds, and a reply published then must wake its waiter.
"""

from __future__ import annotations

import asyncio
import time

from gateway.replies import ReplyListener
from gateway.waiters import Waiters
from models.verdict import Edge, Verdict
from models.verdict_wire import encode_compact
from ratchet.sandbox.servers import RedisServer, free_port
from ratchet.store.keys import Keys
from ratchet.store.redis import connect
from ratchet.store.replies import ReplyPublisher


def _reply(event_id: str) -> bytes:
    v = Verdict(event_id, "a", "r", "c", "shadow", False, 0.0, 0.0, Edge("^", "n", 0.0, 0.0, 0.0),
                "allow", (), time.time(), trace_id="t", project_id="p")
    return encode_compact("p", "a", "t", time.time(), [v])


async def test_the_listener_subscribes_again_after_redis_restarts(keys: Keys) -> None:
    server = RedisServer().start()
    client = connect(server.url, timeout_s=1.0)
    listener = ReplyListener(client, keys, Waiters())
    try:
        await listener.start()
        publisher = ReplyPublisher(client, keys)
        first = listener.waiters.add("p", "before")
        assert await publisher.publish([(listener.route, _reply("before"))]) == [1]
        assert (await asyncio.wait_for(first, 5))["event_id"] == "before"

        server.kill()
        server.stop()  # removes the dead server's directory
        await asyncio.sleep(1.5)  # the listener sees the connection fail meanwhile
        server = RedisServer(port=server.port).start()
        deadline = time.monotonic() + 15
        heard = [0]
        while time.monotonic() < deadline:
            try:
                heard = await publisher.publish([(listener.route, _reply("probe"))])
            except Exception:  # noqa: BLE001  (the pooled connection may fail once)
                heard = [0]
            if heard == [1]:
                break
            await asyncio.sleep(0.2)
        assert heard == [1], "the listener did not subscribe again within 15 s"
        after = listener.waiters.add("p", "after")
        assert await publisher.publish([(listener.route, _reply("after"))]) == [1]
        assert (await asyncio.wait_for(after, 5))["event_id"] == "after"
    finally:
        await listener.stop()
        await client.aclose()
        server.stop()


async def test_a_listener_started_without_redis_subscribes_once_redis_is_there(
    keys: Keys,
) -> None:
    port = free_port()
    client = connect(f"redis://127.0.0.1:{port}/0", timeout_s=0.5)
    listener = ReplyListener(client, keys, Waiters())
    server: RedisServer | None = None
    try:
        await listener.start()  # Redis is not there: the gateway still starts
        server = RedisServer(port=port).start()
        publisher = ReplyPublisher(client, keys)
        deadline = time.monotonic() + 15
        heard = [0]
        while heard != [1] and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            try:
                heard = await publisher.publish([(listener.route, _reply("probe"))])
            except Exception:  # noqa: BLE001  (the first connection attempt may fail)
                heard = [0]
        assert heard == [1], "the listener did not subscribe within 15 s of Redis starting"
        waiting = listener.waiters.add("p", "late")
        await publisher.publish([(listener.route, _reply("late"))])
        assert (await asyncio.wait_for(waiting, 5))["event_id"] == "late"
    finally:
        await listener.stop()
        await client.aclose()
        if server is not None:
            server.stop()
