"""``ratchet replay`` with guardrails: the stored policy, ``--policy FILE`` overriding it, event
time for velocity windows, and guardrail reasons in the output and the summary."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from ratchet.sandbox.process import worker_env
from ratchet.store.keys import Keys
from ratchet.store.policies import save_policy

T0 = 1_780_000_000.0


def recorded() -> list[dict[str, Any]]:
    """A recorded run: one event every 10 s, an e-mail in one, a destructive SQL in another."""
    out: list[dict[str, Any]] = []
    for i in range(8):
        payload: dict[str, Any] = {"id": i, "sql": "select 1"}
        if i == 3:
            payload = {"id": i, "to": "carol@example.com"}
        if i == 6:
            payload = {"id": i, "sql": "DROP TABLE accounts"}
        out.append({"event_id": f"e{i}", "project_id": "proj", "agent_id": "a", "run_id": "r",
                    "service": "db", "action": "query", "payload": payload, "ts": T0 + 10 * i})
    return out


def run_replay(tmp: Path, env: dict[str, str], *extra: str) -> tuple[int, list[dict[str, Any]],
                                                                       dict[str, Any], str]:
    src, out, summary = tmp / "events.jsonl", tmp / "verdicts.jsonl", tmp / "summary.json"
    src.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in recorded()))
    out.unlink(missing_ok=True)
    summary.unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "ratchet", "replay", "--input", str(src), "--output", str(out),
         "--json", str(summary), "--quiet", *extra],
        check=False, env=env, capture_output=True, text=True, timeout=120,
    )
    verdicts = [orjson.loads(line) for line in out.read_bytes().splitlines()] if out.exists() else []
    doc = orjson.loads(summary.read_bytes()) if summary.exists() else {}
    return proc.returncode, verdicts, doc, proc.stderr


def rules(v: dict[str, Any]) -> list[str]:
    return [r["detail"]["rule"] for r in v["reasons"] if r["source"] != "markov"]


def test_replay_applies_stored_policy_and_policy_file(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    stored = (
        "[guardrails.pii]\naction = 'pause'\ndetectors = ['email', 'secret']\n"
        "[guardrails.velocity]\nper_run = { window_s = 60, limit = 6 }\n"
        "[guardrails.pattern]\nbuiltin_rules = false\n"
    )

    async def store() -> None:
        client = Redis.from_url(redis_url)
        try:
            await save_policy(client, Keys(key_prefix), "proj", stored, actor="test", now=T0)
        finally:
            await client.aclose()

    asyncio.run(store())
    env = worker_env(KEY_PREFIX=key_prefix)
    code, verdicts, doc, err = run_replay(tmp_path, env, "--redis-url", redis_url)
    assert code == 0, err
    assert [rules(v) for v in verdicts] == [[], [], [], ["pii.email"], [], [], [], []]
    assert verdicts[3]["action"] == "pause"  # the stored policy's action
    # 8 events in 70 s of event time: never more than 6 in 60 s (the wall clock would say 8)
    assert doc["guardrail_reasons"] == {"pii.email": 1}
    assert "guardrail reasons: pii.email=1" in err

    policy = tmp_path / "candidate.toml"
    policy.write_text(
        "[guardrails.pii]\nenabled = false\n"
        "[guardrails.velocity]\nper_run = { window_s = 60, limit = 5 }\n"
        "[guardrails.pattern]\nbuiltin_rules = false\n"
        "[[guardrails.pattern.rules]]\nid = 'sql-drop'\npaths = ['sql']\n"
        "regex = '(?i)\\bdrop\\s+table\\b'\naction = 'reject'\n"
    )
    code, verdicts, doc, err = run_replay(
        tmp_path, env, "--redis-url", redis_url, "--policy", str(policy)
    )
    assert code == 0, err
    # from t = 50 s on, the last 60 s hold 6 events
    assert [rules(v) for v in verdicts] == [
        [], [], [], [], [], ["velocity.per_run"], ["velocity.per_run", "pattern.sql-drop"],
        ["velocity.per_run"],
    ]
    assert [v["action"] for v in verdicts][-3:] == ["flag", "reject", "flag"]
    assert doc["guardrail_reasons"] == {"pattern.sql-drop": 1, "velocity.per_run": 3}
    assert "DROP TABLE" not in (tmp_path / "verdicts.jsonl").read_text()

    policy.write_text("[guardrails.loop]\nmax_repeats = 0\n")
    code, verdicts, _, err = run_replay(tmp_path, env, "--policy", str(policy))
    assert code == 2 and "guardrails.loop.max_repeats" in err and not verdicts


def test_replay_counts_every_run_and_tells_flags_from_blocks(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    """Unlabelled input still counts its runs (it said "0 runs"), and labelled input gets a
    run-level line for what stopped a call (pause/reject) beside the one that counts flags."""
    env = worker_env(KEY_PREFIX=key_prefix)
    code, _, doc, err = run_replay(tmp_path, env, "--redis-url", redis_url)
    assert code == 0, err
    assert doc["runs"] == 1 and "(1 runs)" in err
    assert "blocking_run_level" not in doc  # no labels, no figures

    def ev(run: str, i: int, payload: dict[str, Any], label: bool) -> dict[str, Any]:
        return {"event_id": f"{run}-{i}", "project_id": "proj2", "agent_id": "b", "run_id": run,
                "service": "db", "action": "query", "payload": payload, "ts": T0 + 10 * i,
                "label": label}

    events = [ev("flagged", 0, {"to": "carol@example.com"}, False),
              ev("blocked", 0, {"sql": "DROP TABLE accounts"}, True),
              ev("plain", 0, {"sql": "select 1"}, False)]
    src, out = tmp_path / "labelled.jsonl", tmp_path / "labelled_out.jsonl"
    src.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    policy = tmp_path / "p.toml"
    policy.write_text(
        "[guardrails.pii]\naction = 'flag'\ndetectors = ['email']\n"
        "[[guardrails.pattern.rules]]\nid = 'sql-drop'\npaths = ['sql']\n"
        "regex = '(?i)\\bdrop\\s+table\\b'\naction = 'reject'\n"
    )
    summary = tmp_path / "labelled.json"
    proc = subprocess.run(
        [sys.executable, "-m", "ratchet", "replay", "--input", str(src), "--output", str(out),
         "--json", str(summary), "--quiet", "--redis-url", redis_url, "--policy", str(policy)],
        check=False, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = orjson.loads(summary.read_bytes())
    assert doc["runs"] == 3
    enforced, blocking = doc["enforced_run_level"], doc["blocking_run_level"]
    assert (enforced["tp"], enforced["fp"], enforced["tn"]) == (1, 1, 1), enforced
    assert (blocking["tp"], blocking["fp"], blocking["tn"]) == (1, 0, 2), blocking
    assert "run level (blocking: pause/reject)" in proc.stderr
