"""Issue 10, finding 2: a caller's id must never name another key, and an engine error must
never be an attacker's bypass (real engine, worker processor, verdict store and Redis).

Attack: an event in run ``pr-X``, then an event in run ``pr-X:nodes`` carrying a rejected
pattern. On main ``ab1019b`` the second run's state key WAS the first run's node list
(``…:run:pr-X:nodes``): the guardrails script failed with WRONGTYPE and the worker answered
``allow`` with ``error: internal error: ResponseError``. Now ids are encoded into keys, so the
second event is rejected; and when the engine does fail (state corrupted on purpose here), the
project's ``on_error`` decides: by default ``pause`` for high/critical events, ``allow`` for the
rest, always with ``error`` set and counted in ``ratchet_error_verdicts_total``.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from models.envelope import IngestEnvelope
from models.events import IngestEvent, parse_event
from models.guardrails import parse_policy_toml
from ratchet.engine.engine import Engine
from ratchet.store.keys import Keys
from ratchet.store.policies import FixedPolicy
from ratchet.store.verdicts import VerdictStore
from streams.worker import IngestProcessor

pytestmark = pytest.mark.asyncio

POLICY = """
[[guardrails.pattern.rules]]
id = "sql-drop"
regex = '(?i)\\bdrop\\s+table\\b'
action = "reject"
"""


def _ev(run: str, payload: dict[str, Any], *, priority: str = "normal",
        agent: str = "a1") -> IngestEvent:
    return parse_event({"event_id": uuid.uuid4().hex, "agent_id": agent, "run_id": run,
                        "service": "db", "action": "query", "payload": payload,
                        "priority": priority}, "p1")


def _processor(client: aioredis.Redis, keys: Keys, policy: str, *,
               on_error: bool = True) -> IngestProcessor:
    policies = FixedPolicy(parse_policy_toml(policy))
    engine = Engine.create(client, keys=keys, policies=policies)
    if not on_error:  # without the policies: on_error's default by priority
        return IngestProcessor(engine, VerdictStore(client, keys))
    return IngestProcessor(engine, VerdictStore(client, keys), policies=policies)


async def _decide(proc: IngestProcessor, events: list[IngestEvent]) -> list[dict[str, Any]]:
    env = IngestEnvelope(project_id="p1", agent_id=events[0].agent_id, trace_id="t",
                         received_at=0.0, events=tuple(events))
    await proc.process([env])
    out = []
    for ev in events:
        stored = await proc.store.get("p1", ev.event_id)
        assert stored is not None
        out.append(dict(stored))
    return out


def _errors(action: str) -> float:
    return REGISTRY.get_sample_value("ratchet_error_verdicts_total", {"action": action}) or 0.0


async def test_run_id_cannot_name_another_runs_key(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    proc = _processor(redis_client, keys, POLICY, on_error=False)
    await _decide(proc, [_ev("pr-X", {"sql": "select 1"}), _ev("pr-X", {"sql": "select 2"})])
    for suffix in (":nodes", ":win", "}:run:pr-X", ":run:pr-X"):
        v, = await _decide(proc, [_ev("pr-X" + suffix, {"sql": "DROP TABLE users"})])
        assert v["action"] == "reject" and not v.get("error"), (suffix, v)
    # the first run's own state is intact: its next event is judged normally
    v, = await _decide(proc, [_ev("pr-X", {"sql": "DROP TABLE users"})])
    assert v["action"] == "reject" and not v.get("error"), v


async def test_engine_error_follows_on_error_never_a_silent_allow(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    async def corrupt(run: str) -> None:  # a list where the guardrails keep a string
        tag = keys.guard_tag("p1", "a1")
        await redis_client.rpush(keys.guard_run_keys(tag, run).nodes, "not a string")

    proc = _processor(redis_client, keys, POLICY, on_error=False)  # the default needs no policy
    before = {a: _errors(a) for a in ("allow", "flag", "pause")}
    await corrupt("broken")
    high, crit, normal, low = await _decide(proc, [
        _ev("broken", {"sql": "DROP TABLE users"}, priority="high"),
        _ev("broken", {"sql": "DROP TABLE users"}, priority="critical"),
        _ev("broken", {"sql": "DROP TABLE users"}, priority="normal"),
        _ev("broken", {"sql": "DROP TABLE users"}, priority="low"),
    ])
    assert [v["action"] for v in (high, crit, normal, low)] == ["pause", "pause", "allow", "allow"]
    for v in (high, crit, normal, low):
        assert v["error"] and "ResponseError" in v["error"], v
    assert _errors("pause") - before["pause"] == 2 and _errors("allow") - before["allow"] == 2
    paused = await proc.store.list_paused("p1", limit=10)  # type: ignore[attr-defined]
    assert {v["event_id"] for v in paused.verdicts} == {high["event_id"], crit["event_id"]}

    # a project's own on_error applies to every priority
    flagging = _processor(redis_client, keys, 'on_error = "flag"\n' + POLICY)
    v_high, v_low = await _decide(flagging, [
        _ev("broken", {"sql": "x"}, priority="high"), _ev("broken", {"sql": "x"}, priority="low"),
    ])
    assert (v_high["action"], v_low["action"]) == ("flag", "flag")
    assert v_high["error"] and v_low["error"]
    assert _errors("flag") - before["flag"] == 2
