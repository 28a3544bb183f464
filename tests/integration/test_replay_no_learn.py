"""``ratchet replay --no-learn --namespace NS`` writes nothing under ``NS`` nor anywhere else.

A live prefix is populated by a learning replay of synthetic traffic (chains past shadow, open
runs, guardrail velocity and cost state, service modes). Then the rest of the traffic — cut
mid-run, so open runs of the live prefix continue — is replayed with ``--no-learn`` through the
CLI with ``--redis-url`` and ``--namespace`` pointing at it. Every key of the database, its value
(``DUMP``) and its TTL must be as before, and the what-if verdicts must still have been scored
against the live baseline (modes past shadow), i.e. it was read, not ignored.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from models.params import EngineParams
from ratchet.engine.replay import replay
from ratchet.sandbox.process import worker_env
from ratchet.sandbox.servers import RedisServer
from ratchet.sandbox.traffic import generate

Snapshot = dict[bytes, tuple[bytes | None, int]]


async def _snapshot(url: str) -> Snapshot:
    """Every key of the database → (DUMP of its value, PTTL)."""
    client = Redis.from_url(url)
    try:
        out: Snapshot = {}
        async for key in client.scan_iter(count=1000):
            out[key] = (await client.dump(key), await client.pttl(key))
        return out
    finally:
        await client.aclose()


def _jsonl(events: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


def test_no_learn_leaves_a_populated_prefix_untouched(tmp_path: Path, key_prefix: str) -> None:
    # A Redis of its own: the whole database is compared, and the shared test Redis holds other
    # tests' keys, whose TTLs run out while this test runs.
    with RedisServer() as server:
        _check_no_learn(tmp_path, server.url, key_prefix)


def _check_no_learn(tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    events = generate(agents=6, runs_per_agent=90, warmup_runs=60, anomaly_rate=0.3, seed=21)
    cut = len(events) * 3 // 4  # mid-run: some runs of the live prefix continue in the what-if
    live, what_if = events[:cut], events[cut:]
    assert {e["run_id"] for e in live} & {e["run_id"] for e in what_if}

    populated = asyncio.run(replay(
        io.BytesIO(_jsonl(live)), io.BytesIO(), redis_url=redis_url, params=EngineParams(),
        namespace=key_prefix, keep=True,
    ))
    assert populated.final_modes["shadow"] < sum(populated.final_modes.values())
    before = asyncio.run(_snapshot(redis_url))
    kinds = {k.decode().split(":")[-1] for k in before if k.startswith(key_prefix.encode())}
    assert {"edges", "win", "cost", "svc", "nodes"} <= kinds  # chains, guardrails, service modes

    src, out, summary = tmp_path / "what_if.jsonl", tmp_path / "verdicts.jsonl", tmp_path / "s.json"
    src.write_bytes(_jsonl(what_if))
    proc = subprocess.run(
        [sys.executable, "-m", "ratchet", "replay", "--input", str(src), "--output", str(out),
         "--json", str(summary), "--quiet", "--no-learn", "--namespace", key_prefix,
         "--redis-url", redis_url],
        check=False, env=worker_env(KEY_PREFIX=key_prefix), capture_output=True, text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    after = asyncio.run(_snapshot(redis_url))

    assert sorted(after) == sorted(before)  # no key added (scratch deleted) or removed
    changed = [k for k in before if after[k][0] != before[k][0]]
    assert changed == []
    # no TTL refreshed: a key without one still has none, the others only ran down
    assert all((after[k][1] < 0) == (before[k][1] < 0) for k in before)
    assert all(after[k][1] <= before[k][1] for k in before)

    verdicts = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(verdicts) == len(what_if)
    assert {v["mode"] for v in verdicts} - {"shadow"}  # scored against the live baseline
    doc = orjson.loads(summary.read_bytes())
    assert doc["seeded_from"] == key_prefix and doc["namespace"] != key_prefix
    assert f"no-learn: read {key_prefix}" in proc.stderr


def test_keep_names_the_kept_namespace_and_needs_a_redis(tmp_path: Path, redis_url: str) -> None:
    src = tmp_path / "events.jsonl"
    src.write_bytes(_jsonl(generate(agents=2, runs_per_agent=3, warmup_runs=1, seed=5)))
    env = {k: v for k, v in worker_env().items() if k != "RATCHET_REDIS_URL"}
    base = [sys.executable, "-m", "ratchet", "replay", "--input", str(src), "--output",
            str(tmp_path / "out.jsonl"), "--quiet", "--keep"]
    refused = subprocess.run(base, check=False, env=env, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2 and "--keep needs --redis-url" in refused.stderr
    kept = subprocess.run([*base, "--redis-url", redis_url], check=False, env=env,
                          capture_output=True, text=True, timeout=300)
    assert kept.returncode == 0, kept.stderr
    namespace = kept.stderr.split("kept namespace: ", 1)[1].split()[0]

    async def count() -> int:
        client = Redis.from_url(redis_url)
        try:
            return len([k async for k in client.scan_iter(match=f"{namespace}:*", count=1000)])
        finally:
            await client.aclose()

    assert namespace.startswith("replay:") and asyncio.run(count()) > 0
