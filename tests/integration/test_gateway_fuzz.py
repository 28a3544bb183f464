"""Schemathesis against the running gateway's own OpenAPI document (bounded, deterministic).

Every operation is fuzzed with schema-valid (positive) and schema-violating (negative) requests,
most of them with a real API key. Positive event bodies are re-pointed at the registered agent and
signed, as a real agent would, so the fuzzer reaches validation, replay protection and Kafka
instead of stopping at 401; negative ones are sent as generated.

Checks on every answer: no 5xx, documented status codes, content types, headers and bodies, and
schema-violating requests refused — for the batch endpoint, whose items are answered one by one,
"refused" means a 4xx or at least one rejected item. Afterwards the ingest topic holds exactly
the events the gateway answered "accepted" (replays excluded): nothing from a rejected request.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode, Response
from schemathesis.checks import (
    CheckFunction,
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from models.envelope import decode_ingest
from models.errors import RatchetError
from models.signing import sign
from ratchet.config.settings import Settings
from ratchet.sandbox.client import RatchetClient
from tests.integration.gateway_support import (
    Gateway,
    Tenant,
    event,
    make_tenant,
    own_gateway,
    read_topic,
)

pytestmark = [
    pytest.mark.kafka,
    # schemathesis' own strategies use `random`; not ours to fix
    pytest.mark.filterwarnings("ignore:Do not use the `random` module"),
]

#: Examples per operation and generation mode (10 operations × 2 modes; ~25 s here).
EXAMPLES = 20
BATCH = "/v1/events:batch"
CONFORMANCE: list[CheckFunction] = [
    not_a_server_error, status_code_conformance, content_type_conformance,
    response_headers_conformance, response_schema_conformance,
]


@dataclass
class Ledger:
    """What the gateway answered: statuses per operation, accepted event ids, replays."""

    accepted: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    replays: int = 0

    def record(self, case: Case, response: Response) -> None:
        self.statuses[(f"{case.method} {case.path}", response.status_code)] += 1
        if response.headers.get("idempotent-replayed") == ["true"]:  # lower-case keys, lists
            self.replays += 1
            return  # a replay publishes nothing
        if case.path == "/v1/events" and response.status_code in (200, 202):
            self.accepted[orjson.loads(response.content)["event_id"]] += 1
        elif case.path == BATCH and response.status_code == 200:
            for result in orjson.loads(response.content)["results"]:
                if result["status"] == "accepted":
                    self.accepted[result["event_id"]] += 1


class Agent:
    """Signs generated events with the tenant's agent credential, and follows rotations: when a
    fuzzed call rotates the project key or the agent's secret, it keeps the new one (as a real
    client would), so later cases and the canary still reach validation and Kafka."""

    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant

    def follow(self, case: Case, response: Response) -> None:
        if response.status_code != 200:
            return
        if case.path == "/v1/projects/current/keys:rotate":
            self.tenant.api_key = orjson.loads(response.content)["api_key"]
        elif case.path == "/v1/agents/{agent_id}/secret:rotate":
            body = orjson.loads(response.content)
            if body["agent_id"] == self.tenant.agent_id:
                self.tenant.secret = body["agent_secret"]

    def sign(self, ev: dict[str, Any]) -> tuple[str, int] | None:
        ev["agent_id"] = self.tenant.agent_id
        ts = int(time.time())
        try:
            sig = sign(self.tenant.secret, self.tenant.project_id, ev, ts)
        except (ValueError, TypeError, RatchetError):  # no canonical form
            return None
        return sig, ts

    def prepare(self, case: Case, credentials: int, positive: bool) -> None:
        """``credentials`` 0–6: the tenant's key; 7: none; 8: a wrong key; 9: as generated."""
        headers = dict(case.headers or {})
        if credentials <= 6:
            headers["Authorization"] = f"Bearer {self.tenant.api_key}"
        elif credentials == 7:
            headers.pop("Authorization", None)
        elif credentials == 8:
            headers["Authorization"] = "Bearer rk_not-a-key"
        case.headers = headers
        if not positive or not isinstance(case.body, dict):
            return
        if case.path == "/v1/events" and (signed := self.sign(case.body)):
            headers["X-Ratchet-Signature"], headers["X-Ratchet-Timestamp"] = (
                signed[0], str(signed[1]))
        elif case.path == BATCH:
            for item in case.body.get("events") or []:
                if isinstance(item, dict) and (signed := self.sign(item)):
                    item["signature"], item["timestamp"] = signed


def batch_refused(case: Case, response: Response) -> None:
    """A schema-violating batch is refused as a whole (4xx) or in at least one of its items."""
    if response.status_code == 200:
        body = orjson.loads(response.content)
        assert body["rejected"] >= 1, f"schema-violating batch fully accepted: {case.body!r}"
    else:
        assert 400 <= response.status_code < 500, response.status_code


def fuzz(url: str, tenant: Tenant, ledger: Ledger) -> None:
    """Blocking: runs in a thread while the gateway serves from the test's event loop."""
    schema = schemathesis.openapi.from_dict(requests.get(url + "/openapi.json", timeout=10).json())
    agent = Agent(tenant)
    session = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in STREAMS:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            positive = mode is GenerationMode.POSITIVE
            batch_negative = operation.path == BATCH and not positive
            checks = CONFORMANCE if batch_negative else [*CONFORMANCE, negative_data_rejection]

            @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                      suppress_health_check=list(HealthCheck),
                      phases=[Phase.explicit, Phase.generate, Phase.shrink])
            @given(case=operation.as_strategy(generation_mode=mode),
                   credentials=st.integers(0, 9))
            def run(case: Case, credentials: int) -> None:
                agent.prepare(case, credentials, positive)  # noqa: B023  (run() runs in this iteration)
                response = case.call(base_url=url, session=session, timeout=15)
                agent.follow(case, response)
                ledger.record(case, response)
                case.validate_response(response, checks=checks)  # noqa: B023  (as above)
                if batch_negative:  # noqa: B023  (as above)
                    batch_refused(case, response)

            try:
                run()
            except Unsatisfiable:  # nothing to violate: no parameters and no body
                assert not positive, operation.label
    session.close()


DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
#: Streaming operations answer for minutes by design (a fuzzer reads bodies to the end): they have
#: their own tests (test_decisions_stream.py), including their 400s.
STREAMS = ("/v1/decisions:stream",)


@pytest.fixture
async def gateway(gw_settings: Settings) -> AsyncIterator[Gateway]:
    """The fuzzer sends a wrong key one time in ten: the per-address lockout (tested in
    test_gateway_attacks.py) would turn the rest of the run into 429s, so it is set out of reach."""
    async with own_gateway(gw_settings.replace(auth_failure_limit=10**9)) as gw:
        yield gw


@pytest.fixture
async def tenant(gateway: Gateway) -> AsyncIterator[Tenant]:
    t = await make_tenant(gateway)
    try:
        yield t
    finally:
        await t.client.close()


async def test_fuzz_the_gateway_against_its_openapi(gateway: Gateway, tenant: Tenant) -> None:
    ledger = Ledger()
    await asyncio.to_thread(fuzz, gateway.url, tenant, ledger)
    operations = {op for op, _ in ledger.statuses}
    documented = json.loads(DOC.read_text())["paths"]
    expected = {f"{m.upper()} {p}" for p, ops in documented.items() for m in ops
                if p not in STREAMS}
    assert operations == expected, expected ^ operations  # every documented operation exercised
    assert not [k for k in ledger.statuses if k[1] >= 500], ledger.statuses
    assert sum(ledger.accepted.values()) >= 10, ledger  # the fuzzer reached Kafka

    # the gateway still serves, and the topic holds exactly what it answered "accepted"
    canary = event()
    client = RatchetClient(gateway.url, tenant.api_key, tenant.agent_id, tenant.secret,
                           project_id=tenant.project_id)
    try:
        assert (await client.send(canary)).status == 202
    finally:
        await client.close()
    ledger.accepted[canary["event_id"]] += 1
    records = await read_topic(gateway.settings.kafka_bootstrap or "",
                               gateway.settings.topic_ingest, idle_s=1.0)
    published = Counter(e.event_id for r in records for e in decode_ingest(r.value or b"").events)
    assert published == ledger.accepted
