"""Per-tenant caps on what stays in Redis (benchmarks/attack.py, "key-space growth").

A tenant chooses its agents' service names, and every new (agent, service) pair starts a chain
of about a dozen keys kept for 30 days; agents are kept until deleted. Before these caps one
tenant could grow Redis by its whole ingest (or registration) rate for as long as it liked.
Real gateway, Redis and Tansu; each test fails without its cap (no 422 / 409).
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from ratchet.config.settings import Settings
from tests.integration.gateway_support import event, make_tenant, own_gateway, read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


async def test_chains_are_capped_per_project(gw_settings: Settings) -> None:
    settings = gw_settings.replace(max_chains_per_project=3, chain_ttl_s=3)
    async with own_gateway(settings) as gw:
        a = await make_tenant(gw)
        b = await make_tenant(gw)
        try:
            for svc in ("s1", "s2", "s3", "s1"):  # the 2nd s1 goes the fast (cached) path
                assert (await a.client.send(event(a.agent_id, service=svc))).status == 202
            over = event(a.agent_id, service="s4")
            refused = await a.client.send(over)
            assert refused.status == 422, refused.body
            assert refused.body["field"] == "service"
            assert "already keeps 3 chains" in refused.body["message"]
            # a critical-priority event has a chain of its own: also over the cap
            assert (await a.client.send(event(a.agent_id, service="s1",
                                              priority="critical"))).status == 422
            # in a batch only the new chain's item is refused
            batch = await a.client.send_batch([event(a.agent_id, service="s2"),
                                               event(a.agent_id, service="s5")])
            assert batch.status == 200 and batch.body["accepted"] == 1
            item = batch.body["results"][1]
            assert item["status"] == "rejected" and item["error"]["error"] == "unprocessable", item
            # another project has its own cap
            assert (await b.client.send(event(b.agent_id, service="s4"))).status == 202
            # nothing of a refused event was published
            records = await read_topic(settings.kafka_bootstrap or "", settings.topic_ingest,
                                       expect=6)
            published = b"".join(r.value for r in records)
            assert over["event_id"].encode() not in published
            # idle chains expire and free their places: the same event is accepted now
            await asyncio.sleep(3.5)
            assert (await a.client.send(over)).status == 202
        finally:
            await a.client.close()
            await b.client.close()


async def test_agents_are_capped_per_project(gw_settings: Settings) -> None:
    async with own_gateway(gw_settings.replace(max_agents_per_project=2)) as gw:
        t = await make_tenant(gw)  # one agent already
        try:
            headers = {"Authorization": f"Bearer {t.api_key}"}
            async with aiohttp.ClientSession(headers=headers) as http:
                async with http.post(gw.url + "/v1/agents", json={"agent_id": "a2"}) as r:
                    assert r.status == 201
                async with http.post(gw.url + "/v1/agents", json={"agent_id": "a3"}) as r:
                    body = await r.json()
                    assert r.status == 409 and body["field"] == "agent_id"
                    assert "already has 2 agents" in body["message"]
            assert await gw.redis.scard(gw.keys.agents(t.project_id)) == 2
            assert not await gw.redis.exists(gw.keys.agent(t.project_id, "a3"))
        finally:
            await t.client.close()
