"""Event-id bindings: Redis memory per binding against Redis CPU per claim.

    python -m benchmarks.event_id_buckets [--fill 20000] [--claims 10000] [--widths 4]
                                          [--rounds 3] [--json FILE]

A fresh database gets a window's worth of bindings (24 h: ``--fill`` random ids claimed through
``lua/event_ids_claim.lua`` at a time within each bucket-wide span of the window, oldest first,
so the project's hash has split its slots as in service), then ``--claims`` new UUID ids are
claimed in calls of 200 (the bulk path) and of 1 (single events), with and without the read of
the layouts before (the time-bucket hashes, one per ``--widths`` hours of the window, absent
here, and the per-id keys); Redis CPU per claimed event (``INFO cpu``, user + system) is the
best of ``--rounds``. Memory per binding: ``MEMORY USAGE`` of the project's hash / its bindings.
Ceiling: the per-id-key layout's script (``SET key fp NX GET EX window`` per id) in the same
run, on the same server. Compare with the time-bucket layout by running this from a tree
before it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from typing import Any

from redis.asyncio import Redis

from benchmarks.report import emit
from ratchet.sandbox.servers import redis_for
from ratchet.store.event_id_buckets import claim_call, live_buckets
from ratchet.store.keys import Keys
from ratchet.store.scripts import scripts_for

WINDOW_S = 86_400

#: The claim script of the layout before buckets (one key per id), the comparison's ceiling.
PREVIOUS = """
local out = {}
for i, key in ipairs(KEYS) do
  local previous = redis.call('SET', key, ARGV[i + 1], 'NX', 'GET', 'EX', ARGV[1])
  if not previous then out[i] = 1 elseif previous == ARGV[i + 1] then out[i] = 2
  else out[i] = 0 end
end
return out
"""


async def _cpu(client: Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _claims(n: int) -> list[tuple[str, str]]:
    return [(str(uuid.uuid4()), os.urandom(16).hex()) for _ in range(n)]


async def _timed(client: Redis, script: Any, calls: list[tuple[list[Any], list[Any]]],
                 events: int) -> float:
    """Redis CPU µs per event of running ``calls``."""
    before = await _cpu(client)
    for keys, args in calls:
        await script(keys=keys, args=args)
    return (await _cpu(client) - before) * 1e6 / events


async def bench(url: str, fill: int, claims: int, widths: list[int], rounds: int
                ) -> dict[str, Any]:
    client = Redis.from_url(url)
    keys = Keys("bw")
    claim = scripts_for(client)["event_ids_claim"]
    previous = client.register_script(PREVIOUS)
    now = time.time()
    out: dict[str, Any] = {"fill_per_bucket": fill, "claims": claims, "widths": {}}
    try:
        for hours in widths:
            width = hours * 3600
            await client.flushdb()
            indexes = live_buckets(now, WINDOW_S, width)
            filled = 0
            for i in sorted(indexes):  # oldest first, as time runs
                at = min(max(i * width + 1.0, now - WINDOW_S + 60), now)
                if i * width > now:
                    continue
                for lo in range(0, fill, 1000):
                    script_keys, args = claim_call(keys, "p", _claims(min(1000, fill - lo)),
                                                   WINDOW_S, at, legacy=False)
                    await claim(keys=script_keys, args=args)
                filled += fill
            usage = int(await client.memory_usage(keys.event_ids("p"), samples=0) or 0)
            row: dict[str, Any] = {"buckets_read": len(indexes),
                                   "bytes_per_binding": round(usage / filled, 1),
                                   "kept_factor_on_window": round(1 + width / 2 / WINDOW_S, 3)}
            for batch in (200, 1):
                for legacy in (True, False):
                    best = float("inf")
                    for _ in range(rounds):
                        calls: list[tuple[list[Any], list[Any]]] = []
                        for _ in range(max(1, claims // batch)):
                            calls.append(claim_call(keys, "p", _claims(batch), WINDOW_S, now,
                                                    legacy=legacy))
                        best = min(best, await _timed(client, claim, calls,
                                                      batch * len(calls)))
                    name = f"batch_{batch}_{'with' if legacy else 'without'}_previous_layout"
                    row[f"redis_cpu_us_per_event_{name}"] = round(best, 2)
            out["widths"][f"{hours}h"] = row
            print(f"  {hours} h: {row}", file=sys.stderr)
        for batch in (200, 1):
            best = float("inf")
            for _ in range(rounds):
                await client.flushdb()
                calls = []
                for _ in range(max(1, claims // batch)):
                    group = _claims(batch)
                    calls.append(([keys.event_fingerprint("p", e) for e, _ in group],
                                  [WINDOW_S, *(fp for _, fp in group)]))
                best = min(best, await _timed(client, previous, calls, batch * len(calls)))
            out[f"previous_layout_redis_cpu_us_per_event_batch_{batch}"] = round(best, 2)
        await client.flushdb()
        group = _claims(fill)
        for event_id, fp in group:
            await client.set(keys.event_fingerprint("p", event_id), fp, ex=WINDOW_S)
        sample = [keys.event_fingerprint("p", e) for e, _ in group[:: max(1, fill // 500)]]
        sizes = [int(await client.memory_usage(k, samples=0) or 0) for k in sample]
        out["previous_layout_bytes_per_binding"] = round(sum(sizes) / len(sizes), 1)
        await client.flushdb()
    finally:
        await client.aclose()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--fill", type=int, default=20_000, help="bindings per bucket before claims")
    ap.add_argument("--claims", type=int, default=10_000, help="ids claimed per measurement")
    ap.add_argument("--widths", default="1,4,6,12,24", help="bucket widths, hours")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--redis-url")
    ap.add_argument("--json", help="write results as JSON to this file")
    args = ap.parse_args(argv)
    widths = [int(w) for w in args.widths.split(",")]
    with redis_for(args.redis_url) as url:
        res = asyncio.run(bench(url, args.fill, args.claims, widths, args.rounds))
    emit(res, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
