"""Detection quality on HDFS (DeepLog split), through the real engine on a real redis-server.

    python -m benchmarks.hdfs --data hdfs_deeplog.tsv [--json FILE]
                              [--config engine.toml] [--holdout 0.2]

Protocol (the dataset's README): learn on the 4,855 ``train`` normals, then score every ``test``
session without learning; a session is anomalous if any of its events is. Report recall on the
16,838 anomalies and the FPR on the 7,000 normals, then extrapolate to the full split
(FP ≈ FPR × 553,366) for precision and F1. Mapping: one session = one run of one agent; each
template id = one action whose payload has its own JSON shape.

Training data are normal by the protocol (DeepLog learns every training session). A chain that
locks during training pauses the rare normal transitions it has not seen yet and holds them back
from learning; the benchmark approves those held *training* events through the engine's feedback
(the training labels, never the test ones) and reports how many it approved.
``--no-approve-train`` leaves them held instead (what an unattended deployment would learn).

``--holdout F`` is for tuning without test labels: learn on the first (1-F) of the train
normals and report only the FPR on the held-out normals.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from models.events import IngestEvent
from models.params import EngineParams, load_params
from ratchet.engine.engine import Engine
from ratchet.sandbox.servers import redis_for
from ratchet.store.keys import Keys

FULL_NORMAL_TEST = 553_366
PUBLISHED = {
    "DeepLog (LSTM, CCS 2017)": (0.95, 0.96, 0.96),
    "N-gram baseline (same paper)": (0.92, 0.96, 0.94),
    "Invariant Mining": (0.88, 0.93, 0.90),
    "PCA": (0.98, 0.68, 0.80),
}


@dataclass(frozen=True, slots=True)
class Session:
    label: int
    split: str
    sid: str
    templates: tuple[str, ...]


def load(path: Path) -> list[Session]:
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            label, split, sid, seq = line.rstrip("\n").split("\t")
            out.append(Session(int(label), split, sid, tuple(seq.split())))
    return out


def template_key(template: str) -> str:
    """A payload key of its own per template. Digits are spelled as letters: a key such as
    ``template_5`` looks like an id (``sku_123`` style) and would collapse every template into
    one ``<map>`` shape.

    >>> template_key("5"), template_key("12")
    ('template_f', 'template_bc')
    """
    return "template_" + "".join(chr(ord("a") + int(d)) if d.isdigit() else d for d in template)


def session_events(s: Session, prefix: str) -> list[IngestEvent]:
    n = len(s.templates)
    return [
        IngestEvent(
            event_id=f"{prefix}{s.sid}-{i}", agent_id="hdfs-datanode", run_id=f"{prefix}{s.sid}",
            service="hdfs", action=f"template.{t}", payload={template_key(t): "x"},
            project_id="hdfs", end_of_run=i == n - 1,
        )
        for i, t in enumerate(s.templates)
    ]


async def run_sessions(
    engine: Engine, sessions: Sequence[Session], *, learn: bool, prefix: str, per_call: int = 40,
    approved: list[int] | None = None,
) -> list[bool]:
    """Feed sessions in order, ``per_call`` whole sessions per engine call; flags per session.

    With ``approved`` (a one-element counter), every held event is approved right after its
    batch (training data are normal by the protocol) and counted there."""
    flags: list[bool] = []
    for i in range(0, len(sessions), per_call):
        chunk = sessions[i : i + per_call]
        events: list[IngestEvent] = []
        bounds = []
        for s in chunk:
            evs = session_events(s, prefix)
            bounds.append((len(events), len(events) + len(evs)))
            events += evs
        verdicts = await engine.decide(events, learn=learn)
        flags += [any(v.anomalous for v in verdicts[a:b]) for a, b in bounds]
        if approved is not None:
            for v in verdicts:
                if v.held:
                    res = await engine.feedback(v.chain_tag, v.run_id, v.event_id, "approve")
                    approved[0] += res.applied
    return flags


def figures(recall: float, fpr: float, anomalies: int) -> dict[str, float]:
    tp = recall * anomalies
    fp = fpr * FULL_NORMAL_TEST
    precision = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"recall": recall, "fpr": fpr, "extrapolated_fp": fp,
            "extrapolated_precision": precision, "extrapolated_f1": f1}


async def evaluate(
    url: str, sessions: list[Session], params: EngineParams, holdout: float,
    approve_train: bool = True,
) -> dict[str, Any]:
    client = Redis.from_url(url)
    engine = Engine.create(
        client, keys=Keys(f"hdfs{uuid.uuid4().hex[:8]}"), params=params, guardrails=False
    )
    train = [s for s in sessions if s.split == "train"]
    approved = [0] if approve_train else None
    try:
        started = time.perf_counter()
        if holdout > 0:
            cut = int(len(train) * (1 - holdout))
            await run_sessions(engine, train[:cut], learn=True, prefix="tr", approved=approved)
            flags = await run_sessions(engine, train[cut:], learn=False, prefix="ho")
            return {"mode": "holdout", "train_sessions": cut, "holdout_sessions": len(flags),
                    "train_approvals": approved[0] if approved else None,
                    "holdout_fpr": sum(flags) / len(flags),
                    "seconds": round(time.perf_counter() - started, 1)}
        await run_sessions(engine, train, learn=True, prefix="tr", approved=approved)
        test = [s for s in sessions if s.split == "test"]
        flags = await run_sessions(engine, test, learn=False, prefix="te")
        seconds = time.perf_counter() - started
        events = sum(len(s.templates) for s in train) + sum(len(s.templates) for s in test)
        anomalies = [f for s, f in zip(test, flags) if s.label == 1]
        normals = [f for s, f in zip(test, flags) if s.label == 0]
        recall = sum(anomalies) / len(anomalies)
        fpr = sum(normals) / len(normals)
        out: dict[str, Any] = {
            "mode": "test",
            "train_sessions": len(train),
            "train_approvals": approved[0] if approved else None,
            "test_anomalies": len(anomalies),
            "test_normals": len(normals),
            "detected_anomalies": sum(anomalies),
            "false_positives": sum(normals),
            **figures(recall, fpr, len(anomalies)),
            "events": events,
            "seconds": round(seconds, 1),
            "events_per_s": round(events / seconds),
        }
        return out
    finally:
        await client.aclose()


def render(res: dict[str, Any], params: EngineParams) -> str:
    if res["mode"] == "holdout":
        return (f"holdout: learned {res['train_sessions']} train normals "
                f"({res['train_approvals']} held training events approved), "
                f"FPR on {res['holdout_sessions']} held-out normals = {res['holdout_fpr']:.4f}")
    lines = [
        (f"engine: floor={params.floor_bits} sigma={params.sigma_multiplier} "
        f"fallback={params.fallback_bits} window={params.window}/{params.window_large} "
        f"min_support={params.min_support} eps={params.epsilon}"),
        (f"recall {res['recall']:.4f} ({res['detected_anomalies']}/{res['test_anomalies']}), "
        f"FPR {res['fpr']:.5f} ({res['false_positives']}/{res['test_normals']})"),
        f"extrapolated FP ≈ {res['extrapolated_fp']:.0f} of {FULL_NORMAL_TEST:,} normals",
        f"held training events approved (training data are normal): {res['train_approvals']}",
        "",
        f"{'method':34} precision recall  F1",
        (f"{'Ratchet (this run, extrapolated)':34} {res['extrapolated_precision']:.3f}     "
        f"{res['recall']:.3f}   {res['extrapolated_f1']:.3f}"),
    ]
    for name, (p, r, f1) in PUBLISHED.items():
        lines.append(f"{name:34} {p:.2f}      {r:.2f}    {f1:.2f}")
    lines.append(f"({res['events']} events in {res['seconds']}s, {res['events_per_s']:,} events/s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", required=True, help="hdfs_deeplog.tsv")
    ap.add_argument("--config", help="TOML with an [engine] table overriding defaults")
    ap.add_argument("--holdout", type=float, default=0.0,
                    help="tune mode: FPR on this fraction of held-out train normals only")
    ap.add_argument("--no-approve-train", action="store_true",
                    help="leave held training events held (default: approve them, the training "
                    "data being normal by the protocol)")
    ap.add_argument("--redis-url")
    ap.add_argument("--json", help="write results as JSON to this file")
    args = ap.parse_args(argv)
    params = load_params(Path(args.config).read_text()) if args.config else EngineParams()
    sessions = load(Path(args.data))
    with redis_for(args.redis_url) as url:
        print(f"hdfs: {len(sessions)} sessions...", file=sys.stderr)
        res = asyncio.run(evaluate(url, sessions, params, args.holdout,
                                   approve_train=not args.no_approve_train))
    print(render(res, params))
    if args.json:
        Path(args.json).write_bytes(orjson.dumps({**res, "params": {
            "floor_bits": params.floor_bits, "sigma_multiplier": params.sigma_multiplier,
            "fallback_bits": params.fallback_bits, "min_support": params.min_support,
            "window": params.window, "window_large": params.window_large,
            "epsilon": params.epsilon}}, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
