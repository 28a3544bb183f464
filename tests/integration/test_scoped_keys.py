"""Role-scoped API keys through a real gateway, Redis and Tansu (issue 10, design change).

An ingest key held by an agent sends that agent's events and reads their verdicts — and cannot
approve its own paused action, register agents, change policy or read the audit log. Keys are
made, listed, rotated and revoked over the API and the CLI; project keys made before roles keep
working as admin keys; approvals name the admin key that approved.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import aiohttp
import pytest

from ratchet.platform.provisioning import create_agent, hash_api_key
from ratchet.sandbox.client import RatchetClient
from tests.integration.gateway_support import (
    FakeWorker,
    Gateway,
    Tenant,
    event,
)

pytestmark = pytest.mark.kafka


async def call(gw: Gateway, method: str, path: str, key: str, body: Any = None
               ) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(
        method, gw.url + path, json=body, headers={"Authorization": f"Bearer {key}"}
    ) as resp:
        text = await resp.text()
        return resp.status, (await resp.json() if text else None)


async def new_key(gw: Gateway, admin: str, **body: Any) -> dict[str, Any]:
    status, made = await call(gw, "POST", "/v1/keys", admin, body)
    assert status == 201, made
    assert made["api_key"].startswith("rk_") and made["key_id"] == hash_api_key(
        made["api_key"])[:12]
    return dict(made)


async def test_an_agent_ingest_key_cannot_approve_its_own_paused_action(
    gateway: Gateway, tenant: Tenant
) -> None:
    _, other_secret = await create_agent(gateway.redis, gateway.keys, tenant.project_id, "bot-b")
    ingest = (await new_key(gateway, tenant.api_key, role="ingest",
                            agent_id=tenant.agent_id))["api_key"]
    agent = RatchetClient(gateway.url, ingest, tenant.agent_id, tenant.secret,
                          project_id=tenant.project_id)
    other = RatchetClient(gateway.url, tenant.api_key, "bot-b", other_secret,
                          project_id=tenant.project_id)
    impostor = RatchetClient(gateway.url, ingest, "bot-b", other_secret,
                             project_id=tenant.project_id)
    try:
        async with FakeWorker(gateway.settings, gateway.redis):
            paused = event(tenant.agent_id, payload={"decide": "pause"})
            got = await agent.send(paused, wait_ms=3000)
            assert got.status == 200 and got.body["verdict"]["action"] == "pause", got.body
            assert (await agent.verdict(paused["event_id"])).status == 200
            # the headline attack: the agent approves its own paused action
            refused = await agent.decide(paused["event_id"], "approve")
            assert refused.status == 403 and refused.body["error"] == "forbidden"
            assert [v["event_id"] for v in (await tenant.client.approvals()).body["items"]] == \
                [paused["event_id"]]
            for method, path, body in (("POST", "/v1/agents", {"agent_id": "fresh"}),
                                       ("PUT", "/v1/policy", {"toml": "version = 1\n"}),
                                       ("GET", "/v1/audit", None), ("GET", "/v1/keys", None),
                                       ("POST", "/v1/keys", {"role": "admin"}),
                                       ("GET", "/v1/approvals", None)):
                status, answer = await call(gateway, method, path, ingest, body)
                assert status == 403 and "ingest" in answer["message"], (path, answer)
            # another agent's events: refused alone and per item in a batch
            theirs = event("bot-b")
            got = await impostor.send(theirs)
            assert got.status == 403 and got.body["field"] == "agent_id", got.body
            mixed = [impostor.signed(event("bot-b")), agent.signed(event(tenant.agent_id))]
            got = await agent.post_signed(mixed)
            assert got.status == 200 and got.body["accepted"] == 1, got.body
            assert got.body["results"][0]["error"]["error"] == "forbidden"
            # and another agent's verdicts look like verdicts that do not exist
            assert (await other.send(theirs, wait_ms=3000)).status == 200
            hidden = await agent.verdict(theirs["event_id"])
            ghost = await agent.verdict("ghost-event")
            assert hidden.status == ghost.status == 404
            assert hidden.body["message"].replace(theirs["event_id"], "<id>") == \
                ghost.body["message"].replace("ghost-event", "<id>")
            # the project's own key (made before roles) is an admin key: it approves, audited
            done = await tenant.client.decide(paused["event_id"], "approve", "checked")
            assert done.status == 200, done.body
        _, log = await call(gateway, "GET", "/v1/audit?limit=1000", tenant.api_key)
        approved = [e for e in log["items"] if e["action"] == "approval.approved"]
        admin_id = hash_api_key(tenant.api_key)[:12]
        assert len(approved) == 1 and approved[0]["actor"] == f"apikey:{admin_id}"
        assert approved[0]["details"]["key_id"] == admin_id
        assert approved[0]["details"]["key_role"] == "admin"
    finally:
        for c in (agent, other, impostor):
            await c.close()


async def test_a_project_ingest_key_serves_every_agent(gateway: Gateway, tenant: Tenant) -> None:
    _, other_secret = await create_agent(gateway.redis, gateway.keys, tenant.project_id, "bot-b")
    ingest = (await new_key(gateway, tenant.api_key, role="ingest"))["api_key"]
    status, who = await call(gateway, "GET", "/v1/whoami", ingest)
    assert status == 200 and who["role"] == "ingest" and who["agent_id"] is None
    clients = [RatchetClient(gateway.url, ingest, tenant.agent_id, tenant.secret,
                             project_id=tenant.project_id),
               RatchetClient(gateway.url, ingest, "bot-b", other_secret,
                             project_id=tenant.project_id)]
    try:
        async with FakeWorker(gateway.settings, gateway.redis):
            for c in clients:
                ev = event(c.agent_id)
                assert (await c.send(ev, wait_ms=3000)).status == 200
                assert (await clients[0].verdict(ev["event_id"])).status == 200
    finally:
        for c in clients:
            await c.close()


async def test_keys_are_made_listed_rotated_and_revoked(gateway: Gateway, tenant: Tenant) -> None:
    admin = tenant.api_key
    for body, field in (({"role": "owner"}, "role"), ({"role": "admin", "agent_id": "agent-1"},
                                                      "agent_id"),
                        ({"role": "ingest", "project_id": "prj_other"}, "project_id")):
        status, answer = await call(gateway, "POST", "/v1/keys", admin, body)
        assert status == 400 and answer["field"] == field, answer
    status, answer = await call(gateway, "POST", "/v1/keys", admin,
                                {"role": "ingest", "agent_id": "ghost"})
    assert status == 404
    ingest = await new_key(gateway, admin, role="ingest", agent_id=tenant.agent_id)
    second = await new_key(gateway, admin, role="admin")
    _, listed = await call(gateway, "GET", "/v1/keys", admin)
    assert [(k["role"], k["agent_id"], k["primary"]) for k in listed["items"]] == [
        ("admin", None, True), ("ingest", tenant.agent_id, False), ("admin", None, False)]
    assert "rk_" not in str(listed)

    # rotate the ingest key: the old one stops at once, the new one has the same grant
    status, rotated = await call(gateway, "POST", f"/v1/keys/{ingest['key_id']}:rotate", admin)
    assert status == 200 and rotated["revoked"] == ingest["key_id"], rotated
    assert (await call(gateway, "GET", "/v1/whoami", ingest["api_key"]))[0] == 401
    status, who = await call(gateway, "GET", "/v1/whoami", rotated["api_key"])
    assert status == 200 and (who["role"], who["agent_id"]) == ("ingest", tenant.agent_id)
    assert (await call(gateway, "GET", "/v1/audit", rotated["api_key"]))[0] == 403

    # a scoped admin key rotates itself with keys:rotate, like the project key does
    status, self_rotated = await call(gateway, "POST", "/v1/projects/current/keys:rotate",
                                      second["api_key"])
    assert status == 200 and self_rotated["key_id"] != second["key_id"]
    assert (await call(gateway, "GET", "/v1/whoami", second["api_key"]))[0] == 401
    second_key = self_rotated["api_key"]
    assert (await call(gateway, "GET", "/v1/audit", second_key))[0] == 200

    # revoke: 204, then 401; the project key is rotated, never revoked
    status, _ = await call(gateway, "DELETE", f"/v1/keys/{rotated['key_id']}", second_key)
    assert status == 204
    assert (await call(gateway, "GET", "/v1/whoami", rotated["api_key"]))[0] == 401
    assert (await call(gateway, "DELETE", f"/v1/keys/{rotated['key_id']}", second_key))[0] == 404
    primary_id = hash_api_key(admin)[:12]
    status, answer = await call(gateway, "DELETE", f"/v1/keys/{primary_id}", second_key)
    assert status == 409 and "rotated" in answer["message"]
    status, new_primary = await call(gateway, "POST", f"/v1/keys/{primary_id}:rotate", second_key)
    assert status == 200 and new_primary["primary"] is True
    assert (await call(gateway, "GET", "/v1/whoami", admin))[0] == 401
    assert (await call(gateway, "GET", "/v1/keys", new_primary["api_key"]))[0] == 200
    assert (await call(gateway, "GET", "/v1/keys/zz:rotate", second_key))[0] == 405

    _, log = await call(gateway, "GET", "/v1/audit?limit=1000", second_key)
    actions = [e["action"] for e in log["items"]]
    assert actions.count("key.created") == 2 and actions.count("key.rotated") == 3
    assert actions.count("key.revoked") == 1
    for secret in (ingest["api_key"], second["api_key"], rotated["api_key"], second_key,
                   new_primary["api_key"], admin):
        assert secret not in str(log)


def _ratchet(args: list[str], redis_url: str, prefix: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    env.update({"RATCHET_REDIS_URL": redis_url, "RATCHET_KEY_PREFIX": prefix})
    return subprocess.run([sys.executable, "-m", "ratchet", *args], capture_output=True,
                          text=True, env=env, timeout=60, check=False)


def _field(out: str, name: str) -> str:
    for line in out.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} not in {out!r}")


async def test_keys_from_the_cli(gateway: Gateway, tenant: Tenant) -> None:
    url, prefix = gateway.settings.redis_url or "", gateway.keys.prefix
    made = _ratchet(["keys", "create", "--project", tenant.project_id, "--role", "ingest",
                     "--agent-id", tenant.agent_id], url, prefix)
    assert made.returncode == 0, made.stderr
    assert "shown once" in made.stderr
    key, key_id = _field(made.stdout, "api_key"), _field(made.stdout, "key_id")
    status, who = await call(gateway, "GET", "/v1/whoami", key)
    assert status == 200 and who["role"] == "ingest" and who["key_id"] == key_id
    listed = _ratchet(["keys", "list", "--project", tenant.project_id], url, prefix)
    assert listed.returncode == 0 and key_id in listed.stdout and key not in listed.stdout
    rotated = _ratchet(["keys", "rotate", "--project", tenant.project_id, "--key-id", key_id],
                       url, prefix)
    assert rotated.returncode == 0, rotated.stderr
    new = _field(rotated.stdout, "api_key")
    assert (await call(gateway, "GET", "/v1/whoami", key))[0] == 401
    assert (await call(gateway, "GET", "/v1/whoami", new))[0] == 200
    revoked = _ratchet(["keys", "revoke", "--project", tenant.project_id, "--key-id",
                        _field(rotated.stdout, "key_id")], url, prefix)
    assert revoked.returncode == 0, revoked.stderr
    assert (await call(gateway, "GET", "/v1/whoami", new))[0] == 401
    bad = _ratchet(["keys", "create", "--project", tenant.project_id, "--role", "ingest",
                    "--agent-id", f"ghost-{uuid.uuid4().hex[:6]}"], url, prefix)
    assert bad.returncode == 2 and "no agent" in bad.stderr
