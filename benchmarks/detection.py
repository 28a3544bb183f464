"""Detection quality on synthetic agent traffic, through the real engine on a real redis-server.

    python -m benchmarks.detection [--agents 12] [--runs 400] [--warmup 150]
                                   [--anomaly-rate 0.1] [--seed 7] [--config engine.toml]
                                   [--review labels|none] [--rich] [--json FILE]

Protocol: generate ``ratchet.sandbox.traffic`` (labelled anomalies only after ``--warmup`` runs per
agent), replay every event through ``ratchet replay``'s code path (learning on, one engine call per
500 events, runs interleaved as generated), and by default act as the human reviewer with the
labels (approve paused normal events so the baseline learns them, reject paused anomalies) —
without a reviewer, a paused legitimate branch is never learned and keeps being paused.

Figures count runs after each agent's warm-up only: the detector's opinion (``anomalous`` in any
mode) and what was enforced (flag/pause/reject), per archetype and per anomaly kind, for all agents
and for the structured archetypes (every archetype but the high-entropy ``assistant``, whose
random-walk workflow no first-order chain over call shapes can predict; it is reported apart).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson

from models.evaluation import Confusion
from models.guardrails.policy import parse_policy_toml
from models.params import EngineParams, load_params
from ratchet.engine.replay import replay
from ratchet.sandbox.servers import redis_for
from ratchet.sandbox.traffic import iter_runs

HIGH_ENTROPY = "assistant"


def _confusion(pairs: list[tuple[bool, bool]]) -> dict[str, Any]:
    c = Confusion.of(pairs)
    return {"recall": round(c.recall, 4), "fpr": round(c.fpr, 5), "precision": round(c.precision, 4),
            "tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn}


async def evaluate(
    url: str, args: argparse.Namespace, params: EngineParams
) -> dict[str, Any]:
    runs = list(iter_runs(
        agents=args.agents, runs_per_agent=args.runs, warmup_runs=args.warmup,
        anomaly_rate=args.anomaly_rate, seed=args.seed,
    ))
    # Replay consumes events in stream order (runs interleaved by time, as generated).
    events = sorted((e for r in runs for e in r.events), key=lambda e: e["ts"])
    source = io.BytesIO(b"".join(orjson.dumps(e) + b"\n" for e in events))
    sink = io.BytesIO()
    summary = await replay(
        source, sink, redis_url=url, params=params, rich=args.rich,
        warmup_runs=args.warmup, review_with_labels=args.review == "labels",
        guardrails=args.guardrails or args.policy is not None,
        policy=parse_policy_toml(Path(args.policy).read_text()) if args.policy else None,
    )
    verdicts = {v["event_id"]: v for v in map(orjson.loads, sink.getvalue().splitlines())}
    detector: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    enforced: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    kinds_det: Counter[str] = Counter()
    kinds_enf: Counter[str] = Counter()
    kinds_all: Counter[str] = Counter()
    for run in runs:
        if run.index < args.warmup:
            continue
        vs = [verdicts[e["event_id"]] for e in run.events]
        det = any(v["anomalous"] for v in vs)
        enf = any(v["action"] != "allow" for v in vs)
        for group in (run.archetype, "all", "structured" if run.archetype != HIGH_ENTROPY else ""):
            if group:
                detector[group].append((det, run.anomalous))
                enforced[group].append((enf, run.anomalous))
        if run.anomaly:
            kinds_all[run.anomaly] += 1
            kinds_det[run.anomaly] += det
            kinds_enf[run.anomaly] += enf
    return {
        "events": summary.events,
        "runs_after_warmup": len(detector["all"]),
        "seconds": round(summary.seconds, 1),
        "review": {"approved": summary.approved, "rejected": summary.rejected},
        "chains_by_final_mode": dict(summary.final_modes),
        "detector": {g: _confusion(p) for g, p in sorted(detector.items())},
        "enforced": {g: _confusion(p) for g, p in sorted(enforced.items())},
        "recall_by_kind": {
            k: {"runs": n, "detector": round(kinds_det[k] / n, 3),
                "enforced": round(kinds_enf[k] / n, 3)}
            for k, n in sorted(kinds_all.items())
        },
    }


def render(res: dict[str, Any]) -> str:
    lines = [f"{res['events']} events, {res['runs_after_warmup']} runs after warm-up, "
             f"{res['seconds']}s; reviewer approved {res['review']['approved']}, "
             f"rejected {res['review']['rejected']}; final modes {res['chains_by_final_mode']}",
             "", f"{'group':12} {'detector R':>10} {'FPR':>8} {'enforced R':>11} {'FPR':>8}"]
    for g in res["detector"]:
        d, e = res["detector"][g], res["enforced"][g]
        lines.append(f"{g:12} {d['recall']:10.3f} {d['fpr']:8.4f} {e['recall']:11.3f} "
                     f"{e['fpr']:8.4f}")
    lines += ["", f"{'anomaly kind':14} {'runs':>5} {'detector':>9} {'enforced':>9}"]
    for k, r in res["recall_by_kind"].items():
        lines.append(f"{k:14} {r['runs']:5d} {r['detector']:9.3f} {r['enforced']:9.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--agents", type=int, default=12)
    ap.add_argument("--runs", type=int, default=400, help="runs per agent")
    ap.add_argument("--warmup", type=int, default=150, help="normal-only runs per agent first")
    ap.add_argument("--anomaly-rate", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--config", help="TOML with an [engine] table overriding defaults")
    ap.add_argument("--review", choices=("labels", "none"), default="labels")
    ap.add_argument("--rich", action="store_true", help="rich Markov mode")
    ap.add_argument("--guardrails", action="store_true",
                    help="also apply the guardrails with the default policy (default: the chain "
                    "alone)")
    ap.add_argument("--policy", help="apply the guardrails with this policy TOML")
    ap.add_argument("--redis-url")
    ap.add_argument("--json", help="write results as JSON to this file")
    args = ap.parse_args(argv)
    params = load_params(Path(args.config).read_text()) if args.config else EngineParams()
    with redis_for(args.redis_url) as url:
        print("detection: generating and replaying synthetic traffic...", file=sys.stderr)
        res = asyncio.run(evaluate(url, args, params))
    res["params"] = {"floor_bits": params.floor_bits, "fallback_bits": params.fallback_bits,
                     "sigma_multiplier": params.sigma_multiplier, "window_stat": params.window_stat,
                     "min_support": params.min_support, "rich": args.rich,
                     "guardrails": args.guardrails or args.policy is not None,
                     "policy": args.policy}
    print(render(res))
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(res, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
