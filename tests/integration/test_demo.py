"""``ratchet demo`` end to end, as a user runs it: its own Redis and Tansu, a gateway and a worker.

Every process the demo starts inherits a unique environment marker, so the tests can prove that
nothing it started outlives it — after a normal exit and after SIGTERM mid-stream.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(150)]


def _env(mark: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    env["RATCHET_TEST_DEMO_MARK"] = mark
    return env


def _marked_pids(mark: str) -> list[int]:
    needle = f"RATCHET_TEST_DEMO_MARK={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _assert_all_gone(mark: str) -> None:
    deadline = time.monotonic() + 10
    while _marked_pids(mark) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _marked_pids(mark)
    for pid in left:  # do not leave them behind even when the assertion fails
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    assert not left, f"processes left behind by the demo: {left}"


def test_demo_runs_and_reports(tmp_path: Path) -> None:
    mark = uuid.uuid4().hex
    out = tmp_path / "demo.json"
    proc = subprocess.run(
        [sys.executable, "-m", "ratchet.cli.demo", "--events", "4000", "--agents", "6",
         "--sync-events", "20", "--json", str(out)],
        env=_env(mark), capture_output=True, text=True, timeout=140, check=False,
    )
    _assert_all_gone(mark)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Ratchet demo summary" in proc.stdout
    assert "sent 4,000/4,000 events" in proc.stderr  # progress display
    assert "Prometheus metrics while the demo runs: gateway http://127.0.0.1:" in proc.stderr
    report = json.loads(out.read_text())
    assert report["events_sent"] == 4000
    # the worker served /metrics (scraped by the demo at the end): it counted every verdict
    assert report["metrics"]["worker"].endswith("/metrics")
    assert report["metrics"]["worker_verdicts_total"] >= 4000
    assert "metrics: worker http://127.0.0.1:" in proc.stdout
    assert report["verdicts"] == 4000 and report["missing_verdicts"] == 0
    assert sum(report["actions"].values()) == 4000
    assert report["events_per_second"] > 0
    assert report["ingest_to_verdict_ms"]["p50"] <= report["ingest_to_verdict_ms"]["p99"]
    assert report["single_event_wait_ms"]["n"] == 20
    assert sum(report["chains_by_final_mode"].values()) > 0
    # ~110 runs per agent: chains leave shadow
    assert report["mode_changes"], report["chains_by_final_mode"]
    detection = report["detection_post_warmup"]["detector"]["run_level"]
    assert detection["tp"] + detection["fn"] > 0  # anomalies were injected after warm-up
    # one enforced verdict of the run explained in words, with the labels the worker stored
    explained = report["explanation"]
    assert explained is not None and explained["action"] in ("flag", "pause", "reject")
    assert explained["current"]["label"] is not None or explained["current"]["kind"] != "call"
    # its own Redis stopped with it: no `ratchet explain` command that cannot run afterwards
    assert "the demo's own Redis stopped with the demo" in proc.stdout
    assert report["key_prefix"] is None and "RATCHET_KEY_PREFIX" not in proc.stdout
    assert "\n  previous call: " in proc.stdout


def test_demo_on_an_external_redis_prints_a_runnable_explain(
    tmp_path: Path, redis_url: str
) -> None:
    """With RATCHET_REDIS_URL the demo's state stays under its own key prefix: the summary and
    the JSON name it, the printed ``export`` + ``ratchet explain`` lines work afterwards, and
    the removal line of docs/operations.md ("Try it") removes every key of it."""
    mark = uuid.uuid4().hex
    out = tmp_path / "demo.json"
    env = _env(mark)
    env["RATCHET_REDIS_URL"] = redis_url
    proc = subprocess.run(
        [sys.executable, "-m", "ratchet.cli.demo", "--events", "2500", "--agents", "4",
         "--sync-events", "0", "--json", str(out), "--quiet"],
        env=env, capture_output=True, text=True, timeout=140, check=False,
    )
    _assert_all_gone(mark)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    prefix = report["key_prefix"]
    assert prefix and prefix.startswith("demo")
    lines = proc.stdout.splitlines()
    export = f"  export RATCHET_KEY_PREFIX={prefix}"
    assert export in lines
    command = lines[lines.index(export) + 1].strip()
    explained = report["explanation"]
    assert command == (f"ratchet explain {explained['event_id']} --project "
                       f"{explained['project_id']}")
    after = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    after.update(RATCHET_REDIS_URL=redis_url, RATCHET_KEY_PREFIX=prefix)
    done = subprocess.run([sys.executable, "-m", "ratchet", *command.split()[1:]], env=after,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() and "error" not in done.stderr

    store = redis.Redis.from_url(redis_url)
    try:
        left = list(store.scan_iter(match=f"{prefix}:*", count=1000))
        assert left
        # some of the demo's keys have no TTL (baselines, projects): they stay until removed
        assert any(store.ttl(k) == -1 for k in left)
        # the removal line of docs/operations.md ("Try it"), as written there
        subprocess.run(
            f"redis-cli -u \"$RATCHET_REDIS_URL\" --scan --pattern '{prefix}:*' "
            f"| xargs -r -d '\\n' redis-cli -u \"$RATCHET_REDIS_URL\" unlink >/dev/null",
            shell=True, env=after, check=True, timeout=60)
        assert list(store.scan_iter(match=f"{prefix}:*", count=1000)) == []
    finally:
        store.close()


def test_demo_stops_everything_on_sigterm(tmp_path: Path) -> None:
    mark = uuid.uuid4().hex
    proc = subprocess.Popen(
        [sys.executable, "-m", "ratchet.cli.demo", "--events", "2000000", "--sync-events", "0"],
        env=_env(mark), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 90
        for line in proc.stderr:
            if "streaming events" in line or time.monotonic() > deadline:
                break
        time.sleep(1.0)
        assert len(_marked_pids(mark)) >= 4  # demo, redis, tansu, gateway, worker
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        _assert_all_gone(mark)
    assert proc.returncode == 130
