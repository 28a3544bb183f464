"""Detection quality on synthetic agent traffic, through the real engine on a real redis-server.

    python -m benchmarks.detection [--seeds 101,202,303 | --tuning] [--agents 12] [--runs 400]
                                   [--warmup 150] [--anomaly-rate 0.1] [--config engine.toml]
                                   [--review none|oracle] [--guardrails | --policy FILE] [--rich]
                                   [--json FILE]

Protocol: for each seed, generate ``ratchet.sandbox.traffic`` (labelled anomalies only after
``--warmup`` runs per agent) and replay every event through ``ratchet replay``'s code path
(learning on, one engine call per 500 events, runs interleaved as generated, a fresh key
namespace per seed). Figures count runs after each agent's warm-up only and are summed over the
seeds: the detector's opinion (``anomalous`` in any mode) and what was enforced
(flag/pause/reject), per archetype and per anomaly kind, for all agents and for the structured
archetypes (every archetype but the high-entropy ``assistant``, reported apart), and by the
agents' priority habits (``prio:mixed``: some high/critical runs; ``prio:normal``: agents that
never send above normal priority, whose chains never see a high-priority call).

Seeds. The primary figures are on :data:`REPORTED_SEEDS` (the default of ``--seeds``).
Detection defaults (``models/params.py``) are to be chosen on :data:`TUNING_SEEDS`
(``--tuning``) only, never on the reported ones, so a reported figure is an out-of-sample one.

Reviewer. By default nobody reviews (``--review none``): what the engine does alone — a paused
legitimate branch is never learned and keeps being paused. ``--review oracle`` acts as a
reviewer that knows the true labels (approve paused normal events so the baseline learns them,
reject paused anomalies); its figures are labelled ORACLE and are not detection figures: they
show what a perfect human in the loop would add.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from models.evaluation import Confusion
from models.guardrails.policy import parse_policy_toml
from models.nodes import chain_for, node_id
from models.params import EngineParams, load_params
from models.skeleton import skeleton_hash
from models.verdict import Verdict
from ratchet.engine.replay import replay
from ratchet.sandbox.demo_report import false_cause
from ratchet.sandbox.servers import redis_for
from ratchet.sandbox.traffic import iter_runs

__all__ = ["REPORTED_SEEDS", "TUNING_SEEDS", "evaluate", "main", "render"]

HIGH_ENTROPY = "assistant"
#: Seeds the published figures come from (``--seeds`` default). Never tune defaults on these.
REPORTED_SEEDS: tuple[int, ...] = (101, 202, 303)
#: Seeds to choose defaults on (``--tuning``). 7 is the seed earlier defaults were picked on.
TUNING_SEEDS: tuple[int, ...] = (1, 2, 3, 7)
assert not set(REPORTED_SEEDS) & set(TUNING_SEEDS)

_Pairs = list[tuple[bool, bool]]


def _confusion(pairs: _Pairs) -> dict[str, Any]:
    c = Confusion.of(pairs)
    return {"recall": round(c.recall, 4), "fpr": round(c.fpr, 5), "precision": round(c.precision, 4),
            "tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn}


class _Tally:
    """Run-level (predicted, actual) pairs per group and per anomaly kind, summed over seeds."""

    def __init__(self) -> None:
        self.detector: dict[str, _Pairs] = defaultdict(list)
        self.enforced: dict[str, _Pairs] = defaultdict(list)
        self.kinds_all: Counter[str] = Counter()
        self.kinds_det: Counter[str] = Counter()
        self.kinds_enf: Counter[str] = Counter()
        #: Where false runs come from (first enforced event of each normal run) and which
        #: anomalous runs were missed: "<dimension>: <value>" -> runs.
        self.false_runs: Counter[str] = Counter()
        self.missed: Counter[str] = Counter()
        #: Normal runs after warm-up per group, and those with a call shape never seen before in
        #: their chain even had every earlier normal event been learned (see _new_shape_runs).
        self.normal_runs: Counter[str] = Counter()
        self.new_shape_runs: Counter[str] = Counter()


async def _one_seed(
    url: str, args: argparse.Namespace, params: EngineParams, seed: int, tally: _Tally,
    per_seed: dict[str, _Tally],
) -> dict[str, Any]:
    runs = list(iter_runs(
        agents=args.agents, runs_per_agent=args.runs, warmup_runs=args.warmup,
        anomaly_rate=args.anomaly_rate, seed=seed,
    ))
    # Replay consumes events in stream order (runs interleaved by time, as generated).
    events = sorted((e for r in runs for e in r.events), key=lambda e: e["ts"])
    source = io.BytesIO(b"".join(orjson.dumps(e) + b"\n" for e in events))
    sink = io.BytesIO()
    summary = await replay(
        source, sink, redis_url=url, params=params, rich=args.rich,
        warmup_runs=args.warmup, review_with_labels=args.review == "oracle",
        guardrails=args.guardrails or args.policy is not None,
        policy=parse_policy_toml(Path(args.policy).read_text()) if args.policy else None,
    )
    verdicts = {v["event_id"]: v for v in map(orjson.loads, sink.getvalue().splitlines())}
    mine = per_seed[str(seed)] = _Tally()
    novel = _new_shape_runs(events, rich=args.rich)
    enforced_nodes: set[tuple[str, str]] = set()  # (chain, node) enforced in an earlier run
    for run in runs:
        vs = [verdicts[e["event_id"]] for e in run.events]
        det = any(v["anomalous"] for v in vs)
        enf = any(v["action"] != "allow" for v in vs)
        if run.index < args.warmup:
            enforced_nodes.update((v["chain"], v["edge"]["to"]) for v in vs if v["action"] != "allow")
            continue
        if not run.anomalous:
            group = HIGH_ENTROPY if run.archetype == HIGH_ENTROPY else "structured"
            for g in (group, "all"):
                tally.normal_runs[g] += 1
                tally.new_shape_runs[g] += run.run_id in novel
        if enf and not run.anomalous:
            _why_false(tally.false_runs, run.archetype, vs, enforced_nodes)
        if run.anomaly and not enf:
            tally.missed[f"{run.archetype}: {run.anomaly}"] += 1
        enforced_nodes.update((v["chain"], v["edge"]["to"]) for v in vs if v["action"] != "allow")
        for t in (tally, mine):
            for group in (run.archetype, "all", f"prio:{run.priorities}",
                          "structured" if run.archetype != HIGH_ENTROPY else ""):
                if group:
                    t.detector[group].append((det, run.anomalous))
                    t.enforced[group].append((enf, run.anomalous))
            if run.anomaly:
                t.kinds_all[run.anomaly] += 1
                t.kinds_det[run.anomaly] += det
                t.kinds_enf[run.anomaly] += enf
    return {"seed": seed, "events": summary.events, "seconds": round(summary.seconds, 1),
            "review": {"approved": summary.approved, "rejected": summary.rejected},
            "chains_by_final_mode": dict(summary.final_modes)}


def _new_shape_runs(events: list[dict[str, Any]], *, rich: bool) -> set[str]:
    """Runs with a normal event whose call shape (Markov node) its chain had never seen, even
    had every earlier *normal* event been learned at once (an oracle reviewer approving every
    legitimate event the moment it is held). A detector that flags every never-seen shape — what
    novel-shape and shape-drift recall need — flags at least these normal runs: a floor under
    its false-positive rate that no threshold can move."""
    known: dict[Any, set[str]] = defaultdict(set)
    out: set[str] = set()
    for e in events:
        node = node_id(skeleton_hash(e["payload"]), service=e["service"], action=e["action"],
                       rich=rich)
        seen = known[chain_for(e["project_id"], e["agent_id"], e["service"], e["priority"])]
        if not e["label"]:
            if node not in seen:
                out.add(e["run_id"])
            seen.add(node)
    return out


def _why_false(
    out: Counter[str], archetype: str, vs: list[dict[str, Any]], seen: set[tuple[str, str]]
) -> None:
    """Count a false run by its first enforced event: archetype, mode, cause, and whether the
    node it reached was already enforced in an earlier run of the chain (a held shape again)."""
    v = next(x for x in vs if x["action"] != "allow")
    verdict = Verdict.from_dict(v)
    cause = false_cause(verdict)
    if any(r.detail.get("loop_note") for r in verdict.reasons if r.source == "markov"):
        cause = "markov: loop"
    again = (v["chain"], v["edge"]["to"]) in seen
    group = HIGH_ENTROPY if archetype == HIGH_ENTROPY else "structured"
    out[f"archetype: {archetype}"] += 1
    out[f"{group} mode: {v['mode']}"] += 1
    out[f"{group} cause: {cause}" + (" (again)" if again else " (first time)")] += 1


async def evaluate(
    url: str, args: argparse.Namespace, params: EngineParams, seeds: Sequence[int]
) -> dict[str, Any]:
    """Replay every seed's traffic and sum the run-level figures over the seeds."""
    tally = _Tally()
    per_seed: dict[str, _Tally] = {}
    replays = [await _one_seed(url, args, params, s, tally, per_seed) for s in seeds]
    return {
        "seeds": list(seeds),
        "review": args.review,
        "events": sum(r["events"] for r in replays),
        "runs_after_warmup": len(tally.detector["all"]),
        "seconds": round(sum(r["seconds"] for r in replays), 1),
        "replays": replays,
        "detector": {g: _confusion(p) for g, p in sorted(tally.detector.items())},
        "enforced": {g: _confusion(p) for g, p in sorted(tally.enforced.items())},
        "recall_by_kind": {
            k: {"runs": n, "detector": round(tally.kinds_det[k] / n, 3),
                "enforced": round(tally.kinds_enf[k] / n, 3)}
            for k, n in sorted(tally.kinds_all.items())
        },
        "new_shape_floor": {
            g: {"normal_runs": n, "with_a_new_shape": tally.new_shape_runs[g],
                "fpr_floor": round(tally.new_shape_runs[g] / n, 5) if n else 0.0}
            for g, n in sorted(tally.normal_runs.items())
        },
        "false_runs": dict(sorted(tally.false_runs.items())),
        "missed_runs": dict(sorted(tally.missed.items())),
        "per_seed": {
            s: {g: {"detector": _confusion(t.detector[g]), "enforced": _confusion(t.enforced[g])}
                for g in ("structured", HIGH_ENTROPY, "all")}
            for s, t in per_seed.items()
        },
    }


def render(res: dict[str, Any]) -> str:
    review = ("ORACLE reviewer (knows the true labels; not a detection figure)"
              if res["review"] == "oracle" else "no reviewer")
    p = res["params"]
    what = ("chain + guardrails" if p["guardrails"] else "chain alone") + (
        " (rich)" if p["rich"] else "")
    seeds = ",".join(map(str, res["seeds"]))
    lines = [f"seeds {seeds} ({res['seed_set']}); {review}; {what}",
             f"{res['events']} events, {res['runs_after_warmup']} runs after warm-up, "
             + f"{res['seconds']}s"]
    for r in res["replays"]:
        extra = (f"; reviewer approved {r['review']['approved']}, rejected "
                 f"{r['review']['rejected']}" if res["review"] == "oracle" else "")
        lines.append(f"  seed {r['seed']}: final modes {r['chains_by_final_mode']}{extra}")
    lines += ["", f"{'group':12} {'detector R':>10} {'FPR':>8} {'enforced R':>11} {'FPR':>8}"]
    for g in res["detector"]:
        d, e = res["detector"][g], res["enforced"][g]
        lines.append(f"{g:12} {d['recall']:10.3f} {d['fpr']:8.4f} {e['recall']:11.3f} "
                     f"{e['fpr']:8.4f}")
    lines += ["", f"{'anomaly kind':14} {'runs':>5} {'detector':>9} {'enforced':>9}"]
    for k, r in res["recall_by_kind"].items():
        lines.append(f"{k:14} {r['runs']:5d} {r['detector']:9.3f} {r['enforced']:9.3f}")
    if res.get("new_shape_floor"):
        lines += ["", ("normal runs with a call shape new to their chain even under instant "
                       "learning of every earlier normal event (FPR floor of flagging new "
                       "shapes):")]
        lines += [f"  {g}: {v['with_a_new_shape']} of {v['normal_runs']} = {v['fpr_floor']:.4f}"
                  for g, v in res["new_shape_floor"].items()]
    if _has_breakdown(res):
        lines += ["", ("false runs (first enforced event; 'again': its node was enforced in "
                       "an earlier run of the chain):")]
        lines += [f"  {k}: {n}" for k, n in res["false_runs"].items()]
        lines += ["missed anomalous runs (archetype: kind):"]
        lines += [f"  {k}: {n}" for k, n in res["missed_runs"].items()]
    if len(res["per_seed"]) > 1:
        lines += ["", "per seed, enforced (recall / FPR):"]
        for s, groups in res["per_seed"].items():
            cells = "  ".join(f"{g} {v['enforced']['recall']:.3f} / {v['enforced']['fpr']:.4f}"
                              for g, v in groups.items())
            lines.append(f"  seed {s}: {cells}")
    return "\n".join(lines)


def _has_breakdown(res: dict[str, Any]) -> bool:
    return bool(res.get("false_runs") or res.get("missed_runs"))


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds wants comma-separated integers, got {text!r}")
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds must name at least one seed")
    return seeds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--agents", type=int, default=12)
    ap.add_argument("--runs", type=int, default=400, help="runs per agent")
    ap.add_argument("--warmup", type=int, default=150, help="normal-only runs per agent first")
    ap.add_argument("--anomaly-rate", type=float, default=0.1)
    seeds = ap.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=_seeds, default=REPORTED_SEEDS,
                       help="comma-separated traffic seeds (default: the reported seeds "
                       f"{','.join(map(str, REPORTED_SEEDS))})")
    seeds.add_argument("--tuning", action="store_true",
                       help=f"use the tuning seeds {','.join(map(str, TUNING_SEEDS))} (choose "
                       "defaults here, report on the default seeds)")
    ap.add_argument("--config", help="TOML with an [engine] table overriding defaults")
    ap.add_argument("--review", choices=("none", "oracle"), default="none",
                    help="'none' (default): nobody reviews held events. 'oracle': a reviewer "
                    "that knows the true labels approves held normal events and rejects held "
                    "anomalies (not a detection figure; labelled ORACLE)")
    ap.add_argument("--rich", action="store_true", help="rich Markov mode")
    ap.add_argument("--guardrails", action="store_true",
                    help="also apply the guardrails with the default policy (default: the chain "
                    "alone)")
    ap.add_argument("--policy", help="apply the guardrails with this policy TOML")
    ap.add_argument("--redis-url")
    ap.add_argument("--json", help="write results as JSON to this file")
    args = ap.parse_args(argv)
    seed_list = TUNING_SEEDS if args.tuning else args.seeds
    seed_set = ("tuning seeds" if set(seed_list) <= set(TUNING_SEEDS)
                else "reported seeds" if set(seed_list) <= set(REPORTED_SEEDS) else "custom seeds")
    params = load_params(Path(args.config).read_text()) if args.config else EngineParams()
    with redis_for(args.redis_url) as url:
        print(f"detection: replaying synthetic traffic for seeds {list(seed_list)}...",
              file=sys.stderr)
        res = asyncio.run(evaluate(url, args, params, seed_list))
    res["seed_set"] = seed_set
    res["params"] = {"floor_bits": params.floor_bits, "fallback_bits": params.fallback_bits,
                     "sigma_multiplier": params.sigma_multiplier, "window_stat": params.window_stat,
                     "min_support": params.min_support, "rich": args.rich,
                     "guardrails": args.guardrails or args.policy is not None,
                     "policy": args.policy, "config": args.config}
    print(render(res))
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(res, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
