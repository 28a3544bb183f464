"""What the duplicate-key check costs the gateway per event: parse alone against parse + check.

    python -m benchmarks.json_duplicates [--repeat 20000]

A typical single event of ≈ 1.3 KB (the largest shape of the synthetic traffic: a query with a
dozen result rows; URLs and times put literal colons in its strings) and a 100-event batch body
of such events; for each, ``orjson.loads`` alone (before), ``orjson.loads`` + the check the
gateway now runs (:func:`models.json_keys.refuse_duplicate_keys`), and, for comparison, the
standard library's parser with an ``object_pairs_hook`` (the reference the check falls back to).
Best of 5 rounds of ``--repeat`` calls, process CPU time, µs per event.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import orjson

from models.json_keys import refuse_duplicate_keys


def _event(i: int) -> dict[str, Any]:
    rows = {f"ord_{i}{k:03d}": {"amount": 12.5 + k, "status": "paid", "customer_id": f"cus_{k}",
                                "updated_at": "2026-01-01T12:30:00Z"} for k in range(10)}
    return {"event_id": f"df619df1-4a94-4e4e-b937-{i:012d}", "agent_id": "data-1",
            "run_id": "data-1-r00014", "service": "db", "action": "db.query", "priority": "normal",
            "payload": {"sql": "SELECT * FROM orders WHERE updated_at > $1 LIMIT $2",
                        "params": ["2026-01-01", 100], "rows": rows, "row_count": 10,
                        "source": "https://db.example.com:5432/orders"},
            "ts": 1767225679.727, "cost": 0.002456, "end_of_run": False}


def _best(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(repeat):
            fn()
        best = min(best, time.process_time() - start)
    return best / repeat


def _hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.json_duplicates", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=20_000)
    args = p.parse_args(argv)
    single = orjson.dumps(_event(0))
    batch = orjson.dumps({"events": [_event(i) for i in range(100)]})
    for name, raw, events, repeat in (("single", single, 1, args.repeat),
                                      ("batch of 100", batch, 100, max(1, args.repeat // 100))):
        def checked(raw: bytes = raw) -> None:
            refuse_duplicate_keys(raw, orjson.loads(raw))

        def plain(raw: bytes = raw) -> None:
            orjson.loads(raw)

        def stdlib(raw: bytes = raw) -> None:
            json.loads(raw, object_pairs_hook=_hook)

        before, after, ref = (_best(f, repeat) / events * 1e6 for f in (plain, checked, stdlib))
        print(f"{name} ({len(raw) // events} B/event): orjson.loads {before:.2f} µs/event, "
              f"+ duplicate check {after:.2f} (+{after - before:.2f}), "
              f"json.loads with object_pairs_hook {ref:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
