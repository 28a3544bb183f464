"""Rate limits attacked through the real gateway, real Redis and Tansu (docs/design.md §5).

Each test drives the bucket past its limit over HTTP and checks what must be refused is refused,
whole (a batch is all or nothing), with ``Retry-After`` and ``X-RateLimit-*`` headers — and that
nothing refused reached Kafka.
"""

from __future__ import annotations

import asyncio
import re

import aiohttp
import orjson
import pytest
from redis.asyncio.cluster import RedisCluster

from models.envelope import decode_ingest
from models.ratelimit import (
    AGENT_ENVELOPE_TOKENS,
    SPREAD,
    Tier,
    envelope_tokens,
    event_tokens,
    parse_tiers,
)
from ratchet.config.settings import Settings
from ratchet.platform.provisioning import create_agent, create_project
from ratchet.sandbox.client import RatchetClient
from ratchet.sandbox.servers import RedisClusterServer, free_port
from ratchet.store.keys import Keys
from ratchet.store.ratelimit import RateLimiter
from ratchet.store.redis import RedisClient
from tests.integration.gateway_support import (
    Gateway,
    Tenant,
    event,
    head_without_body,
    make_tenant,
    own_gateway,
    read_topic,
)

pytestmark = pytest.mark.kafka

RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def _events(n: int, agent: str = "agent-1") -> list[dict[str, object]]:
    return [event(agent) for _ in range(n)]


async def _metric(url: str, name: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as resp:
        text = await resp.text()
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_bulk_events_take_one_token_each_all_or_nothing(
    gateway: Gateway, tenant: Tenant
) -> None:
    """Lowest tier: 120 events/min. 100 + 20 pass; 21 more are refused whole, then 1 too."""
    first = await tenant.client.send_batch(_events(100))
    assert first.status == 200 and first.body["accepted"] == 100
    assert first.headers["X-RateLimit-Limit"] == "120"
    assert first.headers["X-RateLimit-Remaining"] == "20"
    assert 0 < int(first.headers["X-RateLimit-Reset"]) <= 60

    refused = await tenant.client.send_batch(_events(21))
    assert refused.status == 429, refused.body
    assert refused.body["error"] == "rate_limited" and "'free'" in refused.body["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 2  # one token refills in 0.5 s
    assert all(h in refused.headers for h in RATE_HEADERS)

    fits = await tenant.client.send_batch(_events(20))
    assert fits.status == 200 and fits.body["accepted"] == 20  # the 21 took nothing
    single = await tenant.client.send(event())
    assert single.status == 429 and single.headers["X-RateLimit-Remaining"] == "0"

    published = await read_topic(gateway.settings.kafka_bootstrap or "",
                                 gateway.settings.topic_ingest, idle_s=1.0)
    assert sum(len(decode_ingest(r.value or b"").events) for r in published) == 120


async def test_retry_after_is_whole_seconds_rounded_up(gw_settings: Settings) -> None:
    """6/min refills one token per 10 s: the 7th request must wait 10 s (not 0, not 9.x)."""
    async with own_gateway(gw_settings.replace(rate_limit_tiers="free:6:1")) as gw:
        await _six_per_minute(gw)


async def _six_per_minute(gw: Gateway) -> None:
    t = await make_tenant(gw)
    try:
        # headers ride on every response of the route, errors included (a bad body costs too)
        async with aiohttp.ClientSession() as http, http.post(
            gw.url + "/v1/events", data=b"{not json",
            headers={"Authorization": f"Bearer {t.api_key}"},
        ) as resp:
            assert resp.status == 400 and resp.headers["X-RateLimit-Remaining"] == "5"
        for i in range(5):
            ok = await t.client.send(event())
            assert ok.status == 202 and ok.headers["X-RateLimit-Remaining"] == str(4 - i)
        refused = await t.client.send(event())
        assert refused.status == 429
        # the message says which tier, its rate, and how to get a higher one
        assert "6 events per minute" in refused.body["message"]
        assert "ratchet projects set-tier" in refused.body["message"]
        assert refused.headers["Retry-After"] == "10"
        assert refused.headers["X-RateLimit-Limit"] == "6"
        assert int(refused.headers["X-RateLimit-Reset"]) in (59, 60)
        # a batch larger than the whole bucket can never pass: say so
        big = await t.client.send_batch(_events(7))
        assert big.status == 429 and "split it" in big.body["message"]
        assert "ratchet projects set-tier" in big.body["message"]
        assert all(h in big.headers for h in RATE_HEADERS)
    finally:
        await t.client.close()


async def test_project_tier_decides_the_limit(gateway: Gateway) -> None:
    """A high_volume project takes a 1,000-event batch the lowest tier refuses."""
    project_id, api_key = await create_project(gateway.redis, gateway.keys, "big", "high_volume")
    _, secret = await create_agent(gateway.redis, gateway.keys, project_id, "agent-1")
    small = await make_tenant(gateway)
    async with RatchetClient(gateway.url, api_key, "agent-1", secret,
                             project_id=project_id) as big:
        answer = await big.send_batch(_events(1000))
        assert answer.status == 200 and answer.body["accepted"] == 1000
        assert answer.headers["X-RateLimit-Limit"] == "100000"
        # a body over 64 KB takes its size's tokens before it is read, the rest after: the
        # bucket refills in between (100,000/min: ≈ 1.7 a millisecond)
        assert 99000 <= int(answer.headers["X-RateLimit-Remaining"]) <= 99100, answer.headers
    try:
        refused = await small.client.send_batch(_events(1000))
        assert refused.status == 429 and refused.headers["X-RateLimit-Limit"] == "120"
    finally:
        await small.client.close()


async def test_concurrent_batches_cannot_overshoot(gateway: Gateway, tenant: Tenant) -> None:
    """12 concurrent batches of 20 against a bucket of 120: exactly 6 pass, 120 events published."""
    answers = await asyncio.gather(*[tenant.client.send_batch(_events(20)) for _ in range(12)])
    assert sorted(a.status for a in answers) == [200] * 6 + [429] * 6
    assert sum(a.body.get("accepted", 0) for a in answers) == 120


async def test_buckets_are_per_project(gateway: Gateway) -> None:
    a, b = await make_tenant(gateway), await make_tenant(gateway)
    try:
        assert (await a.client.send_batch(_events(120))).status == 200
        assert (await a.client.send(event())).status == 429
        assert (await b.client.send(event())).status == 202  # B's bucket is its own
    finally:
        await a.client.close()
        await b.client.close()


async def test_registration_limit(gw_settings: Settings) -> None:
    async with own_gateway(gw_settings.replace(rate_limit_tiers="free:120:3")) as gw:
        await _three_registrations_per_minute(gw)


async def _three_registrations_per_minute(gw: Gateway) -> None:
    t = await make_tenant(gw)
    try:
        async with aiohttp.ClientSession() as http:
            auth = {"Authorization": f"Bearer {t.api_key}"}
            statuses = []
            for i in range(4):
                async with http.post(gw.url + "/v1/agents", json={"agent_id": f"bot-{i}"},
                                     headers=auth) as resp:
                    statuses.append(resp.status)
                    assert resp.headers["X-RateLimit-Limit"] == "3"
                    last = resp
            assert statuses == [201, 201, 201, 429]
            assert int(last.headers["Retry-After"]) == 20  # 3/min: one token per 20 s
            assert not await gw.redis.exists(gw.keys.agent(t.project_id, "bot-3"))
    finally:
        await t.client.close()


async def test_ingest_fails_open_and_registration_fails_closed_without_limiter_redis(
    gw_settings: Settings,
) -> None:
    """Rate-limit Redis unreachable: events still flow (counted), credential writes do not."""
    settings = gw_settings.replace(ratelimit_redis_url=f"redis://127.0.0.1:{free_port()}/0",
                                   redis_timeout_s=0.5)
    async with own_gateway(settings) as gw:
        await _limiter_redis_down(gw)


async def _limiter_redis_down(gw: Gateway) -> None:
    t = await make_tenant(gw)
    try:
        before = await _metric(gw.url, "ratchet_ratelimit_fail_open_total")
        ok = await t.client.send(event())
        assert ok.status == 202, ok.body
        assert "X-RateLimit-Limit" not in ok.headers  # no decision was made
        batch = await t.client.send_batch(_events(130))  # over the free tier: not checked
        assert batch.status == 200 and batch.body["accepted"] == 130
        assert await _metric(gw.url, "ratchet_ratelimit_fail_open_total") == before + 2
        async with aiohttp.ClientSession() as http, http.post(
            gw.url + "/v1/agents", json={"agent_id": "x"},
            headers={"Authorization": f"Bearer {t.api_key}"},
        ) as resp:
            assert resp.status == 503 and "rate limiter" in (await resp.json())["message"]
    finally:
        await t.client.close()


@pytest.mark.cluster
async def test_bucket_is_one_key_on_redis_cluster(
    redis_cluster: RedisClusterServer, keys: Keys
) -> None:
    """The script runs on a 3-master cluster: its only key names one slot."""
    client = RedisCluster.from_url(redis_cluster.url)
    await client.initialize()
    try:
        limiter = RateLimiter(client, keys)  # type: ignore[arg-type]
        tier = parse_tiers("free:120:20")["free"]
        now = 1_700_000_000_000
        slots = {client.keyslot(keys.rate_bucket(f"prj_{i}", "ingest")) for i in range(20)}
        assert len(slots) > 1  # buckets spread over the cluster
        for i in range(20):
            got = await limiter.take(f"prj_{i}", tier, "ingest", 100, now)
            assert got.allowed and got.remaining == 20
            refused = await limiter.take(f"prj_{i}", tier, "ingest", 21, now)
            assert not refused.allowed and refused.remaining == 20
            assert refused.retry_after_s == 0.5
    finally:
        await client.aclose()


async def test_a_batch_takes_from_the_ingest_and_the_spread_bucket_or_from_neither(
    redis_client: RedisClient, keys: Keys
) -> None:
    """lua/ratelimit.lua with a second bucket (the spread bucket of models/ratelimit.py): one
    all-or-nothing step over both, the refusal naming the bucket that lacked tokens and its
    wait; refused by the spread bucket alone, the request's other tokens are taken (down to
    zero); a zero ingest cost passes a bucket in debt; on the single Redis and on the cluster
    (the buckets share the project's tag)."""
    limiter = RateLimiter(redis_client, keys, spread_burst_s=5)
    tier = Tier("t", 600, 10)  # ingest: 600, 0.01 a ms; spread: 50, 0.008 a ms
    assert limiter.spread_bucket(tier).capacity == 50
    now = 1_700_000_000_000
    first = await limiter.take("p", tier, "ingest", 100, now, spread=40)
    assert first.allowed and first.remaining == 500
    by_spread = await limiter.take("p", tier, "ingest", 100, now, spread=40)
    assert not by_spread.allowed and by_spread.refused_by == SPREAD
    assert by_spread.retry_after_s == 3.75  # (40 - 10) / 0.008
    assert by_spread.remaining == 440  # its other 60 tokens taken: it was read
    one_agent = await limiter.take("p", tier, "ingest", 100, now)
    assert one_agent.allowed and one_agent.remaining == 340
    by_ingest = await limiter.take("p", tier, "ingest", 450, now, spread=4)
    assert not by_ingest.allowed and by_ingest.refused_by == ""
    assert by_ingest.retry_after_s == 11.0 and by_ingest.remaining == 340  # (450 - 340) / 0.01
    rest = await limiter.take("p", tier, "ingest", 10, now, spread=10)  # spread held its 10
    assert rest.allowed and rest.remaining == 330
    assert not (await limiter.take("p", tier, "ingest", 1, now, spread=4)).allowed
    # a zero ingest cost (the body's size paid it before) is not refused by a bucket in debt
    assert (await limiter.take("p", tier, "ingest", 400, now, debt=True)).remaining == -70
    soon = now + 1_000  # spread: 8 tokens back
    zero = await limiter.take("p", tier, "ingest", 0, soon, spread=4)
    assert zero.allowed and zero.remaining == -60
    # more than the spread bucket holds: charged a full bucket, passes once it is full
    later = now + 8_000
    wide = await limiter.take("p", tier, "ingest", 5, later, spread=999)
    assert wide.allowed and wide.remaining == 5  # -60 + 70 refilled - 5
    both = await limiter.take("p", tier, "ingest", 100, later, spread=4)
    assert not both.allowed and both.refused_by == ""  # both short: the ingest bucket's wait
    assert both.retry_after_s == 9.5 and both.remaining == 5


async def test_events_take_tokens_by_the_values_they_carry(
    gateway: Gateway, tenant: Tenant
) -> None:
    """An event is one token plus one per 64 JSON values, one per 64 object keys and one per
    512 characters of strings and keys (models/ratelimit.py event_tokens): events of 5,000
    distinct keys (≈ 19.5 ms of worker CPU each, ≈ 150 ordinary events) at 11 tokens each put
    another tenant's verdicts 18.7 s behind, and 60 strings of 63,000 card-like characters
    (0.15–0.45 s each) took 2 tokens (Dec 4 attack runs). Lowest tier: 120 tokens/min, two
    more per second."""
    numbers = await tenant.client.send(event(payload={"a": list(range(1_500))}))  # 1 + 23
    assert numbers.status in (200, 202), numbers.body
    assert int(numbers.headers["X-RateLimit-Remaining"]) == 120 - 24
    wide = {f"k{i}": 0 for i in range(1_000)}  # 1,000 values and keys, 3,890 characters
    tokens = event_tokens(1_000, 1_000, 3_890)
    assert tokens == 1 + 15 + 15 + 7
    first = await tenant.client.send_batch([event(payload=wide) for _ in range(2)])
    assert first.status == 200 and first.body["accepted"] == 2
    assert 0 <= int(first.headers["X-RateLimit-Remaining"]) - (96 - 2 * tokens) <= 2  # refill
    refused = await tenant.client.send(event(payload=wide))  # ≈ 20 left
    assert refused.status == 429, refused.body
    assert "64 keys" in refused.body["message"] and "512 characters" in refused.body["message"]
    text = await tenant.client.send(event(payload={"doc": "x" * (512 * 10)}))  # 1 + 10
    assert text.status in (200, 202), text.body
    assert 0 <= int(text.headers["X-RateLimit-Remaining"]) - (96 - 2 * tokens - 11) <= 4
    await asyncio.sleep(1.0)  # two tokens back: an ordinary event still costs one
    small = await tenant.client.send(event())
    assert small.status in (200, 202), small.body


async def test_each_agent_of_a_batch_after_the_first_takes_envelope_tokens(
    gateway: Gateway, tenant: Tenant
) -> None:
    """Every agent of a batch request is an envelope of its own, whose worker cost is mostly
    fixed: a request spreading its events over many agents takes AGENT_ENVELOPE_TOKENS for each
    agent after the first (attack run 9: 1,488 events/s over 1,000 agents, inside the limit, put
    another tenant's verdicts 12–21 s late). Lowest tier: 120 tokens/min."""
    one = await tenant.client.send_batch(_events(10))  # one agent: 10
    assert one.status == 200 and one.body["accepted"] == 10
    assert int(one.headers["X-RateLimit-Remaining"]) == 110
    spread = await tenant.client.send_batch([event(f"agent-{i}") for i in range(1, 11)])
    assert spread.status == 200, spread.body  # agents 2..10 are unknown: refused, yet charged
    left = int(spread.headers["X-RateLimit-Remaining"])
    assert 0 <= left - (110 - 10 - envelope_tokens(10)) <= 2  # refill while it ran
    assert envelope_tokens(10) == 9 * AGENT_ENVELOPE_TOKENS
    single = await tenant.client.send(event())  # a single event: one envelope, one token
    assert single.status in (200, 202), single.body
    assert 0 <= int(single.headers["X-RateLimit-Remaining"]) - (left - 1) <= 2


async def test_envelope_tokens_come_from_a_smaller_spread_bucket_too(
    gateway: Gateway, tenant: Tenant
) -> None:
    """Round 15's open half of R1: a project could spend a whole minute's ingest bucket on
    one-event envelopes at once (10 s of another tenant's verdicts). The envelope tokens also
    come from a spread bucket of SPREAD_BURST_S seconds of the ingest rate (the lowest tier:
    10 tokens, 1.6 a second): a second spread batch is refused by it, with the ingest bucket
    still holding tokens — it pays its events' tokens all the same (it was read), the project
    is not marked empty (a one-agent batch over 8 KB is read and passes), and the refusal says
    what to do; on the one-round-trip admission and on the full path alike."""
    assert Tier("free", 120, 20).spread_bucket().capacity == 10
    clients = [tenant.client]
    for i in (2, 3):  # agents 2 and 3 of the project, each signing its own events
        _, secret = await create_agent(gateway.redis, gateway.keys, tenant.project_id,
                                       f"agent-{i}")
        clients.append(RatchetClient(gateway.url, tenant.api_key, f"agent-{i}", secret,
                                     project_id=tenant.project_id))

    def spread() -> list[dict[str, object]]:  # 3 agents: 8 envelope tokens, 3 event tokens
        return [c.signed(event(c.agent_id)) for c in clients]

    try:
        warm = await tenant.client.send_batch(_events(2))  # one agent: no envelope tokens
        assert warm.status == 200, warm.body
        first = await tenant.client.post_signed(spread())
        assert first.status == 200 and first.body["accepted"] == 3, first.body
        left = int(first.headers["X-RateLimit-Remaining"])
        before = await _metric(gateway.url, 'ratchet_ratelimit_rejected_total{limit="spread"}')
        for key in (None, "spread-1"):  # the admission's round trip; the full path
            again = await tenant.client.post_signed(spread(), idempotency_key=key)
            assert again.status == 429, again.body
            assert "agents" in again.body["message"] and "'free'" in again.body["message"]
            assert 1 <= int(again.headers["Retry-After"]) <= 4  # 6 tokens at 1.6 a second
            remaining = int(again.headers["X-RateLimit-Remaining"])
            assert 0 <= remaining - (left - 3) <= 2  # its 3 events' tokens taken, no more
            left = remaining
        after = await _metric(gateway.url, 'ratchet_ratelimit_rejected_total{limit="spread"}')
        assert after - before == 2
        # the ingest bucket was not marked empty: a one-agent batch over 8 KB is read, passes
        big = _events(12)
        for ev in big:
            ev["payload"] = {"note": "x" * 500}
        one_agent = await tenant.client.send_batch(big)
        assert one_agent.status == 200 and one_agent.body["accepted"] == 12, one_agent.body
        await asyncio.sleep(float(again.headers["Retry-After"]))
        later = await tenant.client.post_signed(spread())
        assert later.status == 200 and later.body["accepted"] == 3, later.body
    finally:
        for c in clients[1:]:
            await c.close()


async def test_one_event_wider_than_the_bucket_drains_it_instead_of_waiting_forever(
    gateway: Gateway, tenant: Tenant
) -> None:
    """An event of 5,000 keys and values needs 157 tokens; the lowest tier's bucket holds 120.
    Sent alone it is charged a full bucket (accepted, the bucket empty: the next is refused),
    not refused forever; in a batch with another it is refused, the message saying to split."""
    wide = {f"k{i}": "x" for i in range(5_000)}
    assert event_tokens(5_000, 5_000) > 120
    batch = await tenant.client.send_batch([event(payload=wide), event()])
    assert batch.status == 429, batch.body
    assert "split" in batch.body["message"]
    # the refused batch's body (over 64 KB) took its size's 4 tokens before it was read: the
    # bucket is full again two seconds later (2 a second)
    await asyncio.sleep(2.5)
    alone = await tenant.client.send(event(payload=wide))
    assert alone.status in (200, 202), alone.body
    assert int(alone.headers["X-RateLimit-Remaining"]) <= 2
    after = await tenant.client.send(event(payload=wide))
    assert after.status == 429, after.body


async def test_large_bodies_take_their_size_before_they_are_read(
    gateway: Gateway, tenant: Tenant
) -> None:
    """Round 9: 3.9 MB events refused with 429 only after being read and parsed put another
    tenant's p50 at 9.8 s. A body takes one token per 16 KB (models/ratelimit.py body_tokens),
    and one over 64 KB (or of unknown length) takes them before it is read: a request announcing
    4 MB is refused at once on the lowest tier (120 tokens), without a byte of its body sent."""
    head = await head_without_body(gateway.url, "POST", "/v1/events:batch", tenant.api_key,
                                   4_000_000)
    assert head.startswith(b"HTTP/1.1 429"), head
    assert b"X-RateLimit-Remaining: 120" in head, head  # a refused request takes nothing
    # a small batch padded to 200 KB takes its size (12 tokens), not its 3 events' 3
    padded = b'{"events": [' + b", ".join(
        orjson.dumps(tenant.client.signed(event(tenant.agent_id))) for _ in range(3)
    ) + b"]" + b" " * 200_000 + b"}"
    async with aiohttp.ClientSession() as http, http.post(
        gateway.url + "/v1/events:batch", data=padded,
        headers={"Authorization": f"Bearer {tenant.api_key}",
                 "Content-Type": "application/json"},
    ) as resp:
        body = await resp.json()
        assert resp.status == 200 and body["accepted"] == 3, body
        assert 0 <= int(resp.headers["X-RateLimit-Remaining"]) - (120 - 12) <= 2, resp.headers


async def test_a_project_seen_with_an_empty_bucket_is_refused_before_reading(
    gateway: Gateway, tenant: Tenant
) -> None:
    """Round 10: bodies just under 64 KB (read before they are charged) sent while the bucket
    is empty were each read and parsed to be refused. Once a refusal found the bucket empty, the
    gateway refuses the project's bodies over 8 KB unread until a token is back."""
    first = await tenant.client.send_batch(_events(120))  # the whole bucket
    assert first.status == 200 and first.body["accepted"] == 120, first.body
    refused = await tenant.client.send_batch(_events(1))  # seen empty
    assert refused.status == 429, refused.body
    head = await head_without_body(gateway.url, "POST", "/v1/events:batch", tenant.api_key,
                                   60_000)
    assert head.startswith(b"HTTP/1.1 429") and b"Retry-After: 1" in head, head
    await asyncio.sleep(1.2)  # a token is back: small events pass again
    again = await tenant.client.send_batch(_events(1))
    assert again.status == 200, again.body


async def test_a_batch_refused_for_costing_more_than_is_left_marks_the_project(
    gateway: Gateway, tenant: Tenant
) -> None:
    """Round 11: refused requests take no tokens, so a bucket never seen at zero never marked
    its project, and batches costing more than what was left were each parsed to be refused.
    Any refusal now marks the project until the refused cost could pass."""
    first = await tenant.client.send_batch(_events(60))  # half the bucket
    assert first.status == 200 and first.body["accepted"] == 60, first.body
    refused = await tenant.client.send_batch(_events(100))  # more than the 60 left
    assert refused.status == 429, refused.body
    head = await head_without_body(gateway.url, "POST", "/v1/events:batch", tenant.api_key,
                                   60_000)
    assert head.startswith(b"HTTP/1.1 429"), head
    # small requests are still read and judged by the bucket: 60 tokens are there
    small = await tenant.client.send_batch(_events(1))
    assert small.status == 200, small.body
