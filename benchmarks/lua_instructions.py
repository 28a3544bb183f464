"""Redis instructions per event of ``lua/observe.lua``, counted by valgrind (callgrind).

    python -m benchmarks.lua_instructions [--events 3000] [--agents 16] [--params JSON] [--json FILE]
    python -m benchmarks.lua_instructions --worker [--events 8000 --warm 2000]
    python -m benchmarks.lua_instructions --claims [--events 4000 --fill 40000]

CPU time on a shared, loaded 2-core machine swings by ±30 % between runs of the same code, which
hides a 5 % change in a Lua script. The number of machine instructions redis-server executes
does not depend on the neighbours: runs of the same code agree to 0.1 %. This starts its own
redis-server under ``valgrind --tool=callgrind`` (no collection until asked), lets the chains
of the engine benchmark's traffic learn on the first half of the events, then counts the
instructions of ``observe.lua`` calls (through the store adapter, node ids precomputed, batches
of up to 200 events of one agent) over the second half. ``--params``: engine parameter overrides
(e.g. ``{"checkpoint_runs": 1000000}`` to leave the checkpoints out); ``--digests``: each
event carries its payload's key-path digests, as the engine sends them for the shape escape
(without: none, as before the shape escape). ``--worker``: instead, every script a worker runs
(guardrails, observe, the verdict save): :mod:`benchmarks.worker_bulk` (its traffic, one
envelope of an agent's events at a time) against this redis-server, and the server's whole
instruction count per event, warm-up included (``--events`` measured + ``--warm``).
``--claims``: instead, the gateway's event-id claims (``lua/event_ids_claim.lua``): ``--fill``
bindings spread over the window first (the project's hash splits its slots as in service),
then ``--events`` new ids claimed in calls of 200, the bulk path's, counted. Needs
valgrind; the redis-server binary needs no symbols. Compare two source trees by running this
from each.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import glob
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

from redis.asyncio import Redis

from benchmarks.engine import by_agent_batches, make_events
from benchmarks.report import emit
from models.params import EngineParams
from ratchet.engine.engine import Engine
from ratchet.sandbox.servers import _stop, _wait_port, free_port, redis_server_binary
from ratchet.store.chains import ChainBatch, ObserveItem
from ratchet.store.event_id_buckets import claim_call
from ratchet.store.keys import Keys
from ratchet.store.scripts import scripts_for


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


def _instructions(out_dir: str, pid: int) -> int:
    """Instructions (Ir) of the newest callgrind dump of ``pid`` (since the last zeroing)."""
    dumps = sorted(glob.glob(os.path.join(out_dir, f"cg.{pid}.*")), key=os.path.getmtime)
    if not dumps:
        raise RuntimeError("callgrind wrote no dump")
    with open(dumps[-1], encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no instruction total in {dumps[-1]}")


async def _measure(url: str, n: int, agents: int, params: EngineParams, pid: int,
                   out_dir: str, digests: bool = False) -> dict[str, Any]:
    client = Redis.from_url(url, socket_timeout=600)  # valgrind: one call can take seconds
    try:
        batches = by_agent_batches(make_events(2 * n, agents=agents), 200)
        engine = Engine.create(client, keys=Keys("li"), guardrails=False, params=params)
        prepared = []
        for b in batches:
            chain = engine.chain_of(b[0])
            paths = engine._nodes(b)[2] if digests else [""] * len(b)
            items = [ObserveItem(e.event_id, e.run_id, engine.node_of(e), False, e.end_of_run,
                                 False, e.action, d) for e, d in zip(b, paths, strict=True)]
            prepared.append((len(b), ChainBatch(chain.tag, items)))
        half = len(prepared) // 2
        for _, cb in prepared[:half]:  # the chains learn first
            await engine.store.observe([cb])
        measured = sum(k for k, _ in prepared[half:])
        _control("-z", str(pid))
        for _, cb in prepared[half:]:
            await engine.store.observe([cb])
        _control("-d", str(pid))
        total = _instructions(out_dir, pid)
    finally:
        await client.aclose()
    return {"events_measured": measured, "observe_instructions_per_event": round(total / measured)}


async def _measure_claims(url: str, fill: int, n: int, batch: int, pid: int,
                          out_dir: str) -> dict[str, Any]:
    """The gateway's event-id claims (``lua/event_ids_claim.lua``, the bulk path's calls of
    ``batch`` new ids of one project, the layouts before no longer read): ``fill`` bindings
    first, spread over the window (the hash has split its slots as in service), then ``n``
    claims counted."""
    client = Redis.from_url(url, socket_timeout=600)
    keys = Keys("li")
    claim = scripts_for(client)["event_ids_claim"]
    rng = random.Random(7)

    def claims(k: int) -> list[tuple[str, str]]:
        return [(str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                 f"{rng.getrandbits(128):032x}") for _ in range(k)]

    now = time.time()
    try:
        for i in range(0, fill, 1000):  # oldest first, as time runs
            at = now - 86_400 + 60 + (86_000 * i) // max(fill, 1)
            ks, args = claim_call(keys, "p", claims(min(1000, fill - i)), 86_400, at, legacy=False)
            await claim(keys=ks, args=args)
        calls = [claim_call(keys, "p", claims(batch), 86_400, now, legacy=False)
                 for _ in range(max(1, n // batch))]
        _control("-z", str(pid))
        for ks, args in calls:
            await claim(keys=ks, args=args)
        _control("-d", str(pid))
        total = _instructions(out_dir, pid)
    finally:
        await client.aclose()
    measured = batch * len(calls)
    return {"bindings_before": fill, "claims_measured": measured, "batch": batch,
            "claim_instructions_per_event": round(total / measured)}


def _measure_worker(url: str, events: int, warm: int, pid: int, out_dir: str) -> dict[str, Any]:
    """Every instruction of the server during a worker_bulk run (its start-up excluded)."""
    _control("-z", str(pid))
    subprocess.run(
        [sys.executable, "-m", "benchmarks.worker_bulk", "--events", str(events), "--warm",
         str(warm), "--repeat", "1"],
        check=True, env={**os.environ, "RATCHET_REDIS_URL": url}, stdout=subprocess.DEVNULL,
    )
    _control("-d", str(pid))
    total = _instructions(out_dir, pid)
    return {"events_decided": events + warm,
            "redis_instructions_per_event": round(total / (events + warm))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=3000, help="events measured (as many learn first)")
    ap.add_argument("--agents", type=int, default=16)
    ap.add_argument("--params", default="{}", help="engine parameter overrides, JSON")
    ap.add_argument("--digests", action="store_true",
                    help="send each event's key-path digests as the engine does (shape escape)")
    ap.add_argument("--worker", action="store_true",
                    help="all of a worker's scripts on benchmarks.worker_bulk's traffic")
    ap.add_argument("--warm", type=int, default=1000, help="--worker: events decided first")
    ap.add_argument("--claims", action="store_true",
                    help="instead, the gateway's event-id claims (lua/event_ids_claim.lua): "
                         "--events new ids in calls of 200 after --fill bindings")
    ap.add_argument("--fill", type=int, default=40_000, help="--claims: bindings made first")
    ap.add_argument("--json", help="write results as JSON to this file")
    args = ap.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind (callgrind) is not installed: apt-get install -y valgrind", file=sys.stderr)
        return 2
    overrides = json.loads(args.params)
    params = dataclasses.replace(EngineParams(), **overrides)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ratchet-cg-") as out_dir:
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--collect-atstart=yes",
             f"--callgrind-out-file={out_dir}/cg.%p", redis_server_binary(), "--port", str(port),
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=out_dir,
        )
        try:
            _wait_port(port, proc, "redis-server under valgrind", 120.0)
            if args.claims:
                res = asyncio.run(_measure_claims(f"redis://127.0.0.1:{port}", args.fill,
                                                  args.events, 200, proc.pid, out_dir))
            elif args.worker:
                res = _measure_worker(f"redis://127.0.0.1:{port}", args.events, args.warm,
                                      proc.pid, out_dir)
            else:
                res = asyncio.run(_measure(f"redis://127.0.0.1:{port}", args.events,
                                           args.agents, params, proc.pid, out_dir, args.digests))
        finally:
            _stop(proc, 60.0)
    emit({"events": args.events, "agents": args.agents, "params": overrides,
          "digests": args.digests, **res}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
