"""Waiting for verdicts, looking them up, and approving/rejecting paused events."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from models.envelope import agent_key, decode_feedback
from models.verdict import Edge, Verdict
from ratchet.config.settings import Settings
from ratchet.store.keys import Keys
from ratchet.store.verdicts import Approval, Resolution, VerdictStore
from tests.integration.gateway_support import (
    FakeWorker,
    Gateway,
    Tenant,
    event,
    make_tenant,
    own_gateway,
    read_topic,
    wait_for,
)

pytestmark = pytest.mark.kafka


async def test_wait_path_returns_the_verdict(gateway: Gateway, tenant: Tenant) -> None:
    async with FakeWorker(gateway.settings, gateway.redis) as worker:
        ev = event(payload={"decide": "flag"})
        answer = await tenant.client.send(ev, wait_ms=3000)
        assert answer.status == 200, answer.body
        assert answer.body["status"] == "decided"
        verdict = answer.body["verdict"]
        assert verdict["event_id"] == ev["event_id"] and verdict["action"] == "flag"
        assert verdict["trace_id"] == answer.trace_id == worker.trace_headers[-1]

        slow = event(payload={"slow": True})
        answer = await tenant.client.send(slow, wait_ms=300)
        assert answer.status == 202 and answer.body["event_id"] == slow["event_id"]

        # the verdict stays available for lookup, in the caller's project only
        looked = await tenant.client.verdict(ev["event_id"])
        assert looked.status == 200 and looked.body["verdict"]["action"] == "flag"
        assert looked.body["approval"] is None
        other = await make_tenant(gateway)
        try:
            assert (await other.client.verdict(ev["event_id"])).status == 404
        finally:
            await other.client.close()
        missing = await tenant.client.verdict(slow["event_id"])
        assert missing.status == 404 and missing.body["error"] == "not_found"


async def test_verdict_appears_after_async_ingest(gateway: Gateway, tenant: Tenant) -> None:
    ev = event()
    assert (await tenant.client.send(ev)).status == 202
    assert (await tenant.client.verdict(ev["event_id"])).status == 404
    async with FakeWorker(gateway.settings, gateway.redis):
        async def decided() -> bool:
            return (await tenant.client.verdict(ev["event_id"])).status == 200
        await wait_for(decided)


async def test_concurrent_waiters(gateway: Gateway, tenant: Tenant) -> None:
    async with FakeWorker(gateway.settings, gateway.redis):
        events = [event(run_id=f"r{i}") for i in range(20)]
        answers = await asyncio.gather(*(tenant.client.send(e, wait_ms=3000) for e in events))
        assert [a.status for a in answers] == [200] * 20
        assert [a.body["verdict"]["event_id"] for a in answers] == [e["event_id"] for e in events]


async def test_approvals(gateway: Gateway, tenant: Tenant) -> None:
    async with FakeWorker(gateway.settings, gateway.redis):
        paused = [event(payload={"decide": "pause"}) for _ in range(3)]
        allowed = event()
        for ev in [*paused, allowed]:
            assert (await tenant.client.send(ev, wait_ms=3000)).status == 200
    page = await tenant.client.approvals(limit=2)
    assert page.status == 200
    first = [v["event_id"] for v in page.body["items"]]
    assert len(first) == 2 and page.body["next_cursor"]
    rest = await tenant.client.approvals(limit=2, cursor=page.body["next_cursor"])
    listed = first + [v["event_id"] for v in rest.body["items"]]
    assert sorted(listed) == sorted(e["event_id"] for e in paused)
    assert rest.body["next_cursor"] is None

    other = await make_tenant(gateway)
    try:
        assert (await other.client.approvals()).body["items"] == []
        assert (await other.client.decide(paused[0]["event_id"], "approve")).status == 404
    finally:
        await other.client.close()

    ok = await tenant.client.decide(paused[0]["event_id"], "approve", "known batch job")
    assert ok.status == 200 and ok.body["decision"] == "approve"
    again = await tenant.client.decide(paused[0]["event_id"], "reject")
    assert again.status == 409 and again.body["error"] == "conflict"
    assert (await tenant.client.decide(paused[1]["event_id"], "reject")).status == 200
    assert (await tenant.client.decide(allowed["event_id"], "approve")).status == 404
    assert (await tenant.client.decide("no-such-event", "approve")).status == 404
    bad = await tenant.client._call("POST", f"/v1/approvals/{paused[2]['event_id']}",
                                    json={"decision": "maybe"})
    assert bad.status == 400 and bad.body["field"] == "decision"

    remaining = await tenant.client.approvals()
    assert [v["event_id"] for v in remaining.body["items"]] == [paused[2]["event_id"]]
    looked = await tenant.client.verdict(paused[0]["event_id"])
    assert looked.body["approval"]["decision"] == "approve"
    assert looked.body["approval"]["reason"] == "known batch job"

    records = await read_topic(gateway.settings.kafka_bootstrap or "",
                               gateway.settings.topic_feedback, expect=2)
    msgs = [(decode_feedback(r.value or b""), r.key) for r in records]
    assert len(msgs) == 2
    by_event = {m.event_id: (m, key) for m, key in msgs}
    fb, key = by_event[paused[0]["event_id"]]
    assert fb.decision == "approve" and fb.project_id == tenant.project_id
    assert key == agent_key(tenant.project_id, tenant.agent_id)
    assert fb.actor.startswith("apikey:") and tenant.api_key not in fb.actor
    assert by_event[paused[1]["event_id"]][0].decision == "reject"


def _paused(event_id: str, project_id: str, at: float) -> Verdict:
    return Verdict(event_id, "a", "r", "c", "locked", True, 9.0, 3.0, Edge("x", "y", 0, 0, 0),
                   "pause", (), at, project_id=project_id)


async def test_approvals_of_one_agent(gateway: Gateway, tenant: Tenant) -> None:
    """``GET /v1/approvals?agent_id=A``: agent A's paused events only, oldest first, paged like
    the project's (an index per agent, kept by the same writes and by the resolve script)."""
    store = VerdictStore(gateway.redis, gateway.keys)
    now = time.time()
    agents = ["a1", "a2", "a1", "a2", "a1"]
    await store.save_many([
        Verdict(f"ag-{i}", agent, "r", "c", "locked", True, 9.0, 3.0, Edge("x", "y", 0, 0, 0),
                "pause", (), now + i, project_id=tenant.project_id)
        for i, agent in enumerate(agents)], 3600)

    async def listed(agent: str, **query: str) -> tuple[list[str], str | None]:
        got = await tenant.client._call("GET", "/v1/approvals",
                                        params={"agent_id": agent, **query})
        assert got.status == 200, got.body
        return [v["event_id"] for v in got.body["items"]], got.body["next_cursor"]

    first, cursor = await listed("a1", limit="2")
    assert first == ["ag-0", "ag-2"] and cursor
    assert await listed("a1", limit="2", cursor=cursor) == (["ag-4"], None)
    assert await listed("a2") == (["ag-1", "ag-3"], None)
    assert await listed("nobody") == ([], None)
    everyone = await tenant.client.approvals()
    assert [v["event_id"] for v in everyone.body["items"]] == [f"ag-{i}" for i in range(5)]
    # a decision takes the event out of its agent's index too; undoing it puts it back
    assert (await tenant.client.decide("ag-2", "approve")).status == 200
    assert await listed("a1") == (["ag-0", "ag-4"], None)
    outcome, score = await store.resolve(tenant.project_id, "ag-4",
                                         Approval("reject", "", "t", now), 3600, "a1")
    assert outcome is Resolution.RESOLVED and await listed("a1") == (["ag-0"], None)
    assert (await store.resolve(tenant.project_id, "ag-0", Approval("reject", "", "t", now),
                                3600, "a1"))[0] is Resolution.RESOLVED
    await store.unresolve(tenant.project_id, "ag-4", score, "a1", 3600)
    assert await listed("a1") == (["ag-4"], None)
    agent_key = gateway.keys.paused_by_agent(tenant.project_id, "a1")
    assert 0 < await gateway.redis.ttl(agent_key) <= 3600  # recreated with its lifetime
    # the project's index is the truth: an entry only the agent's holds (pruned, or left by
    # a release that resolved without it) is not listed, and is dropped
    await gateway.redis.zadd(agent_key, {"ag-9": now})
    assert await listed("a1") == (["ag-4"], None)
    assert await gateway.redis.zscore(agent_key, "ag-9") is None
    # another project's agent of the same name sees none of them
    other = await make_tenant(gateway)
    try:
        got = await other.client._call("GET", "/v1/approvals", params={"agent_id": "a1"})
        assert got.status == 200 and got.body["items"] == []
    finally:
        await other.client.close()
    for bad in ("", "x\u0007y", "a" * 129):
        got = await tenant.client._call("GET", "/v1/approvals", params={"agent_id": bad})
        assert got.status == 400 and got.body["field"] == "agent_id", (bad, got.body)


async def test_concurrent_resolve_has_one_winner(gateway: Gateway) -> None:
    store = VerdictStore(gateway.redis, gateway.keys)
    await store.save_many([_paused(f"e{i}", "p", 100.0) for i in range(10)], 3600)
    for i in range(10):
        results = await asyncio.gather(*(
            store.resolve("p", f"e{i}", Approval("approve", "", f"actor{j}", 1.0), 3600)
            for j in range(8)
        ))
        outcomes = [r for r, _ in results]
        assert outcomes.count(Resolution.RESOLVED) == 1
        assert outcomes.count(Resolution.ALREADY_DECIDED) == 7
    assert (await store.resolve("p", "nope", Approval("approve", "", "a", 1.0), 3600))[0] \
        is Resolution.NOT_PAUSED


async def test_paused_pages_with_equal_scores(gateway: Gateway) -> None:
    store = VerdictStore(gateway.redis, Keys(gateway.keys.prefix))
    ids = [f"e{i:02d}" for i in range(25)]
    await store.save_many([_paused(e, "p", 100.0 if i < 15 else 200.0)
                           for i, e in enumerate(ids)], 3600)
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list_paused("p", 4, cursor)
        seen += [v["event_id"] for v in page.verdicts]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ids
    with pytest.raises(ValueError):
        await store.list_paused("p", 4, "garbage")


# --- long poll: GET /v1/verdicts/{id}?wait_ms= ----------------------------------------------------
async def _long_poll(gw: Gateway, t: Tenant, event_id: str, wait_ms: int | str
                     ) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    async with aiohttp.ClientSession() as http, http.get(
            f"{gw.url}/v1/verdicts/{event_id}", params={"wait_ms": str(wait_ms)},
            headers={"Authorization": f"Bearer {t.api_key}"}) as resp:
        return resp.status, await resp.json(), time.monotonic() - started


async def test_long_poll_waits_for_a_verdict_that_does_not_exist_yet(
        gateway: Gateway, tenant: Tenant) -> None:
    ev = event()
    waiter = asyncio.create_task(_long_poll(gateway, tenant, ev["event_id"], 3000))
    await asyncio.sleep(0.3)  # the waiter is parked before the event is even sent
    assert not waiter.done()
    async with FakeWorker(gateway.settings, gateway.redis):
        assert (await tenant.client.send(ev)).status == 202
        status, body, took = await waiter
    assert status == 200 and body["verdict"]["event_id"] == ev["event_id"], body
    assert 0.3 <= took < 3.0


async def test_long_poll_holds_a_pause_until_a_person_decides(
        gateway: Gateway, tenant: Tenant, gw_settings: Settings) -> None:
    ev = event(payload={"decide": "pause"})
    async with FakeWorker(gateway.settings, gateway.redis):
        assert (await tenant.client.send(ev, wait_ms=3000)).status == 200
    # a decision-less pause: answered when wait_ms runs out, approval still null
    status, body, took = await _long_poll(gateway, tenant, ev["event_id"], 300)
    assert status == 200 and body["approval"] is None and took >= 0.3
    # concurrent waiters on two gateways; the approval goes through one of them
    async with own_gateway(gw_settings) as second:
        waiters = [asyncio.create_task(_long_poll(gw, tenant, ev["event_id"], 3000))
                   for gw in (gateway, gateway, second)]
        await asyncio.sleep(0.5)
        assert not any(w.done() for w in waiters)
        assert (await tenant.client.decide(ev["event_id"], "approve", "ok")).status == 200
        answers = await asyncio.gather(*waiters)
    for status, body, took in answers:
        assert status == 200 and body["approval"]["decision"] == "approve", body
        assert 0.5 <= took < 3.0


async def test_long_poll_survives_a_gateway_restart_for_the_next_call(
        gateway: Gateway, tenant: Tenant, gw_settings: Settings) -> None:
    """State lives in Redis: a waiter on a restarted gateway sees a decision made before."""
    ev = event(payload={"decide": "pause"})
    async with FakeWorker(gateway.settings, gateway.redis):
        assert (await tenant.client.send(ev, wait_ms=3000)).status == 200
    async with own_gateway(gw_settings) as first:
        waiter = asyncio.create_task(_long_poll(first, tenant, ev["event_id"], 3000))
        await asyncio.sleep(0.3)
    # the first gateway stopped under its waiter: that request ended without a decision (a
    # graceful stop answers it with the state as it was; a hard one cuts it), the client asks again
    try:
        status, body, _ = await waiter
        assert status == 200 and body["approval"] is None, body
    except aiohttp.ClientError:
        pass
    assert (await tenant.client.decide(ev["event_id"], "reject", "no")).status == 200
    async with own_gateway(gw_settings) as restarted:
        status, body, took = await _long_poll(restarted, tenant, ev["event_id"], 3000)
    assert status == 200 and body["approval"]["decision"] == "reject" and took < 1.0


async def test_long_poll_not_found_and_bad_wait(gateway: Gateway, tenant: Tenant) -> None:
    status, body, took = await _long_poll(gateway, tenant, "never-sent", 400)
    assert status == 404 and took >= 0.4
    for bad in ("-1", "soon", str(gateway.settings.max_wait_ms + 1)):
        status, body, _ = await _long_poll(gateway, tenant, "never-sent", bad)
        assert status == 400 and body["field"] == "wait_ms", body
