"""``POST /v1/approvals/{id}`` with ``"similar": true``: one decision for every paused event of
the project like the named one (the same agent, chain and call, held for the same reasons) —
what an operator needs after an API drift paused every run that sends a new field."""

from __future__ import annotations

import time

import pytest

from models.envelope import decode_feedback
from models.verdict import Edge, Reason, Verdict
from ratchet.store.audit import AuditLog
from ratchet.store.verdicts import VerdictStore
from tests.integration.gateway_support import Gateway, Tenant, make_tenant, read_topic

pytestmark = pytest.mark.kafka

NEW = (Reason("markov", "pause", {"new_node": True, "p": 0.0}),)


def _paused(tenant: Tenant, event_id: str, *, to: str = "n_drift", agent: str | None = None,
            reasons: tuple[Reason, ...] = NEW, at: float = 0.0) -> Verdict:
    return Verdict(event_id, agent or tenant.agent_id, f"run-{event_id}", "p/agent-1/crm",
                   "locked", True, 19.9, 14.0, Edge("n_read", to, 0.0, 0.0, 30.0), "pause",
                   reasons, at or time.time(), project_id=tenant.project_id)


async def test_approving_similar_decides_every_paused_event_like_it_and_nothing_else(
        gateway: Gateway, tenant: Tenant) -> None:
    store = VerdictStore(gateway.redis, gateway.keys)
    base = time.time() - 100
    like = [_paused(tenant, f"drift-{i}", at=base + i) for i in range(4)]
    other_call = _paused(tenant, "other-call", to="n_other", at=base + 10)
    other_agent = _paused(tenant, "other-agent", agent="agent-2", at=base + 11)
    other_reason = _paused(tenant, "other-reason", at=base + 12, reasons=(
        *NEW, Reason("guardrail:pattern", "pause", {"rule": "no-drop"})))
    await store.save_many([*like, other_call, other_agent, other_reason], 3600)
    theirs = await make_tenant(gateway)  # the same agent id, chain and call in another project
    await store.save_many([_paused(theirs, "theirs-0", at=base)], 3600)

    got = await tenant.client.decide("drift-1", "approve", "the new field is expected",
                                     similar=True)
    assert got.status == 200, got.body
    assert got.body["event_id"] == "drift-1" and got.body["similar"] == [
        "drift-0", "drift-2", "drift-3"]  # oldest first, the named one not repeated
    left = await tenant.client.approvals()
    assert [v["event_id"] for v in left.body["items"]] == [
        "other-call", "other-agent", "other-reason"]
    try:
        assert [v["event_id"] for v in (await theirs.client.approvals()).body["items"]] == [
            "theirs-0"]
    finally:
        await theirs.client.close()
    for v in like:  # each has the decision, its reason and its actor
        approval = (await tenant.client.verdict(v.event_id)).body["approval"]
        assert approval["decision"] == "approve"
        assert approval["reason"] == "the new field is expected"

    records = await read_topic(gateway.settings.kafka_bootstrap or "",
                               gateway.settings.topic_feedback, expect=4)
    feedback = sorted(decode_feedback(r.value or b"").event_id for r in records)
    assert feedback == ["drift-0", "drift-1", "drift-2", "drift-3"]  # every one is learned
    audit = AuditLog(gateway.redis, gateway.keys, gateway.settings)
    entries = (await audit.page(tenant.project_id)).entries
    decided = {e.target: e.details.get("like") for e in entries if e.action == "approval.approved"}
    assert decided == {"event:drift-1": None, "event:drift-0": "drift-1",
                       "event:drift-2": "drift-1", "event:drift-3": "drift-1"}

    # nothing like it left: a similar decision decides the named event alone
    alone = await tenant.client.decide("other-call", "reject", similar=True)
    assert alone.status == 200 and alone.body["similar"] == []
    # without similar the answer is as before; a non-boolean similar is a 400
    plain = await tenant.client.decide("other-agent", "approve")
    assert plain.status == 200 and "similar" not in plain.body
    bad = await tenant.client._call("POST", "/v1/approvals/other-reason",
                                    json={"decision": "approve", "similar": "yes"})
    assert bad.status == 400 and bad.body["field"] == "similar"
    assert [v["event_id"] for v in (await tenant.client.approvals()).body["items"]] == [
        "other-reason"]


async def test_the_search_is_bounded_and_its_reads_are_charged_as_bytes(
        gateway: Gateway, tenant: Tenant) -> None:
    from gateway.similar import VERDICT_BYTES, similar_paused
    store = VerdictStore(gateway.redis, gateway.keys)
    base = time.time() - 100
    await store.save_many([_paused(tenant, f"d-{i:02d}", at=base + i) for i in range(30)], 3600)
    named = await store.get(tenant.project_id, "d-00")
    assert named is not None
    ids, read = await similar_paused(store, tenant.project_id, named, scanned=12, found=100)
    assert ids == [f"d-{i:02d}" for i in range(1, 12)] and read == 12 * VERDICT_BYTES
    ids, read = await similar_paused(store, tenant.project_id, named, scanned=1000, found=5)
    assert ids == [f"d-{i:02d}" for i in range(1, 6)]
    allowed = {**named, "reasons": [{"source": "markov", "action": "allow", "detail": {}}]}
    assert await similar_paused(store, tenant.project_id, allowed) == ([], 0)
