"""``ratchet tune``: from a recorded events file and labels to a tuned ``[engine]`` setting.

One replay through the real engine on a private key namespace (deleted afterwards; nothing else
is written) records every scored transition (:mod:`ratchet.engine.tune_record`); a grid of
sigma multiplier × floor × fallback × window is then re-scored offline, vectorised with numpy
(:mod:`ratchet.engine.tune_grid`). The table gives run-level precision, recall and FPR per
setting; the recommended setting is the best recall at ``--target-fpr``; it is then measured
by a second real replay (``--no-verify`` skips that). Outputs: the ``[engine]`` TOML
(``--write``), a PNG of the precision–recall and FPR-vs-floor curves (``--png``), a
self-contained HTML report (``--html``), JSON (``--json``), and with ``--project P --apply`` the
project's engine override (the same as ``PUT /v1/policy/engine``, audited).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from models.errors import ConfigError
from models.evaluation import Confusion
from models.events import IngestEvent
from models.params import EngineParams, load_params
from models.scoring import score
from models.verdict import Verdict
from ratchet.cli.connect import require_project
from ratchet.cli.replay import load_policy_file, replay_redis
from ratchet.config.engine import engine_params
from ratchet.config.settings import Settings, get_settings
from ratchet.engine.replay import replay
from ratchet.engine.tune_record import Recorder, Recording
from ratchet.store.keys import Keys

__all__ = ["INSTALL_HINT", "register"]

INSTALL_HINT = (
    "ratchet tune needs numpy and matplotlib: pip install 'ratchet-firewall[tune]' "
    "(or, in a checkout, pip install -e '.[tune]')"
)

_DEFAULT_SIGMA = "2,2.5,3,4,5"
_DEFAULT_FLOOR = "6,8,10,12,14,16"
_DEFAULT_FALLBACK = "8,12,16"
_DEFAULT_WINDOW = "5,10,20"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "tune",
        help="sweep threshold settings over recorded traffic: table, curves, tuned [engine] TOML",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_paragraphs(
            "Replay a recorded events file (the format `ratchet replay` reads) once through the "
            "real engine on a private Redis namespace, then re-score a grid of sigma_multiplier "
            "× floor_bits × fallback_bits × window offline with numpy, and print run-level "
            "precision / recall / FPR per setting (a run counts as detected when any of its "
            "events is flagged, paused or rejected; each agent's first --warmup runs are left "
            "out). The recommended setting has the best recall at FPR <= --target-fpr; it is "
            "measured by a second real replay unless --no-verify.\n\n"
            "Labels: the events' own boolean 'label' fields, or --labels FILE (event ids or run "
            "ids, one per line, or JSON lines with 'event_id'/'run_id': those are anomalous, "
            "everything else normal), or --labels-from-approvals with --project: the project's "
            "stored human decisions (rejected = anomalous, approved or never reviewed = normal).\n\n"
            "Exact and approximate: the rolling window is re-simulated per setting exactly as "
            "the engine does it (the recorded setting reproduces the engine's decisions event "
            "for event; the command checks that). What a setting would change in *learning* "
            "(an event paused instead of learned, or the reverse) is not re-run: the column "
            "learn≠ counts those events per setting; 0 means the row is exact. docs/tuning.md "
            "has the details.\n\n"
            "Needs numpy and matplotlib: pip install 'ratchet-firewall[tune]' (in a checkout: "
            "pip install -e '.[tune]')."
        ,
        ),
    )
    p.add_argument("--input", required=True, help="recorded events (JSONL)")
    p.add_argument("--labels", help="file of anomalous event ids or run ids (see above)")
    p.add_argument("--labels-from-approvals", action="store_true",
                   help="labels from --project's stored approvals and rejections (needs "
                   "--redis-url or RATCHET_REDIS_URL)")
    p.add_argument("--project", help="project for --labels-from-approvals and --apply")
    p.add_argument("--redis-url", help="Redis to replay on (a private namespace; default: a "
                   "private redis-server) and to read approvals from / apply to")
    p.add_argument("--config", help="base [engine] TOML (default: RATCHET_ENGINE_CONFIG or the "
                   "built-in defaults); the grid varies four of its parameters")
    p.add_argument("--policy", help="guardrail policy (TOML) for every project (default: each "
                   "project's stored policy, or the defaults)")
    p.add_argument("--no-guardrails", action="store_true", help="the Markov chain alone")
    p.add_argument("--rich", action="store_true", help="rich Markov mode")
    p.add_argument("--warmup", type=int, default=0, metavar="N",
                   help="leave each agent's first N runs out of the figures (they still train)")
    p.add_argument("--sigma", default=_DEFAULT_SIGMA,
                   help=f"sigma_multiplier values (default {_DEFAULT_SIGMA})")
    p.add_argument("--floor", default=_DEFAULT_FLOOR,
                   help=f"floor_bits values (default {_DEFAULT_FLOOR})")
    p.add_argument("--fallback", default=_DEFAULT_FALLBACK,
                   help=f"fallback_bits values (default {_DEFAULT_FALLBACK})")
    p.add_argument("--window", default=_DEFAULT_WINDOW,
                   help=f"window values (default {_DEFAULT_WINDOW}; window_large moves with it)")
    p.add_argument("--target-fpr", type=float, default=0.01,
                   help="largest acceptable run-level false-positive rate (default 0.01)")
    p.add_argument("--top", type=int, default=15, help="table rows to print (default 15)")
    p.add_argument("--all", action="store_true", help="print every grid point")
    p.add_argument("--no-verify", action="store_true",
                   help="do not measure the recommended setting with a second real replay")
    p.add_argument("--write", metavar="FILE", help="write the recommended [engine] TOML here")
    p.add_argument("--png", metavar="FILE", help="write the curves (PNG) here")
    p.add_argument("--html", metavar="FILE", help="write the HTML report (figure + table) here")
    p.add_argument("--json", metavar="FILE", help="write every row and the choice as JSON")
    p.add_argument("--apply", action="store_true",
                   help="store the recommended setting as --project's engine override "
                   "(audited; workers pick it up without a restart); refused when no setting "
                   "meets --target-fpr unless --force")
    p.add_argument("--force", action="store_true",
                   help="with --apply: store the closest setting (lowest FPR) even when none "
                   "meets --target-fpr")
    p.add_argument("--operator",
                   help="with --apply: who asks (audited as operator:<name>; default 'cli')")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    # --project matters only with --apply / --labels-from-approvals: checked there, after the
    # command's own argument checks
    p.set_defaults(func=_main, project_must_exist=False)


def _paragraphs(text: str) -> str:
    """``text``'s paragraphs (split at blank lines) wrapped for a terminal."""
    return "\n\n".join(textwrap.fill(part, 78, break_on_hyphens=False) for part in text.split("\n\n"))


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--{name} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise ConfigError(f"--{name} needs at least one value")
    return values


def _ints(text: str, name: str) -> tuple[int, ...]:
    values = _floats(text, name)
    if any(v != int(v) or v < 2 for v in values):
        raise ConfigError(f"--{name} must be whole numbers >= 2, got {text!r}")
    return tuple(int(v) for v in values)


def read_marked(path: str) -> set[str]:
    """Anomalous ids of a labels file: one id a line, or JSON lines with event_id / run_id."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--labels {path}: {exc.strerror}") from None
    out: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise ConfigError(f"--labels {path} line {number}: not valid JSON") from None
            ids = [doc.get(k) for k in ("event_id", "run_id") if isinstance(doc.get(k), str)]
            if not ids:
                raise ConfigError(f"--labels {path} line {number}: needs event_id or run_id")
            if doc.get("label", True) is not False:
                out.update(ids)
        else:
            out.add(line)
    return out


class _Bar:
    """A progress bar on stderr when it is a terminal; one closing line otherwise."""

    def __init__(self, stream: IO[str], what: str, enabled: bool) -> None:
        self.stream, self.what, self.enabled = stream, what, enabled
        self.tty = enabled and stream.isatty()
        self.started = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        if not self.tty:
            return
        filled = int(30 * done / max(total, 1))
        self.stream.write(f"\r{self.what} [{'#' * filled}{'.' * (30 - filled)}] "
                          f"{100 * done / max(total, 1):3.0f}%")
        self.stream.flush()

    def close(self, note: str) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.started
        self.stream.write(("\r" if self.tty else "") + f"{self.what}: {note} in {elapsed:.1f}s"
                          + " " * 20 + "\n")
        self.stream.flush()


async def _approval_marked(url: str, settings: Settings, project: str,
                           event_ids: Sequence[str]) -> tuple[set[str], int]:
    """(rejected event ids, approved count) of ``project`` among ``event_ids``."""
    from ratchet.cli.connect import open_redis
    from ratchet.store.verdicts import VerdictStore

    client = await open_redis(settings, url)
    try:
        store = VerdictStore(client, Keys(settings.key_prefix))
        found = await store.approvals(project, event_ids)
        rejected = {e for e, a in found.items() if a.decision == "reject"}
        approved = len(found) - len(rejected)
        return rejected, approved
    finally:
        await client.aclose()


def _record(args: argparse.Namespace, url: str, settings: Settings, params: EngineParams,
            total: int) -> Recording:
    recorder = Recorder(params)
    policy = load_policy_file(args.policy) if args.policy else None
    bar = _Bar(sys.stderr, "record", not args.quiet)
    with Path(args.input).open("rb") as source:
        summary = asyncio.run(replay(
            source, io.BytesIO(), redis_url=url, params=params, settings=settings,
            rich=args.rich or settings.rich_markov, total=total, progress=sys.stderr if bar.tty else None,
            policy=policy, policy_keys=Keys(settings.key_prefix),
            guardrails=not args.no_guardrails, on_engine=recorder.attach,
            on_verdict=recorder.verdict,
        ))
    if summary.invalid:
        raise ConfigError(f"--input {args.input}: {summary.invalid} invalid lines (see "
                          "`ratchet replay` for which)")
    bar.close(f"{summary.events} events replayed through the engine")
    return recorder.recording


def _measure(args: argparse.Namespace, url: str, settings: Settings, params: EngineParams,
             labels: Any, recording: Recording) -> Confusion:
    """Run-level enforced confusion of a real replay with ``params`` (same labels, warm-up)."""
    import numpy as np

    enforced: list[bool] = []

    def seen(event: IngestEvent, v: Verdict) -> None:
        enforced.append(v.action != "allow" and not v.duplicate)

    policy = load_policy_file(args.policy) if args.policy else None
    with Path(args.input).open("rb") as source:
        asyncio.run(replay(
            source, io.BytesIO(), redis_url=url, params=params, settings=settings,
            rich=args.rich or settings.rich_markov, policy=policy,
            policy_keys=Keys(settings.key_prefix), guardrails=not args.no_guardrails,
            on_verdict=seen,
        ))
    if len(enforced) != len(recording):
        raise ConfigError("tune: the verification replay saw a different number of events")
    detected = np.zeros(len(labels.anomalous), dtype=np.bool_)
    np.logical_or.at(detected, labels.run_of_event, np.array(enforced, dtype=np.bool_))
    det = detected[labels.scored]
    truth = labels.anomalous[labels.scored]
    return Confusion(int((det & truth).sum()), int((det & ~truth).sum()),
                     int((~det & truth).sum()), int((~det & ~truth).sum()))


def _main(args: argparse.Namespace) -> int:
    try:
        import matplotlib  # noqa: F401
        import numpy  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    from ratchet.cli import tune_report as report
    from ratchet.engine.tune_grid import Grid, evaluate, run_labels

    settings = get_settings()
    base = engine_params(args.config, settings)
    grid = Grid(_floats(args.sigma, "sigma"), _floats(args.floor, "floor"),
                _floats(args.fallback, "fallback"), _ints(args.window, "window"))
    if not 0 <= args.target_fpr <= 1:
        raise ConfigError("--target-fpr must be within [0, 1]")
    if args.warmup < 0:
        raise ConfigError("--warmup must be >= 0")
    if (args.apply or args.labels_from_approvals) and not args.project:
        raise ConfigError("--apply and --labels-from-approvals need --project")
    if (args.force or args.operator) and not args.apply:
        raise ConfigError("--force and --operator go with --apply")
    if args.labels and args.labels_from_approvals:
        raise ConfigError("give --labels or --labels-from-approvals, not both")
    src = Path(args.input)
    if not src.is_file():
        raise ConfigError(f"--input {args.input}: no such file")
    try:  # every point must be a valid engine setting before the long part
        points = grid.points(base)
    except ConfigError as exc:
        raise ConfigError(f"grid: {exc}") from None
    marked = read_marked(args.labels) if args.labels else None
    stored_url = args.redis_url or settings.redis_url
    if (args.labels_from_approvals or args.apply) and not stored_url:
        raise ConfigError("--labels-from-approvals and --apply need --redis-url or "
                          "RATCHET_REDIS_URL (the deployment's Redis)")
    if (args.labels_from_approvals or args.apply) and args.project and stored_url:
        asyncio.run(require_project(settings, args.project, stored_url))
    total = sum(1 for line in src.open("rb") if line.strip())
    err = sys.stderr
    with replay_redis(stored_url, settings) as (url, settings):
        recording = _record(args, url, settings, base, total)
        notes: list[str] = []
        if args.labels_from_approvals:
            rejected, approved = asyncio.run(_approval_marked(
                url, settings, args.project, recording.event_ids))
            marked = rejected
            notes.append(f"labels: {len(rejected)} rejected events of project {args.project} "
                         f"anomalous, {approved} approved; unreviewed events normal")
        labels = run_labels(recording, warmup_runs=args.warmup, marked=marked)
        bar = _Bar(err, "grid", not args.quiet)
        result = evaluate(recording, points, labels, progress=bar)
        bar.close(f"{len(points)} settings × {len(recording)} events")
        agree, n = result.agreement
        if agree != n:
            raise ConfigError(f"tune: the re-scoring reproduces only {agree} of {n} decisions "
                              "at the recorded setting; its figures would be wrong")
        best, met = result.recommend(args.target_fpr)
        chosen = result.points[best]
        measured = None
        if not args.no_verify:
            vbar = _Bar(err, "verify", not args.quiet)
            measured = _measure(args, url, settings, chosen, labels, recording)
            vbar.close("the recommended setting replayed through the engine")
        refused = args.apply and not met and not args.force
        if args.apply and not refused:
            _apply(url, settings, args.project, chosen,
                   f"operator:{args.operator}" if args.operator else "cli")

    rows = result.rows()
    marks = {0: "recorded setting"}
    marks[best] = "recommended" if best else "recommended (= recorded setting)"
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["fpr"] > args.target_fpr,
                                                     -rows[i]["recall"], -rows[i]["precision"],
                                                     rows[i]["fpr"]))
    shown = order if args.all else order[: max(args.top, 1)]
    for must in (best, 0):
        if must not in shown:
            shown.append(must)
    table_rows = [rows[i] for i in shown]
    table_marks = {pos: marks[i] for pos, i in enumerate(shown) if i in marks}
    c = result.confusion(best)
    summary = [
        (f"{len(recording)} events, {labels.runs} scored runs "
         f"({int(labels.anomalous[labels.scored].sum())} anomalous), warm-up {args.warmup} "
         f"runs per agent; decisions at the recorded setting reproduced: {agree}/{n}"),
        *notes,
        (f"recommended (best recall at FPR <= {args.target_fpr:g}): " if met else
         f"no setting meets FPR <= {args.target_fpr:g}; lowest FPR: ")
        + f"sigma {chosen.sigma_multiplier:g}, floor {chosen.floor_bits:g}, fallback "
        f"{chosen.fallback_bits:g}, window {chosen.window}: estimated precision "
        f"{c.precision:.3f} recall {c.recall:.3f} FPR {c.fpr:.4f} "
        f"(learn≠ {rows[best]['learn_diff']})",
    ]
    if best:
        r0 = rows[0]
        cap = score(0.0, chosen.epsilon)
        summary.append(
            f"against the recorded setting (sigma {base.sigma_multiplier:g}, floor "
            f"{base.floor_bits:g}, fallback {base.fallback_bits:g}, window {base.window}): "
            f"recall {r0['recall']:.3f} -> {c.recall:.3f}, FPR {r0['fpr']:.4f} -> {c.fpr:.4f}"
            + (f" — at a floor of {cap:.2f} bits or more (the score of a never-seen transition) no "
               "transition is ever anomalous; only the repeat limit (loops) detects"
               if chosen.floor_bits >= cap else "")
        )
    if measured is not None:
        summary.append(
            f"measured by a real replay: precision {measured.precision:.3f} recall "
            f"{measured.recall:.3f} FPR {measured.fpr:.4f} (tp={measured.tp} fp={measured.fp} "
            f"fn={measured.fn} tn={measured.tn})"
        )
    if args.apply and not refused:
        summary.append(f"applied as the engine override of project {args.project} (audited)"
                       + ("" if met else "; --force: it does not meet the target"))
    toml = report.engine_toml(
        chosen, base, f"ratchet tune --input {src.name}: best recall at FPR <= "
        f"{args.target_fpr:g}" + (f"\nmeasured: precision {measured.precision:.3f} recall "
                                  f"{measured.recall:.3f} FPR {measured.fpr:.4f}"
                                  if measured is not None else ""),
    )
    load_params(toml)  # what is written must load
    print(report.format_table(table_rows, table_marks))
    print()
    print("\n".join(summary))
    if args.write:
        Path(args.write).write_text(toml, encoding="utf-8")
    png = None
    if args.png or args.html:
        png = report.png_figure(rows, best, f"ratchet tune — {src.name}")
        if args.png:
            Path(args.png).write_bytes(png)
    if args.html:
        assert png is not None
        all_marks = {i: marks[i] for i in marks}
        Path(args.html).write_text(report.html_report(rows, all_marks, png, summary, toml),
                                   encoding="utf-8")
    if args.json:
        Path(args.json).write_bytes(orjson.dumps({
            "rows": rows, "recommended": best, "target_met": met,
            "measured": measured.as_dict() if measured is not None else None,
            "agreement": [agree, n], "summary": summary,
        }, option=orjson.OPT_INDENT_2))
    if refused:
        print(f"error: no setting meets FPR <= {args.target_fpr:g}, so nothing was applied to "
              f"project {args.project}; relax --target-fpr (the lowest FPR above is "
              f"{c.fpr:.4f}), or add --force to store that closest setting anyway",
              file=sys.stderr)
        return 1
    return 0


def _apply(url: str, settings: Settings, project: str, chosen: EngineParams,
           actor: str) -> None:
    """Store the grid parameters of ``chosen`` as ``project``'s override (audited as
    ``actor``: ``cli`` or ``operator:<name>``)."""
    from models.overrides import parse_override
    from ratchet.cli.overrides import apply_override

    keys = ("sigma_multiplier", "floor_bits", "fallback_bits", "window", "window_large")
    values = parse_override({k: getattr(chosen, k) for k in keys})
    asyncio.run(apply_override(settings, url, project, values, actor))
