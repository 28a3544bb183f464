"""``ratchet approvals``: the paused-events queue from a terminal, against a real gateway
(in-process, real Redis and Tansu; ``FakeWorker`` plays the worker), the command run as a child
process as a user runs it."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from models.envelope import decode_feedback
from ratchet.platform.api_keys import create_key
from tests.integration.cli_support import ratchet_cli
from tests.integration.gateway_support import (
    FakeWorker,
    Gateway,
    Tenant,
    event,
    make_tenant,
    read_topic,
)

pytestmark = pytest.mark.kafka


async def _cli(args: list[str], gateway: Gateway, key: str | None
               ) -> subprocess.CompletedProcess[str]:
    env = {"RATCHET_GATEWAY_URL": gateway.url}
    if key is not None:
        env["RATCHET_ADMIN_KEY"] = key
    # a thread: the gateway answers on this test's event loop
    return await asyncio.to_thread(ratchet_cli, ["approvals", *args], env)


async def _paused(gateway: Gateway, tenant: Tenant, n: int) -> list[str]:
    async with FakeWorker(gateway.settings, gateway.redis):
        paused = [event(payload={"decide": "pause"}, run_id=f"r{i}") for i in range(n)]
        for ev in [*paused, event()]:  # and one allowed event, never listed
            assert (await tenant.client.send(ev, wait_ms=3000)).status == 200
    return [ev["event_id"] for ev in paused]


async def test_list_show_approve_reject(gateway: Gateway, tenant: Tenant) -> None:
    ids = await _paused(gateway, tenant, 3)

    table = await _cli(["list"], gateway, tenant.api_key)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["EVENT", "AGENT", "RUN", "CHAIN", "MODE", "WAITING", "WHY"]
    assert [line.split()[0] for line in lines[1:]] == ids  # oldest first, allowed one absent
    assert all("markov 12.5>3.0 bits" in line for line in lines[1:])

    listed = await _cli(["list", "--format", "ids", "--limit", "2"], gateway, tenant.api_key)
    assert listed.stdout.split() == ids[:2] and "--all" in listed.stderr
    every = await _cli(["list", "--format", "json", "--all"], gateway, tenant.api_key)
    verdicts = [json.loads(line) for line in every.stdout.splitlines()]
    assert [v["event_id"] for v in verdicts] == ids
    assert {v["action"] for v in verdicts} == {"pause"}
    other_agent = await _cli(["list", "--agent", "someone-else"], gateway, tenant.api_key)
    assert other_agent.returncode == 0 and other_agent.stdout == ""
    assert "no paused events of agent someone-else" in other_agent.stderr

    shown = await _cli(["show", ids[0]], gateway, tenant.api_key)
    assert shown.returncode == 0, shown.stderr
    assert f"ratchet approvals approve|reject {ids[0]}" in shown.stdout

    approved = await _cli(["approve", ids[0], ids[1], "--reason", "new optional field"],
                          gateway, tenant.api_key)
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.splitlines() == [f"{ids[0]}: approved", f"{ids[1]}: approved"]
    rejected = await _cli(["reject", ids[2]], gateway, tenant.api_key)
    assert rejected.returncode == 0 and rejected.stdout.strip() == f"{ids[2]}: rejected"

    # decided exactly as over the API: the approval on the verdict, feedback to the workers
    looked = await tenant.client.verdict(ids[0])
    assert looked.body["approval"]["decision"] == "approve"
    assert looked.body["approval"]["reason"] == "new optional field"
    assert looked.body["approval"]["actor"].startswith("apikey:")
    records = await read_topic(gateway.settings.kafka_bootstrap or "",
                               gateway.settings.topic_feedback, expect=3)
    decided = {m.event_id: m.decision for m in (decode_feedback(r.value or b"") for r in records)}
    assert decided == {ids[0]: "approve", ids[1]: "approve", ids[2]: "reject"}
    empty = await _cli(["list"], gateway, tenant.api_key)
    assert empty.returncode == 0 and empty.stdout == "" and "no paused events" in empty.stderr
    after = await _cli(["show", ids[0]], gateway, tenant.api_key)
    assert "decided: approve by apikey:" in after.stdout and "new optional field" in after.stdout

    # a second decision, an unknown event: said per event, the others still decided, status 1
    again = await _cli(["reject", ids[0], "no-such-event"], gateway, tenant.api_key)
    assert again.returncode == 1 and again.stdout == ""
    assert f"{ids[0]}: not rejected: the gateway answered 409" in again.stderr
    assert "already approved or rejected" in again.stderr
    assert "no-such-event: not rejected: the gateway answered 404" in again.stderr
    assert "2 of 2 not rejected" in again.stderr


async def test_keys_and_gateway_refusals_say_what_to_fix(gateway: Gateway, tenant: Tenant
                                                         ) -> None:
    ids = await _paused(gateway, tenant, 1)
    missing = await _cli(["list"], gateway, None)
    assert missing.returncode == 2 and "RATCHET_ADMIN_KEY is not set" in missing.stderr
    wrong = await _cli(["list"], gateway, "rk_not-a-key")
    assert wrong.returncode == 2 and "answered 401" in wrong.stderr
    assert "current key of the project" in wrong.stderr
    _, ingest = await create_key(gateway.redis, gateway.keys, tenant.project_id, "ingest", None)
    agent_key = await _cli(["approve", ids[0]], gateway, ingest)
    assert agent_key.returncode == 1 and "answered 403" in agent_key.stderr
    assert "must be an admin key" in agent_key.stderr
    assert (await tenant.client.verdict(ids[0])).body["approval"] is None  # nothing decided

    # another project's admin key sees none of it and cannot decide it
    other = await make_tenant(gateway)
    try:
        theirs = await _cli(["list", "--format", "ids"], gateway, other.api_key)
        assert theirs.returncode == 0 and theirs.stdout == ""
        denied = await _cli(["approve", ids[0]], gateway, other.api_key)
        assert denied.returncode == 1 and "answered 404" in denied.stderr
    finally:
        await other.client.close()

    down = await asyncio.to_thread(
        ratchet_cli, ["approvals", "list", "--url", "http://127.0.0.1:9"],
        {"RATCHET_ADMIN_KEY": tenant.api_key})
    assert down.returncode == 2 and "cannot reach the gateway at http://127.0.0.1:9" in down.stderr
    bad_url = await asyncio.to_thread(
        ratchet_cli, ["approvals", "list"],
        {"RATCHET_ADMIN_KEY": tenant.api_key, "RATCHET_GATEWAY_URL": "127.0.0.1:8080"})
    assert bad_url.returncode == 2 and "RATCHET_GATEWAY_URL" in bad_url.stderr
    assert "http(s)://host[:port]" in bad_url.stderr
