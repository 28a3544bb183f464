"""``ratchet tune``: the offline re-scoring equals the engine's own decisions, and the command
writes a table, a loadable [engine] TOML, a PNG and an HTML report.

The agreement tests replay the same file independently through the real engine (Lua on a real
redis-server) and compare every event's decision with the vectorised re-scoring: at the recorded
setting, and at other grid points whose learning is unchanged (``learn_diff == 0``: exact by
construction, so any difference is a bug); where learning differs, the estimate is compared
with the real replay at run level within a documented tolerance.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from models.evaluation import Confusion
from models.events import IngestEvent
from models.params import ACTION_CODES, EngineParams, load_params
from models.verdict import Verdict
from ratchet.config.engine import engine_params
from ratchet.config.settings import Settings
from ratchet.engine.replay import replay
from ratchet.engine.tune_grid import Labels, evaluate, run_labels, with_window
from ratchet.engine.tune_record import Recorder, Recording
from ratchet.sandbox.traffic import generate
from tests.integration.cli_support import ratchet_cli

#: Chains lock within the small file, so thresholds change what is paused (and learned).
FAST = EngineParams(checkpoint_runs=5, min_runs_soft=10, min_runs_locked=20)
WARMUP = 15
#: How far an estimate whose learning differs may be from the real replay (run-level recall
#: and FPR; docs/tuning.md): the largest seen here was 0.052 (FPR 0.287 estimated vs 0.236
#: measured, at a 0.5-bit floor that flags a quarter of the normal runs).
TOLERANCE = 0.1
#: The FPR of such an estimate: a held call does not move the run (the next call is scored
#: after the last call that ran), so a setting that pauses more than the recorded one also
#: scores the calls after each new pause from elsewhere than the recording did — usually a
#: usual move — and the estimate over-counts their false positives: 0.57 estimated against
#: 0.34 measured here (docs/tuning.md). The recommended setting is always measured for real.
FPR_TOLERANCE = 0.25


@pytest.fixture(scope="module")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tune") / "events.jsonl"
    events = generate(agents=4, runs_per_agent=70, warmup_runs=WARMUP, anomaly_rate=0.2, seed=3)
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


async def _record(path: Path, redis_url: str, params: EngineParams) -> Recording:
    recorder = Recorder(params)
    with path.open("rb") as src:
        await replay(src, io.BytesIO(), redis_url=redis_url, params=params, guardrails=False,
                     on_engine=recorder.attach, on_verdict=recorder.verdict)
    return recorder.recording


async def _verdicts(path: Path, redis_url: str, params: EngineParams) -> list[Verdict]:
    out: list[Verdict] = []

    def seen(_: IngestEvent, v: Verdict) -> None:
        out.append(v)

    with path.open("rb") as src:
        await replay(src, io.BytesIO(), redis_url=redis_url, params=params, guardrails=False,
                     on_verdict=seen)
    return out


def _run_confusion(verdicts: list[Verdict], labels: Labels) -> Confusion:
    detected = np.zeros(len(labels.anomalous), dtype=np.bool_)
    np.logical_or.at(detected, labels.run_of_event,
                     np.array([v.action != "allow" for v in verdicts], dtype=np.bool_))
    det, truth = detected[labels.scored], labels.anomalous[labels.scored]
    return Confusion(int((det & truth).sum()), int((det & ~truth).sum()),
                     int((~det & truth).sum()), int((~det & ~truth).sum()))


#: The shipped floor (12 bits) sits above most window statistics; a low floor and fallback
#: make the threshold the window's own (median + k·MAD or mean + k·std), so its simulation
#: is what decides.
LOW_FLOOR = FAST.replace(floor_bits=1.0, fallback_bits=3.0)


@pytest.mark.parametrize("base", [
    FAST, LOW_FLOOR, LOW_FLOOR.replace(window_stat="std", sigma_multiplier=2.0),
], ids=["shipped-floor", "window-robust", "window-std"])
async def test_rescoring_equals_the_engine(events_file: Path, redis_url: str,
                                           base: EngineParams) -> None:
    rec = await _record(events_file, redis_url, base)
    labels = run_labels(rec, warmup_runs=WARMUP)
    points = [
        base,
        base.replace(floor_bits=base.floor_bits + 2.0),
        with_window(base, 5).replace(sigma_multiplier=1.5, floor_bits=0.5, fallback_bits=2.0),
    ]
    result = evaluate(rec, points, labels, keep=(0, 1, 2))
    assert result.agreement == (len(rec), len(rec))
    assert result.learn_diff[0] == 0
    exact = 0
    for i, params in enumerate(points):
        real = await _verdicts(events_file, redis_url, params)
        assert len(real) == len(rec)
        if result.learn_diff[i] == 0:  # nothing learned differently: exact, event by event
            exact += 1
            mismatches = [
                (n, (v.anomalous, ACTION_CODES.index(v.action)), result.decisions[i][n])
                for n, v in enumerate(real)
                if result.decisions[i][n] != (v.anomalous, ACTION_CODES.index(v.action))
            ]
            assert not mismatches, (
                f"point {i}: {len(mismatches)} events differ, first {mismatches[:3]}")
            assert result.confusion(i) == _run_confusion(real, labels)
        else:  # an estimate: what the setting would have paused was learned in the recording
            measured, estimated = _run_confusion(real, labels), result.confusion(i)
            print(f"{base.window_stat} floor {base.floor_bits} point {i} learn≠ "
                  f"{result.learn_diff[i]}: estimated {estimated} measured {measured}")
            assert abs(estimated.recall - measured.recall) <= TOLERANCE, (i, estimated, measured)
            assert abs(estimated.fpr - measured.fpr) <= FPR_TOLERANCE, (i, estimated, measured)
    assert exact >= 1
    if base is FAST:
        assert result.learn_diff[1] == 0  # new shapes score ~19.9 bits: 14 pauses the same
        assert result.learn_diff[2] > 0  # a 0.5-bit floor pauses what was learned
        assert result.confusion(2).fp > result.confusion(0).fp


async def test_labels_file_of_run_ids_equals_the_events_labels(events_file: Path,
                                                               redis_url: str) -> None:
    rec = await _record(events_file, redis_url, FAST)
    runs = {json.loads(line)["run_id"] for line in events_file.read_text().splitlines()
            if json.loads(line)["label"]}
    from_file = run_labels(rec, warmup_runs=WARMUP, marked=runs)
    own = run_labels(rec, warmup_runs=WARMUP)
    assert own.anomalous.sum() > 0
    assert (from_file.anomalous == own.anomalous).all()
    assert (from_file.scored == own.scored).all()


def test_tune_cli_writes_table_toml_png_and_html(events_file: Path, tmp_path: Path,
                                                 redis_url: str, key_prefix: str) -> None:
    config = tmp_path / "base.toml"
    config.write_text("[engine]\ncheckpoint_runs = 5\nmin_runs_soft = 10\nmin_runs_locked = 20\n")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(sorted(
        {json.loads(line)["run_id"] for line in events_file.read_text().splitlines()
         if json.loads(line)["label"]})) + "\n")
    out = {name: tmp_path / name for name in ("tuned.toml", "curves.png", "report.html",
                                              "rows.json")}
    done = ratchet_cli(
        ["tune", "--input", str(events_file), "--labels", str(labels), "--config", str(config),
         "--warmup", str(WARMUP), "--no-guardrails", "--sigma", "2,3", "--floor", "4,12,20",
         "--fallback", "12", "--window", "5,10", "--target-fpr", "0.05",
         "--redis-url", redis_url, "--write", str(out["tuned.toml"]),
         "--png", str(out["curves.png"]), "--html", str(out["report.html"]),
         "--json", str(out["rows.json"])],
        {"RATCHET_KEY_PREFIX": key_prefix},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["sigma", "floor", "fallback", "window", "precision", "recall",
                                "FPR", "F1", "tp", "fp", "fn", "learn≠"]
    best = [line for line in lines
            if line.endswith(("<- recommended", "<- recommended (= recorded setting)"))]
    assert len(best) == 1
    n_events = sum(1 for _ in events_file.open())
    assert f"decisions at the recorded setting reproduced: {n_events}/{n_events}" in done.stdout
    assert "measured by a real replay: precision" in done.stdout
    assert "grid: 12 settings" in done.stderr  # 2 × 3 × 1 × 2, the recorded setting among them

    doc = json.loads(out["rows.json"].read_text())
    chosen = doc["rows"][doc["recommended"]]
    assert len(doc["rows"]) == 12
    cells = best[0].split()
    assert [float(cells[0]), float(cells[1]), float(cells[2]), int(cells[3])] == [
        chosen["sigma_multiplier"], chosen["floor_bits"], chosen["fallback_bits"],
        chosen["window"]]
    assert float(cells[5]) == pytest.approx(chosen["recall"], abs=5e-4)
    if doc["target_met"]:
        assert chosen["fpr"] <= 0.05
        assert chosen["recall"] == max(r["recall"] for r in doc["rows"] if r["fpr"] <= 0.05)

    params = engine_params(str(out["tuned.toml"]), Settings())
    assert params == load_params(out["tuned.toml"].read_text())
    assert (params.sigma_multiplier, params.floor_bits, params.window) == (
        chosen["sigma_multiplier"], chosen["floor_bits"], chosen["window"])
    assert params.min_runs_locked == 20  # the base config's own keys are kept

    png = out["curves.png"].read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    page = out["report.html"].read_text()
    assert '<table id="grid">' in page and page.count("<tr") == 13  # header + 12 rows
    assert "data:image/png;base64," in page
    assert f"<td>{chosen['recall']:.3f}</td>" in page
    assert "[engine]" in page


def test_tune_without_numpy_says_how_to_install(tmp_path: Path) -> None:
    script = ("import sys; sys.modules['numpy'] = None; from ratchet.cli.main import main; "
              f"sys.exit(main(['tune', '--input', {str(tmp_path / 'x.jsonl')!r}]))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert "pip install 'ratchet-firewall[tune]'" in done.stderr


async def test_tune_labels_from_approvals_and_apply_sets_an_audited_override(
    events_file: Path, tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    """Rejected events are the anomalies; --apply stores the recommendation as the project's
    override (what workers pick up), audited with actor cli."""
    from redis.asyncio import Redis

    from ratchet.store.audit import AuditLog
    from ratchet.store.engine_overrides import load_override
    from ratchet.store.keys import Keys
    from ratchet.store.verdicts import Approval, VerdictStore

    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    rejected = [e["event_id"] for e in events if e["label"]]
    approved = [e["event_id"] for e in events if not e["label"]][:5]
    keys = Keys(key_prefix)
    redis = Redis.from_url(redis_url)
    try:
        store = VerdictStore(redis, keys)
        await redis.hset(keys.project("demo"), "name", "demo")  # as `projects create` writes
        for event_id, decision in [(e, "reject") for e in rejected] + [
                (e, "approve") for e in approved]:
            await redis.zadd(keys.paused("demo"), {event_id: 1.0})  # as a paused verdict is
            outcome, _ = await store.resolve("demo", event_id,
                                             Approval(decision, "", "cli", 1.0), 3600)
            assert outcome.name == "RESOLVED"
        done = ratchet_cli(
            ["tune", "--input", str(events_file), "--labels-from-approvals", "--project", "demo",
             "--warmup", str(WARMUP), "--no-guardrails", "--sigma", "3", "--floor", "10,14",
             "--fallback", "12", "--window", "10", "--target-fpr", "0.5", "--no-verify",
             "--apply", "--json", str(tmp_path / "rows.json")],
            {"RATCHET_REDIS_URL": redis_url, "RATCHET_KEY_PREFIX": key_prefix},
        )
        assert done.returncode == 0, done.stderr
        assert (f"labels: {len(rejected)} rejected events of project demo anomalous, "
                f"{len(approved)} approved") in done.stdout
        assert "applied as the engine override of project demo (audited)" in done.stdout
        doc = json.loads((tmp_path / "rows.json").read_text())
        chosen = doc["rows"][doc["recommended"]]
        stored = await load_override(redis, keys, "demo")
        assert stored.version == 1 and stored.updated_by == "cli"
        assert stored.values == {
            "sigma_multiplier": chosen["sigma_multiplier"], "floor_bits": chosen["floor_bits"],
            "fallback_bits": chosen["fallback_bits"], "window": chosen["window"],
            "window_large": chosen["window"] + 5,
        }
        audit = AuditLog(redis, keys, Settings(key_prefix=key_prefix))
        entries = [e for e in (await audit.page("demo")).entries
                   if e.action == "engine.override_replaced"]
        assert len(entries) == 1 and entries[0].actor == "cli"
        assert entries[0].details["engine"] == stored.values
        # the labels really came from the approvals: the same as the file's own labels
        own = json.loads((tmp_path / "rows.json").read_text())["rows"][0]
        assert own["tp"] + own["fn"] == len({e["run_id"] for e in events if e["label"]})
    finally:
        await redis.aclose()


async def test_apply_refuses_a_setting_that_misses_the_target_unless_forced(
    events_file: Path, tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    """No setting meets the target: --apply stores nothing and exits 1 saying what to do;
    --force stores the closest one, audited as the --operator."""
    from redis.asyncio import Redis

    from ratchet.store.audit import AuditLog
    from ratchet.store.engine_overrides import load_override
    from ratchet.store.keys import Keys

    keys = Keys(key_prefix)
    redis = Redis.from_url(redis_url)
    env = {"RATCHET_REDIS_URL": redis_url, "RATCHET_KEY_PREFIX": key_prefix}
    engine = tmp_path / "engine.toml"
    engine.write_text("[engine]\nfloor_bits = 1.0\nfallback_bits = 1.0\nceiling_bits = 1.0\n"
                      "escape_floor_bits = 1.0\n")
    args = ["tune", "--input", str(events_file), "--project", "demo", "--config", str(engine),
            "--warmup", str(WARMUP), "--no-guardrails", "--sigma", "3", "--floor", "1",
            "--fallback", "1", "--window", "10", "--target-fpr", "0", "--no-verify",
            "--apply", "--json", str(tmp_path / "rows.json")]
    try:
        await redis.hset(keys.project("demo"), "name", "demo")
        done = ratchet_cli(args, env)
        assert not json.loads((tmp_path / "rows.json").read_text())["target_met"], done.stdout
        assert done.returncode == 1, done.stderr
        assert "no setting meets FPR <= 0" in done.stdout
        assert "applied as" not in done.stdout
        assert ("no setting meets FPR <= 0, so nothing was applied to project demo; relax "
                "--target-fpr") in done.stderr and "--force" in done.stderr
        assert (await load_override(redis, keys, "demo")).version == 0

        done = ratchet_cli([*args, "--force", "--operator", "alice"], env)
        assert done.returncode == 0, done.stderr
        assert "--force: it does not meet the target" in done.stdout
        stored = await load_override(redis, keys, "demo")
        assert stored.version == 1 and stored.updated_by == "operator:alice"
        audit = AuditLog(redis, keys, Settings(key_prefix=key_prefix))
        entries = [e for e in (await audit.page("demo")).entries
                   if e.action == "engine.override_replaced"]
        assert [e.actor for e in entries] == ["operator:alice"]

        bad = ratchet_cli(["tune", "--input", str(events_file), "--force"], env)
        assert bad.returncode == 2 and "--force and --operator go with --apply" in bad.stderr
    finally:
        await redis.aclose()


async def test_rescoring_follows_the_step_order_rule(tmp_path: Path, redis_url: str) -> None:
    """With the high-entropy assistant in the traffic, some chains are judged on their step
    order (``unlearnable_rule``) and hold what they flag: the re-scoring still equals the
    engine at the recorded point, learning included, and re-judges those moves by each
    point's floor — exactly where nothing is learned differently."""
    path = tmp_path / "assistant.jsonl"
    events = generate(agents=6, runs_per_agent=90, warmup_runs=WARMUP, anomaly_rate=0.2, seed=4)
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    rec = await _record(path, redis_url, FAST)
    traces = [t for t in rec.traces if t is not None]
    assert any(b >= 0 for t in traces for b in t.order_bits)
    assert any(t.holds_flags for t in traces)
    labels = run_labels(rec, warmup_runs=WARMUP)
    points = [FAST, FAST.replace(floor_bits=19.95)]  # over any score: nothing off order
    result = evaluate(rec, points, labels, keep=(0, 1))
    assert result.agreement == (len(rec), len(rec))
    assert result.learn_diff[0] == 0
    real = await _verdicts(path, redis_url, points[1])
    if result.learn_diff[1] == 0:
        assert result.confusion(1) == _run_confusion(real, labels)
    else:
        measured, estimated = _run_confusion(real, labels), result.confusion(1)
        assert abs(estimated.recall - measured.recall) <= TOLERANCE, (estimated, measured)
        assert abs(estimated.fpr - measured.fpr) <= TOLERANCE, (estimated, measured)
