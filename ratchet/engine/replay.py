"""Replay (library half): run recorded ingest events through the real engine, offline.

For guardrail authors (backtest a config change against recorded traffic) and for measuring
detection quality. Guardrails run as they do in a worker, with the project's stored policy
(read from the live key prefix of ``--redis-url``; the defaults on a private Redis) or, with
``--policy FILE``, that TOML policy for every project; velocity windows and daily cost sums
follow the events' own ``ts`` (when present), not the replay's clock. Input: JSONL of ingest events (``project_id`` and ``label`` allowed per line).
Output: one verdict per input line, in input order (an invalid line gets an error record, so the
output stays aligned). The command (``ratchet replay``, in :mod:`ratchet.cli.replay`) starts a private
``redis-server`` when it is given no Redis URL; replay works in its own key namespace and deletes it afterwards (``--keep`` keeps it).

``--no-learn --namespace NS`` (what-if against an existing baseline) writes nothing under ``NS``:
the replay runs in a scratch namespace, and the first time a chain, agent or run turns up, the
keys the engine would read for it are copied from ``NS`` (Redis ``COPY``, same hash tag, so the
same cluster slot). Run state, guardrail counts (velocity windows, daily cost) and the agent's
service modes then change only in the scratch namespace, which is deleted afterwards.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from models.errors import ValidationError
from models.evaluation import Confusion, RunTally
from models.events import IngestEvent, parse_event
from models.guardrails import Policy
from models.params import EngineParams
from models.verdict import Verdict
from ratchet.config.settings import Settings
from ratchet.engine.engine import Engine
from ratchet.store.keys import Keys
from ratchet.store.policies import FixedPolicy
from ratchet.store.redis import connect_from_settings
from ratchet.store.scratch import ScratchSeeder

__all__ = ["ReplaySummary", "read_events", "replay"]


@dataclass
class ReplaySummary:
    events: int = 0
    invalid: int = 0
    duplicates: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    anomalous: int = 0
    final_modes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    event_level: Confusion | None = None
    run_level: Confusion | None = None
    #: Runs judged by what was enforced (flag/pause/reject) rather than the detector's opinion.
    enforced_run_level: Confusion | None = None
    #: Runs judged by what stopped an event (pause/reject): flags let the call run.
    blocking_run_level: Confusion | None = None
    #: Distinct runs replayed (labelled or not, warm-up included).
    runs: int = 0
    #: Guardrail matches by rule id (``pii.email``, ``velocity.per_run``, ``pattern.<id>``).
    guardrail_rules: Counter[str] = field(default_factory=Counter)
    #: Runs of each agent excluded from the figures (they still trained the baseline).
    warmup_runs: int = 0
    #: Held events resolved by the label-driven reviewer (--review labels).
    approved: int = 0
    rejected: int = 0
    #: The key namespace the replay wrote to, and (no-learn on an existing one) the one it read.
    namespace: str = ""
    seeded_from: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "events": self.events,
            "invalid_lines": self.invalid,
            "duplicates": self.duplicates,
            "runs": self.runs,
            "actions": dict(self.actions),
            "anomalous": self.anomalous,
            "guardrail_reasons": dict(sorted(self.guardrail_rules.items())),
            "chains_by_final_mode": dict(self.final_modes),
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.events / self.seconds, 1) if self.seconds else None,
        }
        if self.event_level is not None and self.run_level is not None:
            out["event_level"] = self.event_level.as_dict()
            out["run_level"] = self.run_level.as_dict()
        if self.enforced_run_level is not None:
            out["enforced_run_level"] = self.enforced_run_level.as_dict()
        if self.blocking_run_level is not None:
            out["blocking_run_level"] = self.blocking_run_level.as_dict()
        out["warmup_runs_per_agent"] = self.warmup_runs
        out["review"] = {"approved": self.approved, "rejected": self.rejected}
        out["namespace"] = self.namespace
        if self.seeded_from is not None:
            out["seeded_from"] = self.seeded_from
        return out

    def render(self) -> str:
        lines = [
            f"replayed {self.events} events ({self.runs} runs) in {self.seconds:.1f}s"
            + (f" — {self.events / self.seconds:,.0f} events/s" if self.seconds else ""),
            "actions: " + ", ".join(f"{a}={n}" for a, n in sorted(self.actions.items())),
            f"anomalous (detector's opinion, any mode): {self.anomalous}",
            "guardrail reasons: "
            + (", ".join(f"{r}={n}" for r, n in sorted(self.guardrail_rules.items())) or "none"),
            "chains by final mode: "
            + (", ".join(f"{m}={n}" for m, n in sorted(self.final_modes.items())) or "none"),
        ]
        if self.seeded_from is not None:
            lines.append(
                f"no-learn: read {self.seeded_from}, wrote only scratch namespace {self.namespace}"
            )
        if self.invalid:
            lines.append(f"invalid input lines: {self.invalid} (error records in the output)")
        if self.duplicates:
            lines.append(f"redelivered event ids answered from the first decision: {self.duplicates}")
        if self.approved or self.rejected:
            lines.append(
                f"reviewer (labels): approved {self.approved} held events, rejected {self.rejected}"
            )
        if self.warmup_runs and self.run_level is not None:
            lines.append(f"figures exclude each agent's first {self.warmup_runs} runs (warm-up)")
        for name, c in (
            ("run level (detector)", self.run_level),
            ("run level (enforced: flag/pause/reject)", self.enforced_run_level),
            ("run level (blocking: pause/reject)", self.blocking_run_level),
            ("event level (detector)", self.event_level),
        ):
            if c is not None:
                lines.append(
                    f"{name}: precision {c.precision:.3f} recall {c.recall:.3f} F1 {c.f1:.3f} "
                    f"FPR {c.fpr:.4f} (tp={c.tp} fp={c.fp} fn={c.fn} tn={c.tn})"
                )
        return "\n".join(lines)


def read_events(lines: IO[bytes]) -> Iterator[tuple[int, IngestEvent | ValidationError]]:
    """(line number, event or the validation error of that line); blank lines are skipped."""
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
            yield number, parse_event(obj, None, allow_offline_fields=True)
        except orjson.JSONDecodeError as exc:
            yield number, ValidationError(f"line {number}: not valid JSON ({exc})")
        except ValidationError as exc:
            yield number, ValidationError(f"line {number}: {exc}", exc.field)


class _Progress:
    def __init__(self, total: int | None, stream: IO[str], enabled: bool) -> None:
        self.total, self.stream, self.enabled = total, stream, enabled
        self.started = self.last = time.monotonic()

    def update(self, done: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not final and now - self.last < 1.0):
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        of = f"/{self.total}" if self.total else ""
        end = "\n" if final else "\r"
        self.stream.write(f"replay: {done}{of} events, {rate:,.0f} events/s{end}")
        self.stream.flush()


async def replay(
    source: IO[bytes],
    sink: IO[bytes],
    *,
    redis_url: str,
    params: EngineParams,
    settings: Settings | None = None,
    learn: bool = True,
    namespace: str | None = None,
    keep: bool = False,
    batch_size: int = 500,
    rich: bool = False,
    total: int | None = None,
    progress: IO[str] | None = None,
    warmup_runs: int = 0,
    review_with_labels: bool = False,
    policy: Policy | None = None,
    policy_keys: Keys | None = None,
    guardrails: bool = True,
    on_engine: Callable[[Engine], None] | None = None,
    on_verdict: Callable[[IngestEvent, Verdict], None] | None = None,
) -> ReplaySummary:
    """Replay ``source`` into ``sink``; returns the summary.

    ``warmup_runs``: each agent's first N runs (in order of first appearance) train the baseline
    but are left out of the figures. ``review_with_labels``: after each batch, act as the human
    reviewer: approve held (paused/rejected, not learned) events whose label is false, so the
    baseline learns them as production would, and reject those labelled true. ``policy``
    applies to every project; else each project's stored policy under ``policy_keys`` (the
    live prefix) applies, or the defaults when none is stored.

    ``learn=False`` with a ``namespace`` never writes under ``namespace``: the replay runs in a
    scratch namespace seeded from it on first use (see the module docstring); the scratch is
    deleted afterwards unless ``keep``.

    ``settings``: how to connect to ``redis_url`` (``redis_cluster``, timeouts, pool size;
    the defaults, a single server, when None).

    ``on_engine`` sees the engine before the first event (``ratchet tune`` records through it);
    ``on_verdict`` sees every valid event with its verdict, in input order.
    """
    scratch = namespace is None or not learn
    prefix = f"replay:{uuid.uuid4().hex[:12]}" if scratch else namespace
    assert prefix is not None
    client = connect_from_settings(settings or Settings(), redis_url)
    seeder = (
        ScratchSeeder(client, source=Keys(namespace), scratch=Keys(prefix))
        if namespace is not None and not learn
        else None
    )
    engine = Engine.create(
        client, keys=Keys(prefix), params=params, rich=rich, guardrails=guardrails,
        policies=FixedPolicy(policy) if policy is not None else None,
        policy_keys=policy_keys or Keys(), policy_refresh_s=3600.0, event_time=True,
    )
    if on_engine is not None:
        on_engine(engine)
    summary = ReplaySummary(warmup_runs=warmup_runs, namespace=prefix, seeded_from=namespace
                            if seeder is not None else None)
    events_tally = []
    runs = RunTally()
    enforced = RunTally()
    blocking = RunTally()
    run_index: dict[tuple[str, str, str], int] = {}
    agent_runs: Counter[tuple[str, str]] = Counter()
    labelled = True
    chain_modes: dict[str, str] = {}
    bar = _Progress(total, progress or sys.stderr, progress is not None)
    started = time.monotonic()

    held: list[tuple[Verdict, bool]] = []

    async def review() -> None:
        for v, label in held:
            decision = "reject" if label else "approve"
            await engine.feedback(v.chain_tag, v.run_id, v.event_id, decision,
                                  project_id=v.project_id, agent_id=v.agent_id)
            if label:
                summary.rejected += 1
            else:
                summary.approved += 1
        held.clear()

    async def flush(batch: list[tuple[int, IngestEvent | ValidationError]]) -> None:
        nonlocal labelled
        good = [e for _, e in batch if isinstance(e, IngestEvent)]
        if seeder is not None:
            await seeder.seed([(engine.chain_of(e).tag, e.project_id, e.agent_id, e.run_id)
                               for e in good])
        verdicts = iter(await engine.decide(good, learn=learn))
        for _, item in batch:
            if isinstance(item, ValidationError):
                summary.invalid += 1
                sink.write(orjson.dumps({"error": str(item), "field": item.field}) + b"\n")
                continue
            v: Verdict = next(verdicts)
            if on_verdict is not None:
                on_verdict(item, v)
            _tally(summary, v)
            chain_modes[v.chain_tag] = v.mode
            run_key = (item.project_id, item.agent_id, item.run_id)
            if run_key not in run_index:
                agent = (item.project_id, item.agent_id)
                run_index[run_key] = agent_runs[agent]
                agent_runs[agent] += 1
            if item.label is None:
                labelled = False
            elif run_index[run_key] >= warmup_runs:
                events_tally.append((v.anomalous, item.label))
                runs.add(run_key, v.anomalous, item.label)
                enforced.add(run_key, v.action != "allow", item.label)
                blocking.add(run_key, v.action in ("pause", "reject"), item.label)
            if review_with_labels and v.held and not v.duplicate and item.label is not None:
                held.append((v, item.label))
            sink.write(orjson.dumps(v.to_dict()) + b"\n")
        await review()
        bar.update(summary.events + summary.invalid)

    try:
        batch: list[tuple[int, IngestEvent | ValidationError]] = []
        for entry in read_events(source):
            batch.append(entry)
            if len(batch) >= batch_size:
                await flush(batch)
                batch = []
        if batch:
            await flush(batch)
        bar.update(summary.events + summary.invalid, final=True)
    finally:
        if not keep and scratch:
            await _delete_namespace(client, prefix)
        await client.aclose()
    summary.seconds = time.monotonic() - started
    summary.final_modes = Counter(chain_modes.values())
    summary.runs = len(run_index)
    if labelled and events_tally:
        summary.event_level = Confusion.of(events_tally)
        summary.run_level = runs.confusion()
        summary.enforced_run_level = enforced.confusion()
        summary.blocking_run_level = blocking.confusion()
    return summary


def _tally(summary: ReplaySummary, v: Verdict) -> None:
    summary.events += 1
    summary.actions[v.action] += 1
    for r in v.reasons:
        if r.source != "markov":
            summary.guardrail_rules[str(r.detail.get("rule", r.source))] += 1
    summary.anomalous += v.anomalous
    summary.duplicates += v.duplicate


async def _delete_namespace(client: Any, prefix: str) -> None:
    batch: list[bytes] = []
    async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            await client.unlink(*batch)
            batch = []
    if batch:
        await client.unlink(*batch)
