"""Tenant isolation matrix: every route of the gateway, tenant A's key against tenant B's data.

Two projects (A and B), each with an agent, a decided verdict and a paused event. For every
route the app serves (enumerated from its router: a new route without a row here fails
``test_matrix_covers_every_route``), ``own`` checks that A's key works on A's own data (2xx) and
``cross`` that it cannot see or change B's: B's resources are 404 exactly like ids that never
existed (never 403, never 200), and B's state is unchanged afterwards. Routes without tenant data
(health, metrics, the OpenAPI document, self-serve signup) are checked not to reveal B's data.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from gateway.app import build_app
from models.signing import sign
from models.verdict import Edge, Reason, Verdict
from ratchet.config.settings import Settings
from ratchet.platform.provisioning import (
    agent_secret,
    create_agent,
    create_project,
    project_for_api_key,
)
from ratchet.store.verdicts import VerdictStore
from tests.integration.gateway_support import (
    Gateway,
    event,
)

pytestmark = pytest.mark.kafka


@dataclass
class Side:
    project_id: str
    api_key: str
    agent_id: str
    secret: str
    decided: str  # event id of an allowed verdict
    paused: str  # event id of a paused verdict
    webhook: str = ""  # id of the project's webhook
    ingest_key: str = ""  # an ingest key bound to its agent (made over the API)
    ingest_key_id: str = ""
    audit_entries: int = 0  # length of its audit log once set up


@dataclass
class World:
    gw: Gateway
    a: Side
    b: Side
    #: Secret of B's agent that has the same id as A's agent.
    b_shared_secret: str


@dataclass
class Reply:
    status: int
    body: Any
    text: str


def _verdict(project_id: str, agent_id: str, event_id: str, action: str) -> Verdict:
    return Verdict(
        event_id=event_id, agent_id=agent_id, run_id="run-1", chain="crm", mode="locked",
        anomalous=action != "allow", score=12.5, threshold=3.0,
        edge=Edge("START", "n1", 0.0, 0.0, 0.0), action=action,
        reasons=(Reason("markov", action, {}),) if action != "allow" else (),
        decided_at=time.time(), trace_id="trace-isolation", project_id=project_id,
    )


async def _side(gw: Gateway, name: str) -> Side:
    project_id, api_key = await create_project(gw.redis, gw.keys, f"tenant {name}")
    agent_id, secret = await create_agent(gw.redis, gw.keys, project_id, f"agent-{name}")
    side = Side(project_id, api_key, agent_id, secret, f"ev-{name}-decided", f"ev-{name}-paused")
    await VerdictStore(gw.redis, gw.keys).save_many(
        [_verdict(project_id, agent_id, side.decided, "allow"),
         _verdict(project_id, agent_id, side.paused, "pause")], gw.settings.verdict_ttl_s)
    return side


SHARED_AGENT = "agent-a"  # B has an agent with A's agent id too
SHARED_EVENT = "ev-shared"  # and both have a verdict for the same event id


async def _world(gw: Gateway) -> World:
    a, b = await _side(gw, "a"), await _side(gw, "b")
    _, b_shared_secret = await create_agent(gw.redis, gw.keys, b.project_id, SHARED_AGENT)
    await VerdictStore(gw.redis, gw.keys).save_many(
        [_verdict(a.project_id, a.agent_id, SHARED_EVENT, "allow"),
         _verdict(b.project_id, b.agent_id, SHARED_EVENT, "pause")], gw.settings.verdict_ttl_s)
    w = World(gw, a, b, b_shared_secret)
    for side in (a, b):  # a webhook each, registered over the API (audited)
        got = await call(w, "POST", "/v1/webhooks", key=side.api_key,
                         json={"url": f"https://93.184.216.34/hook-{side.agent_id}"})
        assert got.status == 201, got.text
        side.webhook = got.body["id"]
        got = await call(w, "POST", "/v1/keys", key=side.api_key,
                         json={"role": "ingest", "agent_id": side.agent_id})
        assert got.status == 201, got.text
        side.ingest_key, side.ingest_key_id = got.body["api_key"], got.body["key_id"]
    b.audit_entries = len((await call(w, "GET", "/v1/audit", key=b.api_key)).body["items"])
    assert b.audit_entries >= 1
    return w


async def call(w: World, method: str, path: str, *, key: str | None = None,
               json: Any = None, headers: dict[str, str] | None = None) -> Reply:
    sent = dict(headers or {})
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    async with aiohttp.ClientSession() as http, http.request(
        method, w.gw.url + path, json=json, headers=sent
    ) as resp:
        text = await resp.text()
        body: Any = None
        if resp.content_type == "application/json":
            body = await resp.json()
        assert resp.status != 403, f"{method} {path}: 403 reveals that the resource exists"
        return Reply(resp.status, body, text)


def _signed(side_project: str, agent_id: str, secret: str) -> tuple[dict[str, Any], dict[str, str]]:
    ev = event(agent_id)
    ts = int(time.time())
    sig = sign(secret, side_project, ev, ts)
    return ev, {"X-Ratchet-Signature": sig, "X-Ratchet-Timestamp": str(ts)}


def _same_as_missing(got: Reply, missing: Reply, real_id: str, ghost_id: str) -> None:
    """``got`` (B's real resource) must be indistinguishable from an id that never existed."""
    assert got.status == missing.status == 404, (got.status, got.text)
    assert got.text.replace(real_id, "<id>") == missing.text.replace(ghost_id, "<id>")


async def _b_untouched(w: World) -> None:
    """B's key, agent secret, verdicts and paused event are as they were."""
    assert await project_for_api_key(w.gw.redis, w.gw.keys, w.b.api_key) == w.b.project_id
    assert await project_for_api_key(w.gw.redis, w.gw.keys, w.b.ingest_key) == w.b.project_id
    keys = await call(w, "GET", "/v1/keys", key=w.b.api_key)
    assert [k["key_id"] for k in keys.body["items"] if not k["primary"]] == [w.b.ingest_key_id]
    assert await agent_secret(w.gw.redis, w.gw.keys, w.b.project_id, w.b.agent_id) == w.b.secret
    assert await agent_secret(w.gw.redis, w.gw.keys, w.b.project_id, SHARED_AGENT) == \
        w.b_shared_secret
    page = await call(w, "GET", "/v1/approvals", key=w.b.api_key)
    assert sorted(v["event_id"] for v in page.body["items"]) == sorted([w.b.paused, SHARED_EVENT])
    whoami = await call(w, "GET", "/v1/whoami", key=w.b.api_key)
    assert whoami.body["project_id"] == w.b.project_id
    hooks = await call(w, "GET", "/v1/webhooks", key=w.b.api_key)
    assert [h["id"] for h in hooks.body["items"]] == [w.b.webhook]
    audit = await call(w, "GET", "/v1/audit", key=w.b.api_key)
    assert len(audit.body["items"]) == w.b.audit_entries  # nothing A did landed in B's log


# --- one row per route: (own, cross) --------------------------------------------------------

Check = Callable[[World], Awaitable[None]]


async def own_event(w: World) -> None:
    ev, sig = _signed(w.a.project_id, w.a.agent_id, w.a.secret)
    assert (await call(w, "POST", "/v1/events", key=w.a.api_key, json=ev, headers=sig)).status \
        == 202


async def cross_event(w: World) -> None:
    # B's agent, correctly signed by B's secret for B's project, sent with A's key
    ev, sig = _signed(w.b.project_id, w.b.agent_id, w.b.secret)
    got = await call(w, "POST", "/v1/events", key=w.a.api_key, json=ev, headers=sig)
    ghost, gsig = _signed(w.b.project_id, "ghost-agent", w.b.secret)
    missing = await call(w, "POST", "/v1/events", key=w.a.api_key, json=ghost, headers=gsig)
    assert got.status == 401  # an agent A does not have: the signature cannot be verified
    assert got.body["message"].replace(w.b.agent_id, "<id>") == \
        missing.body["message"].replace("ghost-agent", "<id>")


async def own_batch(w: World) -> None:
    ev, sig = _signed(w.a.project_id, w.a.agent_id, w.a.secret)
    item = {**ev, "signature": sig["X-Ratchet-Signature"],
            "timestamp": int(sig["X-Ratchet-Timestamp"])}
    got = await call(w, "POST", "/v1/events:batch", key=w.a.api_key, json={"events": [item]})
    assert got.status == 200 and got.body["accepted"] == 1


async def cross_batch(w: World) -> None:
    def item(agent: str) -> dict[str, Any]:
        ev, sig = _signed(w.b.project_id, agent, w.b.secret)
        return {**ev, "signature": sig["X-Ratchet-Signature"],
                "timestamp": int(sig["X-Ratchet-Timestamp"])}

    got = await call(w, "POST", "/v1/events:batch", key=w.a.api_key,
                     json={"events": [item(w.b.agent_id), item("ghost-agent")]})
    assert got.status == 200 and got.body["accepted"] == 0
    theirs, ghost = got.body["results"]
    assert theirs["status"] == ghost["status"] == "rejected"
    assert theirs["error"]["message"].replace(w.b.agent_id, "<id>") == \
        ghost["error"]["message"].replace("ghost-agent", "<id>")


async def own_whoami(w: World) -> None:
    got = await call(w, "GET", "/v1/whoami", key=w.a.api_key)
    assert got.status == 200 and got.body["project_id"] == w.a.project_id


async def cross_whoami(w: World) -> None:
    got = await call(w, "GET", "/v1/whoami", key=w.a.api_key)
    assert w.b.project_id not in got.text


async def own_verdict(w: World) -> None:
    got = await call(w, "GET", f"/v1/verdicts/{w.a.decided}", key=w.a.api_key)
    assert got.status == 200 and got.body["verdict"]["event_id"] == w.a.decided
    shared = await call(w, "GET", f"/v1/verdicts/{SHARED_EVENT}", key=w.a.api_key)
    assert shared.body["verdict"]["agent_id"] == w.a.agent_id  # A's, never B's


async def cross_verdict(w: World) -> None:
    for event_id in (w.b.decided, w.b.paused):
        got = await call(w, "GET", f"/v1/verdicts/{event_id}", key=w.a.api_key)
        missing = await call(w, "GET", "/v1/verdicts/ghost-event", key=w.a.api_key)
        assert got.status == 404
        _same_as_missing(got, missing, event_id, "ghost-event")


async def own_approvals(w: World) -> None:
    got = await call(w, "GET", "/v1/approvals", key=w.a.api_key)
    assert got.status == 200 and [v["event_id"] for v in got.body["items"]] == [w.a.paused]


async def own_decisions(w: World) -> None:
    got = await call(w, "GET", "/v1/decisions:stream?after=0-0&timeout_s=1", key=w.a.api_key)
    assert got.status == 200 and f'"event_id":"{w.a.paused}"' in got.text, got.text


async def cross_decisions(w: World) -> None:
    got = await call(w, "GET", "/v1/decisions:stream?after=0-0&timeout_s=1", key=w.a.api_key)
    assert w.b.paused not in got.text and w.b.project_id not in got.text


async def cross_approvals(w: World) -> None:
    got = await call(w, "GET", "/v1/approvals?limit=500", key=w.a.api_key)
    assert w.b.paused not in got.text and w.b.project_id not in got.text
    # a cursor pointing into B's index still only walks A's
    cursor = f"0.0:{w.b.paused}"
    got = await call(w, "GET", f"/v1/approvals?cursor={cursor}", key=w.a.api_key)
    assert w.b.paused not in got.text.replace(cursor, "")


async def own_decide(w: World) -> None:
    got = await call(w, "POST", f"/v1/approvals/{w.a.paused}", key=w.a.api_key,
                     json={"decision": "approve"})
    assert got.status == 200 and got.body["status"] == "recorded"


async def cross_decide(w: World) -> None:
    # B's paused SHARED_EVENT is A's decided (not paused) one: A cannot resolve B's
    shared = await call(w, "POST", f"/v1/approvals/{SHARED_EVENT}", key=w.a.api_key,
                        json={"decision": "approve"})
    assert shared.status == 404
    for event_id in (w.b.paused, w.b.decided):
        got = await call(w, "POST", f"/v1/approvals/{event_id}", key=w.a.api_key,
                         json={"decision": "reject"})
        missing = await call(w, "POST", "/v1/approvals/ghost-event", key=w.a.api_key,
                             json={"decision": "reject"})
        assert got.status == 404
        _same_as_missing(got, missing, event_id, "ghost-event")


async def own_register(w: World) -> None:
    got = await call(w, "POST", "/v1/agents", key=w.a.api_key, json={"agent_id": "agent-new"})
    assert got.status == 201
    assert await agent_secret(w.gw.redis, w.gw.keys, w.a.project_id, "agent-new") == \
        got.body["agent_secret"]


async def cross_register(w: World) -> None:
    # naming B's project in the body is refused (no such field: the key decides the project)
    got = await call(w, "POST", "/v1/agents", key=w.a.api_key,
                     json={"agent_id": w.b.agent_id, "project_id": w.b.project_id})
    assert got.status == 400 and got.body["field"] == "project_id"
    assert await agent_secret(w.gw.redis, w.gw.keys, w.b.project_id, w.b.agent_id) == w.b.secret
    # registering B's agent id in A creates A's own agent; B's agent is not touched
    got = await call(w, "POST", "/v1/agents", key=w.a.api_key, json={"agent_id": w.b.agent_id})
    assert got.status == 201 and got.body["agent_secret"] != w.b.secret
    assert await agent_secret(w.gw.redis, w.gw.keys, w.a.project_id, w.b.agent_id) == \
        got.body["agent_secret"]


async def own_agent(w: World) -> None:
    got = await call(w, "GET", f"/v1/agents/{SHARED_AGENT}", key=w.a.api_key)
    assert got.status == 200 and got.body["agent_id"] == w.a.agent_id
    assert "secret" not in got.body and w.a.secret not in got.text


async def cross_agent(w: World) -> None:
    got = await call(w, "GET", f"/v1/agents/{w.b.agent_id}", key=w.a.api_key)
    missing = await call(w, "GET", "/v1/agents/ghost-agent", key=w.a.api_key)
    assert got.status == 404
    _same_as_missing(got, missing, w.b.agent_id, "ghost-agent")


async def own_agents(w: World) -> None:
    got = await call(w, "GET", "/v1/agents", key=w.a.api_key)
    assert got.status == 200
    assert [a["agent_id"] for a in got.body["items"]] == [w.a.agent_id]
    assert all(set(a) <= {"agent_id", "created_at", "secret_rotated_at"} for a in got.body["items"])
    assert w.a.secret not in got.text


async def cross_agents(w: World) -> None:
    """B's agents (B also has one named like A's) are not in A's list, nor their secrets."""
    got = await call(w, "GET", "/v1/agents", key=w.a.api_key)
    ids = [a["agent_id"] for a in got.body["items"]]
    assert w.b.agent_id not in ids and ids.count(SHARED_AGENT) <= 1
    assert w.b.secret not in got.text and w.b_shared_secret not in got.text


async def own_rotate_secret(w: World) -> None:
    got = await call(w, "POST", f"/v1/agents/{w.a.agent_id}/secret:rotate", key=w.a.api_key)
    assert got.status == 200 and got.body["agent_secret"] != w.a.secret


async def cross_rotate_secret(w: World) -> None:
    got = await call(w, "POST", f"/v1/agents/{w.b.agent_id}/secret:rotate", key=w.a.api_key)
    missing = await call(w, "POST", "/v1/agents/ghost-agent/secret:rotate", key=w.a.api_key)
    assert got.status == 404
    _same_as_missing(got, missing, w.b.agent_id, "ghost-agent")


async def own_rotate_key(w: World) -> None:
    got = await call(w, "POST", "/v1/projects/current/keys:rotate", key=w.a.api_key)
    assert got.status == 200 and got.body["project_id"] == w.a.project_id


async def cross_rotate_key(w: World) -> None:
    # naming B's project in the query is refused (the route takes no query parameter: nothing
    # rotated); in the body it changes nothing: the key decides the project
    refused = await call(w, "POST",
                         f"/v1/projects/current/keys:rotate?project_id={w.b.project_id}",
                         key=w.a.api_key)
    assert refused.status == 400 and refused.body["field"] == "project_id"
    got = await call(w, "POST", "/v1/projects/current/keys:rotate",
                     key=w.a.api_key, json={"project_id": w.b.project_id})
    assert got.status == 200 and got.body["project_id"] == w.a.project_id
    w.a.api_key = got.body["api_key"]  # A's key changed (only A's: see _b_untouched)


async def own_audit(w: World) -> None:
    got = await call(w, "GET", "/v1/audit", key=w.a.api_key)
    assert got.status == 200 and got.body["items"]
    assert {e["project_id"] for e in got.body["items"]} == {w.a.project_id}


async def cross_audit(w: World) -> None:
    got = await call(w, "GET", "/v1/audit?limit=1000", key=w.a.api_key)
    assert w.b.project_id not in got.text and w.b.webhook not in got.text


async def own_add_webhook(w: World) -> None:
    got = await call(w, "POST", "/v1/webhooks", key=w.a.api_key,
                     json={"url": "https://93.184.216.34/another"})
    assert got.status == 201


async def cross_add_webhook(w: World) -> None:
    # a project id in the body or the query is refused: the key decides
    refused = await call(w, "POST", "/v1/webhooks", key=w.a.api_key,
                         json={"url": "https://93.184.216.34/x", "project_id": w.b.project_id})
    assert refused.status == 400 and refused.body["field"] == "project_id"
    refused = await call(w, "POST", f"/v1/webhooks?project_id={w.b.project_id}",
                         key=w.a.api_key, json={"url": "https://93.184.216.34/x"})
    assert refused.status == 400 and refused.body["field"] == "project_id"
    got = await call(w, "POST", "/v1/webhooks", key=w.a.api_key,
                     json={"url": "https://93.184.216.34/x"})
    assert got.status == 201
    assert got.body["id"] in (await call(w, "GET", "/v1/webhooks", key=w.a.api_key)).text


async def own_webhooks(w: World) -> None:
    got = await call(w, "GET", "/v1/webhooks", key=w.a.api_key)
    assert got.status == 200 and [h["id"] for h in got.body["items"]] == [w.a.webhook]


async def cross_webhooks(w: World) -> None:
    got = await call(w, "GET", "/v1/webhooks", key=w.a.api_key)
    assert w.b.webhook not in got.text and "hook-agent-b" not in got.text


async def own_delete_webhook(w: World) -> None:
    got = await call(w, "DELETE", f"/v1/webhooks/{w.a.webhook}", key=w.a.api_key)
    assert got.status == 204


async def cross_delete_webhook(w: World) -> None:
    got = await call(w, "DELETE", f"/v1/webhooks/{w.b.webhook}", key=w.a.api_key)
    missing = await call(w, "DELETE", "/v1/webhooks/ghost-hook", key=w.a.api_key)
    _same_as_missing(got, missing, w.b.webhook, "ghost-hook")


async def own_public(w: World, method: str, path: str, status: int, body: Any = None) -> None:
    got = await call(w, method, path, json=body)
    assert got.status == status, got.text


async def cross_public(w: World, method: str, path: str, body: Any = None) -> None:
    """With A's key, a public route reveals nothing of B."""
    got = await call(w, method, path, key=w.a.api_key, json=body)
    for secret in (w.b.project_id, w.b.api_key, w.b.secret, w.b.decided, w.b.paused,
                   w.b.webhook):
        assert secret not in got.text


def _public(method: str, path: str, status: int, body: Any = None) -> tuple[Check, Check]:
    async def own(w: World) -> None:
        await own_public(w, method, path, status, body)

    async def cross(w: World) -> None:
        await cross_public(w, method, path, body)

    return own, cross


async def _token(w: World) -> dict[str, str]:
    got = await call(w, "POST", "/v1/signup/tokens")
    return {"token": got.body["token"]}


async def own_signup(w: World) -> None:
    got = await call(w, "POST", "/v1/signup", json=await _token(w))
    assert got.status == 201 and got.body["project_id"] not in (w.a.project_id, w.b.project_id)


async def cross_signup(w: World) -> None:
    got = await call(w, "POST", "/v1/signup", key=w.a.api_key, json=await _token(w))
    assert got.status == 201 and got.body["project_id"] != w.b.project_id


def _policy_with(rule_id: str) -> dict[str, str]:
    return {"toml": f'[[guardrails.pattern.rules]]\nid = "{rule_id}"\nliteral = "{rule_id}"\n'}


async def own_get_policy(w: World) -> None:
    assert (await call(w, "PUT", "/v1/policy", key=w.a.api_key,
                       json=_policy_with("a-own-rule"))).status == 200
    got = await call(w, "GET", "/v1/policy", key=w.a.api_key,
                     headers={"Accept": "application/json"})
    assert got.status == 200 and got.body["project_id"] == w.a.project_id
    assert "a-own-rule" in got.text


async def cross_get_policy(w: World) -> None:
    assert (await call(w, "PUT", "/v1/policy", key=w.b.api_key,
                       json=_policy_with("b-private-rule"))).status == 200
    w.b.audit_entries += 1  # B's own change is audited in B's log
    got = await call(w, "GET", "/v1/policy", key=w.a.api_key,
                     headers={"Accept": "application/json"})
    assert "b-private-rule" not in got.text and w.b.project_id not in got.text


async def own_put_policy(w: World) -> None:
    got = await call(w, "PUT", "/v1/policy", key=w.a.api_key, json=_policy_with("a-rule"))
    assert got.status == 200 and got.body["project_id"] == w.a.project_id


async def cross_put_policy(w: World) -> None:
    assert (await call(w, "PUT", "/v1/policy", key=w.b.api_key,
                       json=_policy_with("b-kept-rule"))).status == 200
    w.b.audit_entries += 1  # B's own change is audited in B's log
    await call(w, "PUT", "/v1/policy", key=w.a.api_key, json=_policy_with("a-overwrite"))
    got = await call(w, "GET", "/v1/policy", key=w.b.api_key,
                     headers={"Accept": "application/json"})
    assert "b-kept-rule" in got.text and "a-overwrite" not in got.text


async def own_get_engine(w: World) -> None:
    assert (await call(w, "PUT", "/v1/policy/engine", key=w.a.api_key,
                       json={"engine": {"floor_bits": 13.0}})).status == 200
    got = await call(w, "GET", "/v1/policy/engine", key=w.a.api_key)
    assert got.status == 200 and got.body["project_id"] == w.a.project_id
    assert got.body["engine"] == {"floor_bits": 13.0}


async def cross_get_engine(w: World) -> None:
    assert (await call(w, "PUT", "/v1/policy/engine", key=w.b.api_key,
                       json={"engine": {"floor_bits": 17.5}})).status == 200
    w.b.audit_entries += 1  # B's own change is audited in B's log
    got = await call(w, "GET", "/v1/policy/engine", key=w.a.api_key)
    assert "17.5" not in got.text and w.b.project_id not in got.text


async def own_put_engine(w: World) -> None:
    got = await call(w, "PUT", "/v1/policy/engine", key=w.a.api_key,
                     json={"engine": {"window": 12}})
    assert got.status == 200 and got.body["project_id"] == w.a.project_id


async def cross_put_engine(w: World) -> None:
    assert (await call(w, "PUT", "/v1/policy/engine", key=w.b.api_key,
                       json={"engine": {"floor_bits": 17.5}})).status == 200
    w.b.audit_entries += 1
    await call(w, "PUT", "/v1/policy/engine", key=w.a.api_key, json={"engine": {"window": 3}})
    got = await call(w, "GET", "/v1/policy/engine", key=w.b.api_key)
    assert got.body["engine"] == {"floor_bits": 17.5}


async def own_delete_engine(w: World) -> None:
    got = await call(w, "DELETE", "/v1/policy/engine", key=w.a.api_key)
    assert got.status == 200 and got.body["project_id"] == w.a.project_id


async def cross_delete_engine(w: World) -> None:
    assert (await call(w, "PUT", "/v1/policy/engine", key=w.b.api_key,
                       json={"engine": {"floor_bits": 17.5}})).status == 200
    w.b.audit_entries += 1
    await call(w, "DELETE", "/v1/policy/engine", key=w.a.api_key)
    got = await call(w, "GET", "/v1/policy/engine", key=w.b.api_key)
    assert got.body["engine"] == {"floor_bits": 17.5}


async def own_keys(w: World) -> None:
    got = await call(w, "GET", "/v1/keys", key=w.a.api_key)
    assert got.status == 200
    assert [k["key_id"] for k in got.body["items"] if not k["primary"]] == [w.a.ingest_key_id]


async def cross_keys(w: World) -> None:
    got = await call(w, "GET", "/v1/keys", key=w.a.api_key)
    assert w.b.ingest_key_id not in got.text and w.b.agent_id not in got.text


async def own_add_key(w: World) -> None:
    got = await call(w, "POST", "/v1/keys", key=w.a.api_key,
                     json={"role": "ingest", "agent_id": SHARED_AGENT})
    assert got.status == 201
    assert await project_for_api_key(w.gw.redis, w.gw.keys, got.body["api_key"]) == \
        w.a.project_id


async def cross_add_key(w: World) -> None:
    # B's agent id is unknown in A (like an id that never existed); a project id is refused
    got = await call(w, "POST", "/v1/keys", key=w.a.api_key,
                     json={"role": "ingest", "agent_id": w.b.agent_id})
    missing = await call(w, "POST", "/v1/keys", key=w.a.api_key,
                         json={"role": "ingest", "agent_id": "ghost-agent"})
    _same_as_missing(got, missing, w.b.agent_id, "ghost-agent")
    refused = await call(w, "POST", "/v1/keys", key=w.a.api_key,
                         json={"role": "admin", "project_id": w.b.project_id})
    assert refused.status == 400 and refused.body["field"] == "project_id"


async def own_rotate_scoped(w: World) -> None:
    got = await call(w, "POST", f"/v1/keys/{w.a.ingest_key_id}:rotate", key=w.a.api_key)
    assert got.status == 200 and got.body["agent_id"] == w.a.agent_id


async def cross_rotate_scoped(w: World) -> None:
    b_primary = (await call(w, "GET", "/v1/keys", key=w.b.api_key)).body["items"][0]["key_id"]
    for key_id in (w.b.ingest_key_id, b_primary):
        got = await call(w, "POST", f"/v1/keys/{key_id}:rotate", key=w.a.api_key)
        missing = await call(w, "POST", "/v1/keys/0123456789ab:rotate", key=w.a.api_key)
        _same_as_missing(got, missing, key_id, "0123456789ab")


async def own_revoke_key(w: World) -> None:
    got = await call(w, "DELETE", f"/v1/keys/{w.a.ingest_key_id}", key=w.a.api_key)
    assert got.status == 204
    assert await project_for_api_key(w.gw.redis, w.gw.keys, w.a.ingest_key) is None


async def cross_revoke_key(w: World) -> None:
    got = await call(w, "DELETE", f"/v1/keys/{w.b.ingest_key_id}", key=w.a.api_key)
    missing = await call(w, "DELETE", "/v1/keys/0123456789ab", key=w.a.api_key)
    _same_as_missing(got, missing, w.b.ingest_key_id, "0123456789ab")


MATRIX: dict[tuple[str, str], tuple[Check, Check]] = {
    ("GET", "/v1/keys"): (own_keys, cross_keys),
    ("POST", "/v1/keys"): (own_add_key, cross_add_key),
    ("POST", "/v1/keys/{key_id}:rotate"): (own_rotate_scoped, cross_rotate_scoped),
    ("DELETE", "/v1/keys/{key_id}"): (own_revoke_key, cross_revoke_key),
    ("GET", "/v1/policy"): (own_get_policy, cross_get_policy),
    ("GET", "/v1/policy/engine"): (own_get_engine, cross_get_engine),
    ("PUT", "/v1/policy/engine"): (own_put_engine, cross_put_engine),
    ("DELETE", "/v1/policy/engine"): (own_delete_engine, cross_delete_engine),
    ("PUT", "/v1/policy"): (own_put_policy, cross_put_policy),
    ("POST", "/v1/events"): (own_event, cross_event),
    ("POST", "/v1/events:batch"): (own_batch, cross_batch),
    ("GET", "/v1/whoami"): (own_whoami, cross_whoami),
    ("GET", "/v1/verdicts/{event_id}"): (own_verdict, cross_verdict),
    ("GET", "/v1/approvals"): (own_approvals, cross_approvals),
    ("GET", "/v1/decisions:stream"): (own_decisions, cross_decisions),
    ("POST", "/v1/approvals/{event_id}"): (own_decide, cross_decide),
    ("POST", "/v1/agents"): (own_register, cross_register),
    ("GET", "/v1/agents"): (own_agents, cross_agents),
    ("GET", "/v1/agents/{agent_id}"): (own_agent, cross_agent),
    ("POST", "/v1/agents/{agent_id}/secret:rotate"): (own_rotate_secret, cross_rotate_secret),
    ("POST", "/v1/projects/current/keys:rotate"): (own_rotate_key, cross_rotate_key),
    ("GET", "/v1/audit"): (own_audit, cross_audit),
    ("POST", "/v1/webhooks"): (own_add_webhook, cross_add_webhook),
    ("GET", "/v1/webhooks"): (own_webhooks, cross_webhooks),
    ("DELETE", "/v1/webhooks/{webhook_id}"): (own_delete_webhook, cross_delete_webhook),
    ("POST", "/v1/signup/tokens"): _public("POST", "/v1/signup/tokens", 201),
    ("POST", "/v1/signup"): (own_signup, cross_signup),
    ("GET", "/healthz"): _public("GET", "/healthz", 200),
    ("GET", "/readyz"): _public("GET", "/readyz", 200),
    ("GET", "/metrics"): _public("GET", "/metrics", 200),
    ("GET", "/openapi.json"): _public("GET", "/openapi.json", 200),
}


def _served_routes(settings: Settings) -> set[tuple[str, str]]:
    app = build_app(settings)
    return {(r.method, r.resource.canonical) for r in app.router.routes()
            if r.resource is not None and r.method != "HEAD"}


def test_matrix_covers_every_route() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0", kafka_bootstrap="127.0.0.1:1")
    served = _served_routes(settings)
    missing = served - set(MATRIX)
    assert not missing, f"routes without a tenant-isolation row: {sorted(missing)}"
    assert set(MATRIX) == served, f"rows for routes no longer served: {set(MATRIX) - served}"


@pytest.mark.parametrize("route", sorted(MATRIX), ids=lambda r: f"{r[0]} {r[1]}")
async def test_route_is_isolated(gateway: Gateway, route: tuple[str, str]) -> None:
    own, cross = MATRIX[route]
    w = await _world(gateway)
    await cross(w)  # first, while B's data is pristine
    await _b_untouched(w)
    await own(w)
    await _b_untouched(w)
