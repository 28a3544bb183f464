"""Webhook deliveries to a real HTTP receiver on loopback: signatures, filtering, retries with
one delivery id, the circuit breaker, and SSRF refusals at connect time (DNS rebinding)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from models.envelope import VerdictEnvelope, agent_key, encode_verdicts
from models.verdict import Edge, Reason, Verdict
from models.webhook_signing import DELIVERY_HEADER, SIGNATURE_HEADER, verify_delivery
from models.webhooks import WebhookSpec
from ratchet.config.settings import Settings
from ratchet.kafka.topics import ensure_topics
from ratchet.sandbox.servers import free_port
from ratchet.store.keys import Keys
from ratchet.store.webhooks import Webhook, WebhookStore
from ratchet.webhooks.deliver import Deliverer
from ratchet.webhooks.dispatch import WebhookDispatcher
from ratchet.webhooks.net import BlockedAddressError, GuardedResolver, guarded_session
from tests.integration.webhook_helpers import Receiver, ScriptedResolver

PROJECT = "prj_hooks"


def verdict(action: str, event_id: str | None = None) -> Verdict:
    return Verdict(
        event_id=event_id or str(uuid.uuid4()), agent_id="bot", run_id="r1", chain="crm",
        mode="locked", anomalous=action != "allow", score=9.0, threshold=3.0,
        edge=Edge("START", "n1", 0.0, 0.0, 0.0), action=action,
        reasons=(Reason("markov", action, {}),), decided_at=time.time(), project_id=PROJECT,
    )


def settings(**over: Any) -> Settings:
    base: dict[str, Any] = {"webhooks_allow_loopback": True, "webhook_timeout_s": 2.0,
                                "webhook_max_attempts": 4, "webhook_backoff_base_s": 0.01,
                                "webhook_backoff_max_s": 0.05}
    base.update(over)
    return Settings(**base)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as r:
        yield r


async def make_hook(redis: Redis, keys: Keys, url: str,
                    actions: tuple[str, ...] = ("flag", "pause", "reject")) -> Webhook:
    store = WebhookStore(redis, keys)
    return await store.create(PROJECT, WebhookSpec(url, "", actions, ""), 10)


async def deliverer_for(s: Settings, resolver: Any = None) -> Deliverer:
    session = guarded_session(GuardedResolver(s.webhooks_allow_loopback, resolver),
                              s.webhook_timeout_s, 10)
    return Deliverer(s, session)


async def test_signed_delivery_with_ids_and_headers(
    receiver: Receiver, redis_client: Redis, keys: Keys
) -> None:
    hook = await make_hook(redis_client, keys, receiver.url)
    d = await deliverer_for(settings())
    try:
        v = verdict("pause")
        assert await d.deliver(hook, v.to_dict()) == "delivered"
    finally:
        await d.session.close()
    [req] = receiver.requests
    verify_delivery(hook.secret, req.body, req.headers[SIGNATURE_HEADER], now=time.time())
    with pytest.raises(Exception, match="does not match"):
        verify_delivery("whsec_wrong", req.body, req.headers[SIGNATURE_HEADER], now=time.time())
    body = orjson.loads(req.body)
    assert body["type"] == "verdict.pause" and body["verdict"]["event_id"] == v.event_id
    assert body["delivery_id"] == req.headers[DELIVERY_HEADER]
    assert req.headers["Ratchet-Event"] == "verdict.pause"


async def test_retries_after_500_keep_the_delivery_id(
    receiver: Receiver, redis_client: Redis, keys: Keys
) -> None:
    receiver.statuses = [500, 503, 200]
    hook = await make_hook(redis_client, keys, receiver.url)
    delays: list[float] = []

    async def no_sleep(s: float) -> None:
        delays.append(s)

    d = await deliverer_for(settings())
    d.sleep = no_sleep
    try:
        assert await d.deliver(hook, verdict("reject").to_dict()) == "delivered"
    finally:
        await d.session.close()
    assert len(receiver.requests) == 3
    assert len({r.headers[DELIVERY_HEADER] for r in receiver.requests}) == 1
    assert len(delays) == 2 and all(0 <= x <= 0.05 for x in delays)


async def test_gives_up_after_max_attempts(
    receiver: Receiver, redis_client: Redis, keys: Keys
) -> None:
    receiver.statuses = [500]
    hook = await make_hook(redis_client, keys, receiver.url)
    d = await deliverer_for(settings(webhook_max_attempts=3))
    try:
        assert await d.deliver(hook, verdict("flag").to_dict()) == "dropped"
    finally:
        await d.session.close()
    assert len(receiver.requests) == 3


async def test_breaker_opens_then_one_half_open_trial(
    receiver: Receiver, redis_client: Redis, keys: Keys
) -> None:
    receiver.statuses = [500]
    hook = await make_hook(redis_client, keys, receiver.url)
    now = [1000.0]
    s = settings(webhook_breaker_failures=3, webhook_breaker_window_s=60,
                 webhook_breaker_open_s=30, webhook_max_attempts=1)
    d = await deliverer_for(s)
    d.clock = lambda: now[0]
    try:
        for _ in range(3):
            assert await d.deliver(hook, verdict("flag").to_dict()) == "dropped"
        assert len(receiver.requests) == 3 and d.open_breakers() == 1
        # open: nothing reaches the destination
        for _ in range(5):
            assert await d.attempt(hook, "x", "verdict.flag", b"{}") == "breaker_open"
        assert len(receiver.requests) == 3
        now[0] += 30  # half-open: exactly one trial goes out; it succeeds and closes
        receiver.statuses = [200]
        receiver.requests.clear()
        results = await asyncio.gather(*(d.attempt(hook, "x", "verdict.flag", b"{}")
                                         for _ in range(4)))
        assert sorted(results) == ["breaker_open"] * 3 + ["delivered"]
        assert len(receiver.requests) == 1 and d.open_breakers() == 0
    finally:
        await d.session.close()


async def test_dns_rebinding_is_refused_at_connect_time(
    receiver: Receiver, redis_client: Redis, keys: Keys
) -> None:
    url = f"http://hooks.rebind.test:{receiver.port}/hook"
    hook = await make_hook(redis_client, keys, url)
    # control: without the guard, this resolver steers the client onto the loopback receiver
    unguarded = ScriptedResolver(["127.0.0.1"])
    plain = Deliverer(settings(), guarded_session(GuardedResolver(True, unguarded), 2.0, 10))
    try:
        assert await plain.deliver(hook, verdict("pause").to_dict()) == "delivered"
    finally:
        await plain.session.close()
    assert len(receiver.requests) == 1
    receiver.requests.clear()

    # public at registration time, loopback at connection time: refused, nothing sent
    rebinding = ScriptedResolver(["93.184.216.34", "127.0.0.1"])
    guard = GuardedResolver(False, rebinding)
    await guard.resolve("hooks.rebind.test", receiver.port)  # what registration saw: fine
    d = Deliverer(settings(webhooks_allow_loopback=False),
                  guarded_session(guard, 2.0, 10))
    try:
        assert await d.deliver(hook, verdict("pause").to_dict()) == "refused"
    finally:
        await d.session.close()
    assert receiver.requests == [] and rebinding.calls == 2


@pytest.mark.parametrize("answer,words", [("0.0.0.0", "resolves to an unspecified address"),
                                          ("10.0.0.7", "resolves to a private address")])
async def test_the_resolver_names_what_it_refused(answer: str, words: str) -> None:
    with pytest.raises(BlockedAddressError) as err:
        await GuardedResolver(False, ScriptedResolver([answer])).resolve("hooks.example.test", 443)
    assert f"webhook host hooks.example.test {words}; refused" == str(err.value)


@pytest.mark.parametrize("answer", ["64:ff9b::7f00:1", "64:ff9b:1::7f00:1", "::127.0.0.1",
                                    "::ffff:0:7f00:1", "2002:7f00:1::1"])
async def test_transition_forms_refused_at_connect_time(
    receiver: Receiver, redis_client: Redis, keys: Keys, answer: str
) -> None:
    """A name that resolves (at delivery) to an IPv6 form embedding 127.0.0.1 is refused at
    connect time by the same rule registration uses; nothing is sent."""
    hook = await make_hook(redis_client, keys, f"http://hooks.nat64.test:{receiver.port}/hook")
    resolver = ScriptedResolver([answer])
    d = await deliverer_for(settings(webhooks_allow_loopback=False), resolver)
    try:
        assert await d.attempt(hook, "d1", "verdict.pause", b"{}") == "refused"
    finally:
        await d.session.close()
    assert receiver.requests == [] and resolver.calls == 1


async def test_ip_literal_checked_again_at_delivery(
    receiver: Receiver, redis_client: Redis, keys: Keys
) -> None:
    hook = await make_hook(redis_client, keys, receiver.url)  # registered in development mode
    d = await deliverer_for(settings(webhooks_allow_loopback=False))
    try:
        assert await d.deliver(hook, verdict("pause").to_dict()) == "refused"
    finally:
        await d.session.close()
    assert receiver.requests == []


async def test_redirects_are_not_followed(redis_client: Redis, keys: Keys) -> None:
    from aiohttp import web

    hits: list[str] = []

    async def redirect(request: web.Request) -> web.Response:
        hits.append(request.path)
        if request.path == "/hook":
            raise web.HTTPFound("/elsewhere")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", redirect)
    app.router.add_post("/elsewhere", redirect)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    d = await deliverer_for(settings(webhook_max_attempts=1))
    try:
        hook = await make_hook(redis_client, keys, f"http://127.0.0.1:{port}/hook")
        assert await d.deliver(hook, verdict("pause").to_dict()) == "dropped"
    finally:
        await d.session.close()
        await runner.cleanup()
    assert hits == ["/hook"]


@pytest.mark.kafka
async def test_dispatcher_delivers_matching_actions_from_the_verdicts_topic(
    receiver: Receiver, redis_url: str, redis_client: Redis, kafka_bootstrap: str,
    key_prefix: str,
) -> None:
    s = settings(redis_url=redis_url, kafka_bootstrap=kafka_bootstrap, key_prefix=key_prefix,
                 topic_verdicts=f"{key_prefix}-verdicts", webhook_group=f"{key_prefix}-hooks",
                 broker_session_timeout_s=10.0, broker_heartbeat_interval_s=1.0)
    await ensure_topics(kafka_bootstrap, [s.topic_verdicts], 2)
    keys = Keys(key_prefix)
    pause_only = await make_hook(redis_client, keys, receiver.url, ("pause",))
    dispatcher = WebhookDispatcher(s, redis_client)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await dispatcher.start()
        verdicts = (verdict("allow"), verdict("flag"), verdict("pause"), verdict("reject"))
        env = VerdictEnvelope(PROJECT, "bot", "trace-1", verdicts)
        await producer.send_and_wait(s.topic_verdicts, encode_verdicts(env),
                                     key=agent_key(PROJECT, "bot"))
        other = VerdictEnvelope("prj_other", "bot", "t2", (verdict("pause"),))
        await producer.send_and_wait(s.topic_verdicts, encode_verdicts(other),
                                     key=agent_key("prj_other", "bot"))
        deadline = time.monotonic() + 20
        while not receiver.requests and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # and nothing else follows
    finally:
        await producer.stop()
        await dispatcher.stop()
    assert [orjson.loads(r.body)["verdict"]["event_id"] for r in receiver.requests] == [
        verdicts[2].event_id]
    assert orjson.loads(receiver.requests[0].body)["webhook_id"] == pause_only.id


@pytest.mark.kafka
async def test_dispatch_command_delivers_serves_metrics_and_stops_on_sigterm(
    receiver: Receiver, redis_url: str, redis_client: Redis, kafka_bootstrap: str,
    key_prefix: str,
) -> None:
    topic = f"{key_prefix}-verdicts"
    await ensure_topics(kafka_bootstrap, [topic], 2)
    await make_hook(redis_client, Keys(key_prefix), receiver.url, ("reject",))
    metrics_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    env.update({
        "RATCHET_REDIS_URL": redis_url, "RATCHET_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "RATCHET_KEY_PREFIX": key_prefix, "RATCHET_TOPIC_VERDICTS": topic,
        "RATCHET_WEBHOOK_GROUP": f"{key_prefix}-hooks", "RATCHET_WEBHOOKS_ALLOW_LOOPBACK": "1",
        "RATCHET_BROKER_SESSION_TIMEOUT_S": "10", "RATCHET_BROKER_HEARTBEAT_INTERVAL_S": "1",
    })
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ratchet", "webhooks", "dispatch", "--metrics-port",
        str(metrics_port), env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        text = ""
        deadline = time.monotonic() + 20
        while "ratchet_webhook_delivery_duration_seconds" not in text:
            assert time.monotonic() < deadline, "dispatcher metrics never answered"
            await asyncio.sleep(0.2)
            with contextlib.suppress(aiohttp.ClientError):
                async with aiohttp.ClientSession() as http, http.get(
                    f"http://127.0.0.1:{metrics_port}/metrics"
                ) as resp:
                    text = await resp.text()
        # the group join may still be running: keep sending until one delivery arrives
        sent: list[str] = []
        while not receiver.requests:
            assert time.monotonic() < deadline + 20, "no delivery from the dispatch command"
            v = verdict("reject")
            sent.append(v.event_id)
            env_bytes = encode_verdicts(VerdictEnvelope(PROJECT, "bot", "t", (v,)))
            await producer.send_and_wait(topic, env_bytes, key=agent_key(PROJECT, "bot"))
            await asyncio.sleep(1.0)
        assert orjson.loads(receiver.requests[0].body)["verdict"]["event_id"] in sent
    finally:
        await producer.stop()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(proc.wait(), 40)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
    assert code == 0


@pytest.mark.kafka
async def test_dispatch_command_stopped_while_joining_its_group_exits_promptly(
    redis_url: str, kafka_bootstrap: str, key_prefix: str,
) -> None:
    """A second dispatcher stopped during its group join (the broker holds the join until the
    group rebalanced, up to its rebalance timeout) used to wait for the join to finish — 25 s
    on Tansu, 100 s in a report — before it exited; now the stop ends the join and the
    consumer's stop is bounded (5 s)."""
    topic = f"{key_prefix}-verdicts"
    await ensure_topics(kafka_bootstrap, [topic], 4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    env.update({
        "RATCHET_REDIS_URL": redis_url, "RATCHET_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "RATCHET_KEY_PREFIX": key_prefix, "RATCHET_TOPIC_VERDICTS": topic,
        "RATCHET_WEBHOOK_GROUP": f"{key_prefix}-join",
    })
    argv = (sys.executable, "-m", "ratchet", "webhooks", "dispatch", "--metrics-port", "0")
    first = await asyncio.create_subprocess_exec(*argv, env=env, stderr=asyncio.subprocess.PIPE)
    second = None
    try:
        assert first.stderr is not None
        deadline = time.monotonic() + 60
        while b"Setting newly assigned partitions" not in await first.stderr.readline():
            assert time.monotonic() < deadline, "the first dispatcher never joined"
        second = await asyncio.create_subprocess_exec(*argv, env=env,
                                                      stderr=asyncio.subprocess.PIPE)
        assert second.stderr is not None
        while b"joining group" not in (await second.stderr.readline()).lower():
            assert time.monotonic() < deadline, "the second dispatcher never started its join"
        await asyncio.sleep(1.0)
        second.send_signal(signal.SIGINT)
        started = time.monotonic()
        code = await asyncio.wait_for(second.wait(), 60)
        took = time.monotonic() - started
        assert code == 0 and took < 15, (code, took)
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def test_one_projects_failures_never_open_anothers_breaker(
    receiver: Receiver, redis_client: Redis, keys: Keys
) -> None:
    """Round 11: the breaker was keyed by destination alone — a dozen failed deliveries of one
    tenant to a host opened it for every tenant, and another's deliveries there were dropped."""
    store = WebhookStore(redis_client, keys)
    mine = await store.create(PROJECT, WebhookSpec(receiver.url, "", ("flag",), ""), 10)
    theirs = await store.create("prj_other", WebhookSpec(receiver.url, "", ("flag",), ""), 10)
    s = settings(webhook_breaker_failures=3, webhook_max_attempts=1)
    d = await deliverer_for(s)
    try:
        receiver.statuses = [500, 500, 500, 200]
        for _ in range(3):
            assert await d.deliver(mine, verdict("flag").to_dict()) == "dropped"
        assert await d.attempt(mine, "x", "verdict.flag", b"{}") == "breaker_open"
        assert await d.deliver(theirs, verdict("flag").to_dict()) == "delivered"
    finally:
        await d.session.close()


@pytest.mark.parametrize("attackers", [1, 6], ids=["one-project", "six-projects"])
async def test_a_projects_slow_receiver_does_not_hold_back_anothers_deliveries(
    redis_url: str, redis_client: Redis, kafka_bootstrap: str, key_prefix: str, attackers: int,
) -> None:
    """Round 11: one pool of delivery slots for everyone, and each batch committed only once all
    of its deliveries finished — one tenant's receivers answering in 4.5 s delayed another's
    deliveries by a minute. Now each envelope is handled on its own, within its project's share
    of the slots: a verdict of B sent after 40 of A's (same partition) arrives at once. Round
    12: with six projects of A (2 slots each, 12 > the 4 there are), a freed slot goes to the
    project with the fewest in flight — B — not to A's queue."""
    s = settings(redis_url=redis_url, kafka_bootstrap=kafka_bootstrap, key_prefix=key_prefix,
                 topic_verdicts=f"{key_prefix}-verdicts", webhook_group=f"{key_prefix}-hooks",
                 broker_session_timeout_s=10.0, broker_heartbeat_interval_s=1.0,
                 webhook_timeout_s=10.0, webhook_concurrency=4,
                 webhook_concurrency_per_project=2)
    await ensure_topics(kafka_bootstrap, [s.topic_verdicts], 1)
    keys = Keys(key_prefix)
    store = WebhookStore(redis_client, keys)
    async with Receiver(delay_s=3.0) as slow, Receiver() as fast:
        senders = [PROJECT] + [f"{PROJECT}_{i}" for i in range(1, attackers)]
        for project in senders:
            await store.create(project, WebhookSpec(slow.url, "", ("pause",), ""), 10)
        await store.create("prj_b", WebhookSpec(fast.url, "", ("pause",), ""), 10)
        dispatcher = WebhookDispatcher(s, redis_client)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            await dispatcher.start()
            for i in range(40):
                env = VerdictEnvelope(senders[i % attackers], "bot", f"a{i}",
                                      (verdict("pause"),))
                await producer.send_and_wait(s.topic_verdicts, encode_verdicts(env), key=b"k")
            b = verdict("pause")
            env = VerdictEnvelope("prj_b", "bot", "b", (b,))
            sent = time.monotonic()
            await producer.send_and_wait(s.topic_verdicts, encode_verdicts(env), key=b"k")
            while not fast.requests and time.monotonic() - sent < 20:
                await asyncio.sleep(0.05)
            took = time.monotonic() - sent
        finally:
            await producer.stop()
            await dispatcher.stop()
    assert [orjson.loads(r.body)["verdict"]["event_id"] for r in fast.requests] == [b.event_id]
    # A's 40 deliveries take 30-60 s at 2-4 at a time: B's waited for them before; now B
    # waits at most for one of A's 3 s deliveries to end
    assert took < 5.0, took
    assert len(slow.requests) <= 4 * 2  # A never held more than the slots (two rounds at most)
