"""Another tenant's verdicts while one tenant spends its ingest burst on batches spread over
many agents — with and without the spread bucket, in one run.

``python -m benchmarks.spread_burst [--quick] [--json FILE]`` starts its own redis-server and
Tansu broker on free loopback ports and, for each ``RATCHET_SPREAD_BURST_S`` compared (60: the
envelope tokens limited by the ingest bucket alone, as before the spread bucket; 5: the
default), a gateway and one worker as child processes (:func:`ratchet.sandbox.stack.
local_stack`) on a ``high_volume``-sized tier (100,000 events a minute) for both tenants.

Tenant B sends one signed event every :data:`PROBE_EVERY_S` and waits for its verdict, alone
for :data:`ALONE_S` (its baseline), then while tenant A sends batches of :data:`PER_BATCH`
events, each of another of A's :data:`AGENTS` agents (one envelope per event), from
:data:`SENDERS` connections for ``--attack-s`` seconds — as fast as the gateway admits them;
a refused batch waits its ``Retry-After`` (at most a second), as a client that honours it —
and for :data:`TAIL_S` after, while the worker drains what was accepted. Both tenants' events
share the topic's two partitions. It prints, per setting: A's batches and events accepted and
refused; B's verdict latency (p50, p99, max) alone and from the attack's start to the end of
the tail (the tail included: it is where a backlog shows); the probes not decided in time.
Percentiles are inclusive (never above the largest sample). Each setting runs once, in the
order given, on the same redis-server and broker (the second phase starts with the first's
messages still held by the broker, which slows it a little: docs/performance.md). Round 15 of
the outside attack runs measured, with 1,000 agents on a shared box, a p99 of 10.1 s for the
victim when a full ``high_volume`` bucket was spent this way.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
from redis.asyncio import Redis

from ratchet.platform.provisioning import create_agent
from ratchet.sandbox.client import RatchetClient
from ratchet.sandbox.servers import RedisServer, TansuServer
from ratchet.sandbox.stack import Credentials, local_stack, provision
from ratchet.store.keys import Keys

__all__ = ["Phase", "main"]

#: Both tenants' tier: the size of ``high_volume`` (events and registrations a minute).
TIERS = "hv:100000:1000"
#: Tenant A's agents, and the events (one per agent) of each of its batches.
AGENTS = 1_000
PER_BATCH = 200
#: A's concurrent senders.
SENDERS = 4
#: B's probe interval, its baseline before the attack, the drain after it (``--tail-s``);
#: seconds.
PROBE_EVERY_S = 0.1
ALONE_S = 5.0
TAIL_S = 10.0
#: A probe not decided within this long counts as undecided (seconds).
PROBE_WAIT_S = 30.0
#: The settings compared (``--bursts``): the ingest bucket alone (60 s deep), then the default.
BURSTS = (60.0, 5.0)


@dataclass
class Phase:
    """What one setting measured."""

    spread_burst_s: float
    attack_s: float
    batches: dict[str, int] = field(default_factory=dict)
    events_accepted: int = 0
    alone_ms: list[float] = field(default_factory=list)
    attacked_ms: list[float] = field(default_factory=list)
    undecided: int = 0

    def summary(self) -> dict[str, Any]:
        def pct(xs: list[float]) -> dict[str, float]:
            if not xs:
                return {}
            cuts = (statistics.quantiles(xs, n=100, method="inclusive") if len(xs) > 1
                    else [xs[0]] * 99)
            return {"p50": round(cuts[49], 1), "p99": round(cuts[98], 1),
                    "max": round(max(xs), 1), "n": len(xs)}
        return {"spread_burst_s": self.spread_burst_s, "attack_s": self.attack_s,
                "batches": self.batches, "events_accepted": self.events_accepted,
                "b_alone_ms": pct(self.alone_ms), "b_attacked_ms": pct(self.attacked_ms),
                "b_undecided": self.undecided}


def _event(run: str) -> dict[str, Any]:
    return {"event_id": f"ev-{uuid.uuid4().hex}", "run_id": run, "service": "crm",
            "action": "lookup", "payload": {"q": "x", "n": 1}, "end_of_run": True}


async def _agents(creds: Credentials, n: int) -> list[tuple[str, str]]:
    redis = Redis.from_url(creds.redis_url)
    try:
        out = []
        for i in range(n):
            agent_id = f"spread-{i}"
            _, secret = await create_agent(redis, Keys(creds.key_prefix), creds.project_id,
                                           agent_id)
            out.append((agent_id, secret))
        return out
    finally:
        await redis.aclose()


async def _run(creds: Credentials, burst_s: float, attack_s: float, tail_s: float) -> Phase:
    phase = Phase(burst_s, attack_s)
    agents = await _agents(creds, AGENTS)
    b_project, b_key, b_secret = await provision(creds.redis_url, creds.key_prefix, "victim",
                                                 TIERS.split(":", 1)[0])
    timeout = aiohttp.ClientTimeout(total=PROBE_WAIT_S + 10)
    async with aiohttp.ClientSession(timeout=timeout) as a_http, \
            aiohttp.ClientSession(timeout=timeout) as b_http:
        a_clients = [RatchetClient(creds.url, creds.api_key, a, s, project_id=creds.project_id,
                                   session=a_http) for a, s in agents]
        b = RatchetClient(creds.url, b_key, "victim", b_secret, project_id=b_project,
                          session=b_http)
        attack_at = time.monotonic() + ALONE_S
        stop_attack = attack_at + attack_s
        stop_probes = stop_attack + tail_s

        async def probe(i: int) -> None:
            sent = time.monotonic()
            try:
                answer = await b.send(_event(f"b-{i}"), int(PROBE_WAIT_S * 1000))
            except (TimeoutError, aiohttp.ClientError):
                phase.undecided += 1
                return
            took = (time.monotonic() - sent) * 1000
            if answer.status != 200 or answer.body.get("status") != "decided":
                phase.undecided += 1
                if phase.undecided == 1:
                    print(f"  a probe was not decided: {answer.status} {answer.body}",
                          file=sys.stderr, flush=True)
                return
            (phase.alone_ms if sent < attack_at else phase.attacked_ms).append(took)

        async def prober() -> None:
            tasks, i = [], 0
            while time.monotonic() < stop_probes:
                tasks.append(asyncio.create_task(probe(i)))
                i += 1
                await asyncio.sleep(PROBE_EVERY_S)
            await asyncio.gather(*tasks)

        batch_no = itertools.count()

        async def sender() -> None:
            await asyncio.sleep(max(attack_at - time.monotonic(), 0))
            while time.monotonic() < stop_attack:
                first = next(batch_no) * PER_BATCH
                items = [a_clients[(first + j) % AGENTS].signed(_event(f"a-{first + j}"))
                         for j in range(PER_BATCH)]
                answer = await a_clients[0].post_signed(items)
                name = str(answer.status)
                phase.batches[name] = phase.batches.get(name, 0) + 1
                if answer.status == 200:
                    phase.events_accepted += int(answer.body.get("accepted", 0))
                elif answer.status == 429:
                    wait = float(answer.headers.get("Retry-After", "1"))
                    await asyncio.sleep(min(wait, 1.0, max(stop_attack - time.monotonic(), 0)))

        await asyncio.gather(prober(), *(sender() for _ in range(SENDERS)))
    return phase


def _line(p: Phase) -> str:
    s = p.summary()
    alone, hit = s["b_alone_ms"], s["b_attacked_ms"]
    return (f"| {p.spread_burst_s:g} s | {p.events_accepted:,} | "
            f"{dict(sorted(p.batches.items()))} | "
            f"{alone.get('p50', '-')} / {alone.get('p99', '-')} | "
            f"{hit.get('p50', '-')} / {hit.get('p99', '-')} / {hit.get('max', '-')} | "
            f"{p.undecided} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.spread_burst", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a 6 s attack instead of 20 s (about 2 minutes in all)")
    parser.add_argument("--attack-s", type=float, default=None,
                        help="seconds tenant A sends (default 20; 6 with --quick)")
    parser.add_argument("--tail-s", type=float, default=TAIL_S,
                        help=f"seconds tenant B goes on after the attack (default {TAIL_S:g})")
    parser.add_argument("--bursts", default=",".join(f"{b:g}" for b in BURSTS),
                        help="RATCHET_SPREAD_BURST_S values compared, in order (default "
                             "60,5: the ingest bucket alone, then the default)")
    parser.add_argument("--json", help="write the phases' figures to this file")
    args = parser.parse_args(argv)
    try:
        bursts = [float(b) for b in args.bursts.split(",") if b.strip()]
    except ValueError:
        parser.error(f"--bursts {args.bursts!r}: seconds separated by commas, e.g. 60,5")
    attack_s = args.attack_s if args.attack_s is not None else (6.0 if args.quick else 20.0)
    os.environ.setdefault("PYTHONPATH", os.getcwd())
    print(f"tenant A: batches of {PER_BATCH} events over {AGENTS:,} agents from {SENDERS} "
          f"connections for {attack_s:g} s; tenant B: one event every {PROBE_EVERY_S:g} s, "
          f"waiting for its verdict ({ALONE_S:g} s alone first, {args.tail_s:g} s of drain after)",
          flush=True)
    print("| spread burst | A's events accepted | A's batches by status | B alone p50 / p99 ms "
          "| B under attack p50 / p99 / max ms | B undecided |")
    print("| --- | --- | --- | --- | --- | --- |", flush=True)
    phases: list[Phase] = []
    with RedisServer() as redis_server, TansuServer() as broker:
        for burst in bursts:
            with local_stack(redis_server.url, broker.bootstrap, tiers=TIERS,
                             spread_burst_s=burst,
                             max_wait_ms=int(PROBE_WAIT_S * 1000)) as creds:
                phase = asyncio.run(_run(creds, burst, attack_s, args.tail_s))
            phases.append(phase)
            print(_line(phase), flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"per_batch": PER_BATCH, "agents": AGENTS, "senders": SENDERS,
                       "phases": [p.summary() for p in phases],
                       "raw": [asdict(p) for p in phases]}, out, indent=1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
