"""All seven guardrails through the whole pipeline: a policy PUT over HTTP, signed events
through the gateway, Kafka and a worker child process, verdicts with guardrail reasons."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from typing import Any

import pytest

from tests.integration.pipeline_support import (
    Stack,
    worker_ready,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

POLICY = """
[guardrails.velocity.by_service.burst.per_run]
limit = 4
[guardrails.loop]
max_repeats = 3
[guardrails.entropy]
window = 8
min_events = 8
max_bits = 2.5
[guardrails.cost]
per_run_limit = 5.0
[guardrails.pii.detector_actions]
secret = "reject"
[guardrails.media]
max_blob_bytes = 1024
[[guardrails.pattern.rules]]
id = "sql-grant"
paths = ["sql"]
regex = '(?i)\\bgrant\\s+all\\b'
action = "pause"
"""

SECRET = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"


def _ev(run: str, payload: dict[str, Any], *, service: str = "tools", action: str = "call",
        **extra: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "run_id": run, "service": service, "action": action,
            "payload": payload, **extra}


def _traffic() -> dict[str, list[dict[str, Any]]]:
    blob = base64.b64encode(bytes(range(256)) * 8).decode()
    return {
        "velocity": [_ev("vel", {f"k{i % 2}": i}, service="burst") for i in range(5)],
        "loop": [_ev("loop", {"path": f"/f{i}"}) for i in range(4)],
        "entropy": [_ev("ent", {f"field{i}": i}) for i in range(8)],
        "cost": [_ev("cost", {"q": "a"}, cost=3.0), _ev("cost", {"n": 1}, cost=3.0)],
        "pattern": [_ev("pat", {"sql": "GRANT ALL ON prod TO public"})],
        "pii": [_ev("pii", {"config": {"stripe_key": SECRET}})],
        "media": [_ev("media", {"image": {"data": blob}})],
    }


async def test_seven_guardrails_through_the_pipeline(stack: Stack) -> None:
    await worker_ready(stack)
    put = await stack.client.put_policy(POLICY)
    assert put.status == 200 and put.body["version"] == 1, put.body
    await asyncio.sleep(put.body["applies_within_s"] + 0.5)

    traffic = _traffic()
    events = [e for evs in traffic.values() for e in evs]
    answer = await stack.client.send_batch(events)
    assert answer.status == 200 and answer.body["accepted"] == len(events), answer.body
    got: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 30
    while len(got) < len(events):
        for e in events:
            if e["event_id"] not in got:
                found = await stack.client.verdict(e["event_id"])
                if found.status == 200:
                    got[e["event_id"]] = found.body["verdict"]
        assert time.monotonic() < deadline, stack.logs()
        await asyncio.sleep(0.1)

    def fired(e: dict[str, Any], name: str) -> list[str]:
        return [r["detail"]["rule"] for r in got[e["event_id"]]["reasons"]
                if r["source"] == f"guardrail:{name}"]

    expected = {"velocity": "velocity.per_run", "loop": "loop.same_node",
                "entropy": "entropy.sequence", "cost": "cost.per_run",
                "pattern": "pattern.sql-grant", "pii": "pii.secret", "media": "media.blob"}
    for name, evs in traffic.items():
        *before, last = evs
        assert fired(last, name) == [expected[name]], (name, got[last["event_id"]])
        assert all(fired(e, name) == [] for e in before), name  # near misses: under the bound
    actions = {name: got[evs[-1]["event_id"]]["action"] for name, evs in traffic.items()}
    assert actions == {"velocity": "flag", "loop": "flag", "entropy": "flag", "cost": "flag",
                       "pattern": "pause", "pii": "reject", "media": "flag"}
    # a chain in shadow mode (one run of its service so far) still gets the guardrail's action
    assert got[traffic["velocity"][-1]["event_id"]]["mode"] == "shadow"
    assert SECRET not in json.dumps(list(got.values()))

    # a single event on the wait path: the verdict comes back with the guardrail's action
    single = await stack.client.send(_ev("pii2", {"token": SECRET}, service="vault"), wait_ms=3000)
    assert single.status == 200, single.body
    assert single.body["verdict"]["action"] == "reject"
    assert single.body["verdict"]["mode"] == "shadow"
    assert SECRET not in json.dumps(single.body)
