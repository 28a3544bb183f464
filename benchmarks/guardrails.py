"""Cost of the full guardrail set per event, next to the engine's own cost in the same run.

    python -m benchmarks.guardrails [--events 30000] [--batch 200] [--json FILE] [--redis-url URL]

Traffic: the synthetic agents of :mod:`ratchet.sandbox.traffic` (realistic payloads: e-mails, ids,
amounts, URLs, text, nested rows), in envelope-like batches of one agent's events. Policy:
``docs/policy.example.toml`` (every guardrail on, every detector, two pattern rules).
Measured, on one redis-server (started here unless ``--redis-url``):

  * pure:        :func:`models.guardrails.evaluate` alone, one event at a time, µs of CPU per
                 event (no I/O), for the whole set, for each guardrail alone and for each PII
                 detector alone;
  * batch:       the same rules with the payload scans of a batch done together
                 (:func:`models.guardrails.batch.evaluate_batch`, what the engine runs), same
                 breakdown; each figure is the best of 3 rounds, per event and batch interleaved;
  * state:       ``lua/guardrails.lua`` through :class:`ratchet.store.guardrails.GuardStore`, one call
                 per batch (nodes precomputed): events/s, client CPU µs/event and Redis script
                 CPU µs/event (INFO commandstats);
  * guardrails:  :meth:`ratchet.engine.guard.Guardrails.check` (policy cache + Lua + rules): events/s
                 and client CPU µs/event;
  * chain:       ``Engine.decide`` with guardrails off — the engine's own cost;
  * engine:      ``Engine.decide`` with guardrails on (what a worker runs);
  * memory:      Redis bytes of one agent's and one run's guardrail state.

The ratios (guardrails / chain, engine / chain) are the result; absolute numbers move with the
machine, which here is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from benchmarks.engine import _drive, by_agent_batches
from benchmarks.report import emit
from models.events import IngestEvent, parse_event
from models.guardrails import GUARDRAILS, GuardrailState, Policy, evaluate, parse_policy_toml
from models.guardrails.batch import evaluate_batch
from models.guardrails.order import step_text
from models.guardrails.pii import DETECTOR_NAMES
from models.guardrails.values import observations
from models.nodes import node_id
from models.skeleton import skeleton_hash
from ratchet.engine.engine import Engine
from ratchet.engine.guard import Guardrails
from ratchet.sandbox.servers import redis_for
from ratchet.sandbox.traffic import generate
from ratchet.store.guardrails import GuardBatch, GuardItem, GuardStore
from ratchet.store.keys import Keys
from ratchet.store.policies import ActivePolicy, FixedPolicy

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "policy.example.toml"


def load_events(n: int) -> list[IngestEvent]:
    agents = 12
    runs = max(10, n // (agents * 8))
    raw = generate(agents=agents, runs_per_agent=runs, warmup_runs=runs, seed=11,
                   project_id="bench")
    return [parse_event(e, None, allow_offline_fields=True) for e in raw[:n]]


def only(policy: Policy, name: str) -> Policy:
    """``policy`` with every guardrail but ``name`` switched off."""
    changes = {}
    for g in GUARDRAILS:
        if g != name:
            guard = getattr(policy, g)
            changes[g] = dataclasses.replace(
                guard, base=dataclasses.replace(guard.base, enabled=False),
                by_service={}, by_priority={}, resolved={},
            )
    return dataclasses.replace(policy, **changes)


def only_pii(policy: Policy, detector: str) -> Policy:
    """``policy`` with only the PII guardrail on, and only ``detector`` in it."""
    pii = only(policy, "pii")
    guard = pii.pii
    one = dataclasses.replace(guard.base, detectors=(detector,))
    return dataclasses.replace(pii, pii=dataclasses.replace(
        guard, base=one, by_service={}, by_priority={}, resolved={}))


def rich_nodes(events: Sequence[IngestEvent]) -> list[str]:
    return [node_id(skeleton_hash(e.payload), service=e.service, action=e.action, rich=True)
            for e in events]


def _states(nodes: Sequence[str]) -> list[GuardrailState]:
    """A state with a full history of the run, per event."""
    history = [nodes[(i * 7) % len(nodes)] for i in range(64)]
    return [GuardrailState(node=n, run_nodes=tuple(history), run_events=30,
                           agent_events_in_window=40, run_events_in_window=12,
                           run_cost=3.5, agent_daily_cost=40.0) for n in nodes]


def pure_cost(policy: Policy, events: Sequence[IngestEvent], nodes: Sequence[str]) -> float:
    """CPU µs per event of the rules alone, one event at a time (the reference path)."""
    states = _states(nodes)
    started = time.process_time()
    for ev, st in zip(events, states, strict=True):
        evaluate(policy, ev, st)
    return (time.process_time() - started) / len(events) * 1e6


def batch_cost(policy: Policy, batches: Sequence[Sequence[IngestEvent]],
               nodes: Sequence[str]) -> float:
    """CPU µs per event of the rules alone, a batch at a time (what the engine runs)."""
    states = _states(nodes)
    n = sum(len(b) for b in batches)
    started = time.process_time()
    at = 0
    for b in batches:
        evaluate_batch([policy] * len(b), b, states[at:at + len(b)])
        at += len(b)
    return (time.process_time() - started) / n * 1e6


def pure_vs_batch(policy: Policy, events: Sequence[IngestEvent], batch: int,
                  nodes: Sequence[str], rounds: int = 3) -> tuple[float, float]:
    """(per event, batch) CPU µs per event, each the best of ``rounds`` interleaved rounds."""
    batches = [list(events[i:i + batch]) for i in range(0, len(events), batch)]
    pure, batched = [], []
    for _ in range(rounds):
        pure.append(pure_cost(policy, events, nodes))
        batched.append(batch_cost(policy, batches, nodes))
    return round(min(pure), 2), round(min(batched), 2)


def rules_breakdown(policy: Policy, events: Sequence[IngestEvent], batch: int,
                    nodes: Sequence[str]) -> dict[str, Any]:
    """Per event and batch µs/event: all rules, each guardrail alone, each PII detector alone.
    Events in file order, cut into ``batch``-sized batches (several agents per batch, as a
    worker's envelopes of one project can be)."""
    out: dict[str, Any] = {}
    variants = {"all": policy, **{g: only(policy, g) for g in GUARDRAILS},
                **{f"pii.{d}": only_pii(policy, d) for d in DETECTOR_NAMES}}
    for name, pol in variants.items():
        pure, batched = pure_vs_batch(pol, events, batch, nodes)
        out[name] = {"per_event": pure, "batch": batched,
                     "ratio": round(batched / pure, 3) if pure else None}
    return out


async def _script_usec(client: Redis) -> int:
    """Server CPU µs spent in EVALSHA so far (INFO commandstats)."""
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("usec", 0))


def _check_job(guards: Guardrails, batch: list[IngestEvent], nodes: list[str]
               ) -> Callable[[], Awaitable[Any]]:
    """One guardrails call of ``batch`` at the time it runs."""
    return lambda: guards.check(batch, nodes, time.time())


async def timed(client: Redis, jobs: Sequence[Callable[[], Awaitable[Any]]], concurrency: int,
                n: int) -> dict[str, float]:
    """Throughput, client CPU per event and Redis script CPU per event of ``jobs``."""
    usec = await _script_usec(client)
    cpu = time.process_time()
    wall = await _drive(jobs, concurrency)
    cpu = time.process_time() - cpu
    usec = await _script_usec(client) - usec
    return {"events_per_s": round(n / wall), "wall_us_per_event": round(wall / n * 1e6, 2),
            "client_cpu_us_per_event": round(cpu / n * 1e6, 2),
            "redis_script_us_per_event": round(usec / n, 2)}


async def bench(url: str, n: int, batch: int, concurrency: int) -> dict[str, Any]:
    client = Redis.from_url(url)
    policy = parse_policy_toml(EXAMPLE.read_text())
    events = load_events(n)
    n = len(events)
    nodes = rich_nodes(events)
    batches = by_agent_batches(events, batch)
    node_of = dict(zip((e.event_id for e in events), nodes, strict=True))
    res: dict[str, Any] = {"events": n, "batch": batch, "concurrency": concurrency,
                           "policy": "docs/policy.example.toml"}
    tag = uuid.uuid4().hex[:8]
    try:
        res["pure_us_per_event"] = round(pure_cost(policy, events, nodes), 2)
        res["pure_us_per_event_by_guardrail"] = {
            g: round(pure_cost(only(policy, g), events, nodes), 2) for g in GUARDRAILS
        }
        res["rules_us_per_event"] = rules_breakdown(policy, events, batch, nodes)

        store = GuardStore(client, Keys(f"gs{tag}"))
        keys = Keys(f"gs{tag}")
        spec = ActivePolicy.of(policy).spec
        prepared = [
            GuardBatch(keys.guard_tag(b[0].project_id, b[0].agent_id),
                       [GuardItem(e.event_id, e.run_id, int((e.ts or 0) * 1000),
                                  node_of[e.event_id], e.cost, step_text(e.service, e.action),
                                  () if spec.values is None else
                                  observations(e.service, e.action, e.payload, spec.values))
                        for e in b], spec)
            for b in batches
        ]
        res["state"] = await timed(
            client,
            [functools.partial(store.update, [gb]) for gb in prepared], concurrency, n
        )

        guards = Guardrails(GuardStore(client, Keys(f"gg{tag}")), FixedPolicy(policy),
                            Keys(f"gg{tag}"), event_time=True)
        res["guardrails"] = await timed(
            client,
            [_check_job(guards, b, [node_of[e.event_id] for e in b]) for b in batches],
            concurrency, n,
        )

        chain = Engine.create(client, keys=Keys(f"gc{tag}"), guardrails=False)
        res["chain"] = await timed(client, [functools.partial(chain.decide, b) for b in batches],
                                   concurrency, n)
        full = Engine.create(client, keys=Keys(f"gf{tag}"), policies=FixedPolicy(policy),
                             event_time=True)
        res["engine"] = await timed(client, [functools.partial(full.decide, b) for b in batches],
                                    concurrency, n)

        chain_cpu = res["chain"]["client_cpu_us_per_event"]
        res["ratios"] = {
            "pure_to_chain_cpu": round(res["pure_us_per_event"] / chain_cpu, 3),
            "guardrails_to_chain_cpu": round(
                res["guardrails"]["client_cpu_us_per_event"] / chain_cpu, 3),
            "engine_to_chain_cpu": round(res["engine"]["client_cpu_us_per_event"] / chain_cpu, 3),
            "engine_to_chain_throughput": round(
                res["engine"]["events_per_s"] / res["chain"]["events_per_s"], 3),
            "state_to_chain_throughput": round(
                res["state"]["events_per_s"] / res["chain"]["events_per_s"], 3),
            "state_to_chain_redis_cpu": round(
                res["state"]["redis_script_us_per_event"]
                / max(res["chain"]["redis_script_us_per_event"], 1e-9), 3),
        }
        res["memory_bytes"] = await memory(client, keys, events)
    finally:
        await client.aclose()
    return res


async def memory(client: Redis, keys: Keys, events: Sequence[IngestEvent]) -> dict[str, int]:
    """Bytes of the guardrail state of the busiest agent and of one of its runs."""
    busiest = max({e.agent_id for e in events},
                  key=lambda a: sum(1 for e in events if e.agent_id == a))
    ev = next(e for e in reversed(events) if e.agent_id == busiest)
    tag = keys.guard_tag(ev.project_id, busiest)
    run_events = sum(1 for e in events if e.run_id == ev.run_id)
    agent = keys.guard_agent_keys(tag)
    run = keys.guard_run_keys(tag, ev.run_id)

    async def size(key: str) -> int:
        return int(await client.memory_usage(key, samples=0) or 0)

    return {
        "agent_window": await size(agent.window),
        "agent_cost": await size(agent.cost),
        "agent_order": await size(agent.order),
        "agent_values": await size(agent.values),
        "run_state": await size(run.state),
        "run_window": await size(run.window),
        "run_nodes": await size(run.nodes),
        "run_events": run_events,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--batch", type=int, default=200, help="events per script call")
    ap.add_argument("--concurrency", type=int, default=4, help="calls in flight")
    ap.add_argument("--redis-url")
    ap.add_argument("--json", help="write results as JSON to this file")
    args = ap.parse_args(argv)
    with redis_for(args.redis_url) as url:
        print(f"guardrails benchmark: {args.events} events, batch {args.batch}...",
              file=sys.stderr)
        res = asyncio.run(bench(url, args.events, args.batch, args.concurrency))
    emit(res, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
