"""The gateway's own work per bulk event, in-process: CPU time, so the neighbours matter less.

    python -m benchmarks.gateway_path [--events 30000] [--batch 1000] [--repeat 7]
                                      [--src DIR] [--gc-gen0 N] [--json FILE]

The bulk benchmark's traffic (ratchet.sandbox.traffic), pre-signed into ``POST /v1/events:batch``
bodies of ``--batch`` events, then per body what the handler does between reading the bytes and
handing envelopes to Kafka: ``orjson.loads``, ``parse_batch`` (schema and limits), the
signatures, the event-id fingerprints, the KEYS and ARGV of the event-id claim the admission
round trip sends (``claim_args``), the envelopes and the per-item results — each step timed
alone (process CPU time, each body's best of ``--repeat``) and all together. No I/O: the Redis round trip
and aiohttp are in ``benchmarks.gateway_bulk`` (the gateway alone) and ``benchmarks.pipeline``. ``--src DIR`` imports the gateway from another source
tree (e.g. a worktree of main) for a before/after pair run back to back. ``--gc-gen0 N`` tunes
the garbage collector first as a gateway does (``RATCHET_GATEWAY_GC_GEN0``: start-up frozen,
generation 0 collected every N allocations); without it CPython's defaults apply.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson


def _best(fn: Callable[[int], Any], bodies: int, repeat: int) -> float:
    """CPU seconds of ``fn`` over every body, each body's best of ``repeat`` (a burst of load
    on a shared machine spoils one body's time, not a whole pass)."""
    best = [float("inf")] * bodies
    for _ in range(repeat):
        for i in range(bodies):
            start = time.process_time()
            fn(i)
            best[i] = min(best[i], time.process_time() - start)
    return sum(best)


def run(events: int, batch: int, repeat: int) -> dict[str, Any]:
    from gateway.ingest import check_signatures, envelopes, parse_batch
    from models.idempotency import event_fingerprint
    from models.signing import sign
    from ratchet.sandbox.traffic import iter_events
    from ratchet.store.event_id_buckets import claim_call
    from ratchet.store.keys import Keys

    project = "prj_bench"
    raw = list(iter_events(agents=24, runs_per_agent=max(20, events // 216 + 1),
                           warmup_runs=10**6, seed=11, project_id=project))[:events]
    secrets = {e["agent_id"]: f"as_{e['agent_id']}" for e in raw}
    ts = int(time.time())
    per_agent: dict[str, list[dict[str, Any]]] = {}
    for e in raw:
        ev = {k: v for k, v in e.items() if k not in ("label", "project_id")}
        ev["signature"] = sign(secrets[ev["agent_id"]], project, ev, ts)
        ev["timestamp"] = ts
        per_agent.setdefault(ev["agent_id"], []).append(ev)
    bodies = [orjson.dumps({"events": evs[i:i + batch]})
              for evs in per_agent.values() for i in range(0, len(evs), batch)]
    n = len(raw)
    decoded = [orjson.loads(b) for b in bodies]
    parsed = [parse_batch(d, project, batch) for d in decoded]

    def loads(i: int) -> None:
        orjson.loads(bodies[i])

    def parse(i: int) -> None:
        parse_batch(decoded[i], project, batch)

    def signatures(i: int) -> None:
        check_signatures(parsed[i], secrets, now=time.time(), window_s=300)

    def fingerprints(i: int) -> None:
        for it in parsed[i]:
            if it.event is not None:
                event_fingerprint(it.event)

    keys = Keys("bench")
    claims = [[(it.event.event_id, event_fingerprint(it.event)) for it in items
               if it.event is not None] for items in parsed]

    def claim_args(i: int) -> None:
        claim_call(keys, project, claims[i], 86_400, time.time())

    def pack(i: int) -> None:
        items = parsed[i]
        envelopes([it.event for it in items if it.event is not None], project, "t", 1.0)
        orjson.dumps([it.result() for it in items])

    def whole(i: int) -> None:
        items = parse_batch(orjson.loads(bodies[i]), project, batch)
        check_signatures(items, secrets, now=time.time(), window_s=300)
        good = [it.event for it in items if it.error is None and it.event is not None]
        claim_call(keys, project, [(ev.event_id, event_fingerprint(ev)) for ev in good],
                   86_400, time.time())
        envelopes(good, project, "t", 1.0)
        orjson.dumps([it.result() for it in items])

    assert all(it.error is None for items in parsed for it in items)
    steps = {"loads": loads, "parse_batch": parse, "signatures": signatures,
             "fingerprints": fingerprints, "claim_args": claim_args,
             "envelopes_and_results": pack, "whole": whole}
    return {"events": n, "batch": batch,
            "us_per_event": {k: round(_best(fn, len(bodies), repeat) / n * 1e6, 2)
                             for k, fn in steps.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gateway_path", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=30_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--src", metavar="DIR", help="import the gateway from this source tree")
    p.add_argument("--gc-gen0", type=int, default=0,
                   help="tune the collector as a gateway does (0: CPython's defaults)")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    if args.src:
        sys.path.insert(0, os.path.abspath(args.src))
    if args.gc_gen0 > 0:
        gc.collect()
        gc.freeze()
        gc.set_threshold(args.gc_gen0, *gc.get_threshold()[1:])
    result = run(args.events, args.batch, args.repeat)
    result["src"] = args.src or "this tree"
    result["gc_gen0"] = args.gc_gen0 or gc.get_threshold()[0]
    result["load_average"] = os.getloadavg()[0]
    print(f"{result['src']} (gc gen0 {result['gc_gen0']}): " + ", ".join(f"{k} {v}" for k, v in result["us_per_event"].items())
          + " µs/event")
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
