"""The seven guardrails through the real engine on a real Redis (``Engine.decide``).

For each guardrail: cases that must trigger and near misses that must not, with the state kept
in Redis across batches. Then what the engine promises around them: strictest action with every
reason, never the matched secret in the verdict, guardrails in shadow mode, protected learning
of guard-paused events, no double counting of redelivered event ids, and one guardrails script
call per agent per batch.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from models.events import IngestEvent, parse_event
from models.guardrails import parse_policy_toml
from models.verdict import Verdict
from ratchet.engine.engine import Engine
from ratchet.store.keys import Keys
from ratchet.store.policies import FixedPolicy

pytestmark = pytest.mark.asyncio

T0 = 1_780_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def make_engine(
    redis_client: aioredis.Redis, keys: Keys
) -> AsyncIterator[Any]:
    def make(policy_toml: str = "", clock: Clock | None = None) -> Engine:
        engine = Engine.create(
            redis_client, keys=keys, policies=FixedPolicy(parse_policy_toml(policy_toml))
        )
        engine.clock = clock or Clock()
        return engine

    yield make


def ev(
    i: int = 0,
    *,
    run: str = "r1",
    agent: str = "a1",
    service: str = "crm",
    action: str = "op.read",
    payload: dict[str, Any] | None = None,
    **extra: Any,
) -> IngestEvent:
    body: dict[str, Any] = {
        "event_id": f"{agent}-{run}-{i}-{uuid.uuid4().hex[:8]}",
        "agent_id": agent,
        "run_id": run,
        "service": service,
        "action": action,
        "payload": {"id": i} if payload is None else payload,
        **extra,
    }
    return parse_event(body, "p1")


def rules(v: Verdict, guardrail: str | None = None) -> list[str]:
    return [
        str(r.detail["rule"]) for r in v.reasons
        if r.source.startswith("guardrail:")
        and (guardrail is None or r.source == f"guardrail:{guardrail}")
    ]


# --- velocity ---------------------------------------------------------------------------------

async def test_velocity_per_run_and_per_agent(make_engine: Any) -> None:
    clock = Clock()
    engine = make_engine(
        "[guardrails.velocity]\naction = 'pause'\n"
        "per_run = { window_s = 60, limit = 3 }\nper_agent = { window_s = 60, limit = 5 }\n",
        clock,
    )
    first = await engine.decide([ev(i) for i in range(3)])
    assert [rules(v, "velocity") for v in first] == [[], [], []]  # at the limit: fine
    [fourth] = await engine.decide([ev(3)])  # a later batch: the count is kept in Redis
    assert rules(fourth, "velocity") == ["velocity.per_run"] and fourth.action == "pause"
    detail = next(r.detail for r in fourth.reasons if r.source == "guardrail:velocity")
    assert (detail["count"], detail["limit"], detail["window_s"]) == (4, 3, 60)
    # another run of the same agent: per-run fresh, per-agent 5 → 6
    other = await engine.decide([ev(0, run="r2")])
    assert rules(other[0], "velocity") == []
    [sixth] = await engine.decide([ev(1, run="r2")])
    assert rules(sixth, "velocity") == ["velocity.per_agent"]
    # another agent is counted apart
    assert rules((await engine.decide([ev(0, agent="a2")]))[0], "velocity") == []


async def test_velocity_window_slides(make_engine: Any) -> None:
    clock = Clock()
    engine = make_engine("[guardrails.velocity]\nper_run = { window_s = 60, limit = 2 }\n", clock)
    await engine.decide([ev(0), ev(1)])
    clock.now += 30
    assert rules((await engine.decide([ev(2)]))[0], "velocity") == ["velocity.per_run"]
    clock.now += 61  # the first three are out of the window now
    assert rules((await engine.decide([ev(3)]))[0], "velocity") == []


# --- loop breaker -----------------------------------------------------------------------------

async def test_loop_same_node_with_varying_arguments(make_engine: Any) -> None:
    engine = make_engine("[guardrails.loop]\naction = 'reject'\nmax_repeats = 3\n")
    calls = [ev(i, payload={"path": f"/tmp/f{i}", "n": i}) for i in range(3)]
    assert [rules(v, "loop") for v in await engine.decide(calls)] == [[], [], []]
    [looping] = await engine.decide([ev(3, payload={"path": "/etc/other", "n": 99})])
    assert rules(looping, "loop") == ["loop.same_node"] and looping.action == "reject"
    # near miss: three repeats then another call shape
    engine2 = make_engine("[guardrails.loop]\nmax_repeats = 3\n")
    run = [ev(i, run="rx", payload={"n": i}) for i in range(3)]
    run.append(ev(3, run="rx", action="mail.send", payload={"n": 3}))
    assert all(rules(v, "loop") == [] for v in await engine2.decide(run))


async def test_loop_short_cycle(make_engine: Any) -> None:
    engine = make_engine("[guardrails.loop]\nmax_repeats = 5\nmax_cycle_repeats = 2\n")

    def step(i: int) -> IngestEvent:
        if i % 2 == 0:
            return ev(i, action="files.list", payload={"dir": f"/d{i}"})
        return ev(i, action="files.read", payload={"file": f"/f{i}", "offset": i})

    verdicts = await engine.decide([step(i) for i in range(4)])  # (A B) twice: at the bound
    verdicts += await engine.decide([step(4)])
    assert [rules(v, "loop") for v in verdicts] == [[]] * 5
    [sixth] = await engine.decide([step(5)])  # (A B) three times
    assert rules(sixth, "loop") == ["loop.cycle"]


# --- pattern ----------------------------------------------------------------------------------

PATTERN = """
[guardrails.pattern]
builtin_rules = false
[guardrails.pii]
detectors = ["email", "secret"]
[[guardrails.pattern.rules]]
id = "sql-drop"
paths = ["sql", "**.sql"]
regex = '(?i)\\bdrop\\s+table\\b'
action = "reject"
"""


async def test_pattern_rule_on_selected_paths(make_engine: Any) -> None:
    engine = make_engine(PATTERN)
    hit, nested, near, elsewhere = await engine.decide([
        ev(0, payload={"sql": "select 1; DROP  TABLE users"}),
        ev(1, payload={"job": {"sql": "drop table t"}}),
        ev(2, payload={"sql": "select * from dropped_tables"}),
        ev(3, payload={"comment": "drop table users"}),  # a path the rule does not select
    ])
    assert rules(hit, "pattern") == ["pattern.sql-drop"] and hit.action == "reject"
    detail = next(r.detail for r in hit.reasons if r.source == "guardrail:pattern")
    assert detail["paths"] == ["sql"]
    assert rules(nested, "pattern") == ["pattern.sql-drop"]
    assert rules(near, "pattern") == [] and rules(elsewhere, "pattern") == []


# --- PII --------------------------------------------------------------------------------------

async def test_pii_realistic_payloads(make_engine: Any) -> None:
    engine = make_engine("[guardrails.pii.detector_actions]\nsecret = 'reject'\n")
    card, bad_luhn, order, key = await engine.decide([
        ev(0, payload={"customer": {"name": "Ada", "card_number": "4111 1111 1111 1111"}}),
        ev(1, payload={"customer": {"name": "Ada", "card_number": "4111 1111 1111 1112"}}),
        ev(2, payload={"order_id": "ord_8842", "sku": "sku_1932", "qty": 3,
                       "sha": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                       "created": "2026-11-29T15:00:00Z", "total": 129.95}),
        ev(3, payload={"env": {"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE"}}),
    ])
    assert rules(card, "pii") == ["pii.card"]
    card_detail = next(r.detail for r in card.reasons if r.source == "guardrail:pii")
    assert card_detail["paths"] == ["customer.card_number"]
    assert rules(bad_luhn, "pii") == [] and rules(order, "pii") == []
    assert rules(key, "pii") == ["pii.secret"] and key.action == "reject"


async def test_secret_never_in_the_verdict(make_engine: Any) -> None:
    secret = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    engine = make_engine(PATTERN.replace("[guardrails.pii]\n", "[guardrails.pii]\naction = 'pause'\n"))
    [v] = await engine.decide([ev(0, payload={"auth": {"token": secret}, "sql": "drop table x"})])
    text = orjson.dumps(v.to_dict()).decode()
    assert "pii.secret" in text and "auth.token" in text and "sql-drop" in text
    assert secret not in text and secret[4:20] not in text
    assert "drop table x" not in text  # a pattern match is explained by rule and path too


# --- cost -------------------------------------------------------------------------------------

async def test_cost_per_run_and_per_agent_day(make_engine: Any) -> None:
    engine = make_engine(
        "[guardrails.cost]\nper_run_limit = 5.0\nper_agent_daily_limit = 8.0\n"
        "[guardrails.cost.by_priority.critical]\naction = 'reject'\n"
    )
    a, b = await engine.decide([ev(0, cost=2.5), ev(1, cost=2.5)])
    assert rules(a, "cost") == [] and rules(b, "cost") == []  # 5.0: at the limit
    [c] = await engine.decide([ev(2, cost=0.01)])
    assert rules(c, "cost") == ["cost.per_run"] and c.action == "flag"
    # another run: per-run sum fresh, the agent's day is at 5.01 + 3.0 = 8.01 > 8
    [d] = await engine.decide([ev(0, run="r2", cost=3.0, priority="critical")])
    assert rules(d, "cost") == ["cost.per_agent_daily"] and d.action == "reject"
    [e] = await engine.decide([ev(0, agent="a2", cost=4.0)])
    assert rules(e, "cost") == []


# --- sequence entropy -------------------------------------------------------------------------

async def test_sequence_entropy(make_engine: Any) -> None:
    engine = make_engine("[guardrails.entropy]\nwindow = 8\nmin_events = 8\nmax_bits = 2.5\n")
    fuzz = [ev(i, run="fuzz", payload={f"k{i}": i}) for i in range(8)]  # 8 shapes: 3 bits
    calm = [ev(i, run="calm", payload={"a": i} if i % 2 else {"b": i}) for i in range(8)]
    early = [ev(i, run="early", payload={f"k{i}": i}) for i in range(7)]
    fv = await engine.decide(fuzz[:4])
    fv += await engine.decide(fuzz[4:])
    assert [bool(rules(v, "entropy")) for v in fv] == [False] * 7 + [True]
    assert all(rules(v, "entropy") == [] for v in await engine.decide(calm + early))


# --- media ------------------------------------------------------------------------------------

async def test_media_blob_and_mime(make_engine: Any) -> None:
    engine = make_engine("[guardrails.media]\naction = 'pause'\nmax_blob_bytes = 4096\n")
    big = base64.b64encode(bytes(range(256)) * 20).decode()  # 5120 bytes decoded
    small = base64.b64encode(bytes(range(256)) * 8).decode()  # 2048 bytes
    blob, ok_blob, exe, png = await engine.decide([
        ev(0, payload={"attachment": {"data": big}}),
        ev(1, payload={"attachment": {"data": small}}),
        ev(2, payload={"file": {"mime_type": "application/x-msdownload", "name": "a.exe"}}),
        ev(3, payload={"file": {"mime_type": "image/png", "name": "a.png"}}),
    ])
    assert rules(blob, "media") == ["media.blob"] and blob.action == "pause"
    assert rules(ok_blob, "media") == []
    assert rules(exe, "media") == ["media.mime"] and rules(png, "media") == []
    assert big[:64] not in orjson.dumps(blob.to_dict()).decode()


# --- how guardrails combine with the chain --------------------------------------------------

async def test_strictest_action_and_every_reason(make_engine: Any) -> None:
    engine = make_engine(PATTERN)  # pii email: flag (default); pattern: reject
    [v] = await engine.decide([ev(0, payload={"sql": "DROP TABLE a", "to": "bob@example.com"})])
    assert v.mode == "shadow" and v.action == "reject"  # a shadow agent is still protected
    sources = [r.source for r in v.reasons]
    assert sources[0] == "markov" and {"guardrail:pattern", "guardrail:pii"} <= set(sources)
    assert {r.action for r in v.reasons} == {"allow", "flag", "reject"}


async def test_guard_paused_event_is_not_learned(make_engine: Any) -> None:
    engine = make_engine(PATTERN)
    clean, bad = await engine.decide([
        ev(0, payload={"sql": "select 1"}), ev(1, action="db.exec", payload={"sql": "drop table t"})
    ])
    assert bad.action == "reject" and bad.held and not clean.held
    counts = await engine.store.edge_counts(bad.chain_tag)
    assert f"{clean.edge.from_node}\t{clean.edge.to_node}" in counts
    assert f"{bad.edge.from_node}\t{bad.edge.to_node}" not in counts


async def test_redelivered_events_are_not_counted_twice(
    make_engine: Any, redis_client: aioredis.Redis, keys: Keys
) -> None:
    engine = make_engine(
        "[guardrails.velocity]\nper_run = { window_s = 60, limit = 3 }\n"
        "[guardrails.cost]\nper_run_limit = 10.0\n[guardrails.loop]\nmax_repeats = 3\n"
    )
    batch = [ev(i, cost=3.0) for i in range(4)]
    first = await engine.decide(batch)
    again = await engine.decide(batch[1:] + [ev(4, cost=3.0)])  # redelivery + one new event
    assert [v.duplicate for v in again] == [True, True, True, False]
    for old, new in zip(first[1:], again[:3], strict=True):
        assert rules(old) == rules(new) and old.action == new.action
    # the new event is the 5th of the run, not the 8th
    detail = {r.detail["rule"]: r.detail for r in again[3].reasons if "rule" in r.detail}
    assert detail["velocity.per_run"]["count"] == 5
    assert detail["cost.per_run"]["total"] == pytest.approx(15.0)
    assert detail["loop.same_node"]["repeats"] == 5
    tag = keys.guard_tag("p1", "a1")
    state = await redis_client.hget(keys.guard_run_keys(tag, "r1").state, "n")
    assert state == b"5"


async def test_one_guardrails_call_per_agent_per_batch(
    make_engine: Any, redis_client: aioredis.Redis
) -> None:
    engine = make_engine()

    async def evalsha_calls() -> int:
        stats = await redis_client.info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))

    await engine.decide([ev(0)])  # scripts loaded
    before = await evalsha_calls()
    batch = [ev(i, run=f"r{i % 5}") for i in range(60)]  # one agent, one chain, 5 runs
    await engine.decide(batch)
    assert await evalsha_calls() - before == 2  # one guardrails call + one observe call
    before = await evalsha_calls()
    await engine.decide([ev(i, agent=f"x{i % 3}") for i in range(30)])  # 3 agents, 3 chains
    # + one node-label call per new chain, in the same pipeline as its observe call
    assert await evalsha_calls() - before == 6 + 3
    before = await evalsha_calls()
    await engine.decide([ev(i, agent=f"x{i % 3}") for i in range(30, 60)])  # labelled already
    assert await evalsha_calls() - before == 6


async def test_replay_time_uses_event_timestamps(redis_client: aioredis.Redis, keys: Keys) -> None:
    policy = parse_policy_toml("[guardrails.velocity]\nper_run = { window_s = 10, limit = 2 }\n")
    engine = Engine.create(redis_client, keys=keys, policies=FixedPolicy(policy), event_time=True)
    spread = [ev(i, run="slow", ts=T0 + 6 * i) for i in range(5)]  # one event every 6 s
    burst = [ev(i, run="fast", ts=T0 + 0.1 * i) for i in range(3)]
    verdicts = await engine.decide(spread + burst)
    assert [rules(v, "velocity") for v in verdicts[:5]] == [[]] * 5
    assert rules(verdicts[-1], "velocity") == ["velocity.per_run"]


async def test_same_event_id_twice_in_one_batch(
    make_engine: Any, redis_client: aioredis.Redis, keys: Keys
) -> None:
    engine = make_engine("[guardrails.velocity]\nper_run = { window_s = 60, limit = 1 }\n")
    first, second = ev(0), ev(1)
    verdicts = await engine.decide([first, first, second])
    assert [v.duplicate for v in verdicts] == [False, True, False]
    assert [rules(v, "velocity") for v in verdicts] == [[], [], ["velocity.per_run"]]
    detail = next(r.detail for r in verdicts[2].reasons if r.source == "guardrail:velocity")
    assert detail["count"] == 2
    tag = keys.guard_tag("p1", "a1")
    assert await redis_client.hget(keys.guard_run_keys(tag, "r1").state, "n") == b"2"
