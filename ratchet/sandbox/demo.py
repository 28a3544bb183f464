"""The demo (``ratchet demo``): the whole pipeline on this machine, driven by synthetic agents, in ~1 minute.

Starts what is not configured (``redis-server`` and a Tansu broker on free ports; with
``RATCHET_REDIS_URL`` / ``RATCHET_KAFKA_BOOTSTRAP`` set it uses those, in a fresh key namespace
and fresh topic names), then a gateway and a worker as child processes, provisions a demo project
and one agent credential per synthetic agent, streams the traffic generator's events through the
signed bulk HTTP API (one batch per agent at a time, so each agent's order holds), measures
single-event wait latency, and prints a summary: how chains ratcheted, verdicts by action, a few
explained verdicts, throughput, latency and precision/recall against the generator's labels.

Everything it started is stopped on exit, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import signal
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

from models.errors import UnavailableError
from ratchet.config.engine import engine_params
from ratchet.config.settings import Settings, get_settings
from ratchet.kafka.security import client_kwargs
from ratchet.platform.provisioning import create_agent, create_project
from ratchet.sandbox.client import RatchetClient
from ratchet.sandbox.demo_report import DemoReport, SentEvent, build_report, percentile
from ratchet.sandbox.harness import VerdictCollector
from ratchet.sandbox.process import (
    FAST_GROUP_ENV,
    ChildProcess,
    gateway_process,
    wait_http_ready,
    worker_env,
)
from ratchet.sandbox.ready import wait_worker
from ratchet.sandbox.servers import RedisServer, TansuServer, free_port
from ratchet.store.explain import Explainer
from ratchet.store.keys import Keys
from ratchet.store.policies import save_policy
from ratchet.store.redis import connect_from_settings

__all__ = ["DemoOptions", "run_demo"]

#: Mean events per generated run (measured on ratchet.sandbox.traffic with the default seed).
EVENTS_PER_RUN = 9.0


@dataclass(frozen=True)
class DemoOptions:
    events: int = 200_000
    agents: int = 12
    batch: int = 250
    seed: int = 7
    anomaly_rate: float = 0.05
    #: Rich Markov node ids (service + coarse action in the node). Off, as a worker ships:
    #: the demo's verdicts were identical either way (Dec 4, seed 7: tp 953, fp 122, fn 33).
    rich: bool = False
    sync_events: int = 200
    json_path: str | None = None
    quiet: bool = False


class _Progress:
    """One status line on stderr (rewritten in place on a terminal, every 5 s otherwise)."""

    def __init__(self, out: IO[str], total: int, quiet: bool) -> None:
        self.out, self.total, self.quiet = out, total, quiet
        self.tty = out.isatty()
        self.started = time.monotonic()
        self._last = 0.0

    def say(self, text: str) -> None:
        if not self.quiet:
            if self.tty:
                self.out.write("\r\033[K")
            self.out.write(f"[demo] {text}\n")
            self.out.flush()

    def show(self, sent: int, verdicts: int, *, final: bool = False) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if not final and not self.tty and now - self._last < 5:
            return
        self._last = now
        dt = max(now - self.started, 1e-9)
        line = (
            f"sent {sent:,}/{self.total:,} events | verdicts {verdicts:,} | "
            f"{verdicts / dt:,.0f} verdicts/s | {dt:.0f}s"
        )
        if self.tty:
            self.out.write("\r\033[K" + line + ("\n" if final else ""))
        else:
            self.out.write(f"[demo] {line}\n")
        self.out.flush()


def _traffic(opts: DemoOptions, project_id: str) -> tuple[Iterator[dict[str, Any]], int]:
    """The generator's events (lazily, at most ``opts.events``) and its warm-up runs per agent."""
    from ratchet.sandbox.traffic import iter_events

    runs = max(20, math.ceil(opts.events / (opts.agents * EVENTS_PER_RUN)))
    warmup = min(100, runs // 3)
    events = iter_events(
        agents=opts.agents, runs_per_agent=runs, warmup_runs=warmup,
        anomaly_rate=opts.anomaly_rate, seed=opts.seed, project_id=project_id,
    )
    return itertools.islice(events, opts.events), warmup


def _agent_ids(opts: DemoOptions) -> list[str]:
    from ratchet.sandbox.traffic import iter_runs

    runs = iter_runs(agents=opts.agents, runs_per_agent=1, warmup_runs=1, seed=opts.seed)
    return sorted({r.agent_id for r in runs})


def _run_index(run_id: str) -> int:
    tail = run_id.rsplit("-r", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _rounds(
    events: Iterable[dict[str, Any]], batch: int, warmup: int, sent: list[SentEvent],
) -> Iterator[dict[str, list[dict[str, Any]]]]:
    """Consecutive slices of the time-ordered stream, split per agent (≤ ``batch`` per agent).

    Records each event's ground truth in ``sent`` and strips the offline-only fields.
    """
    pending: dict[str, list[dict[str, Any]]] = {}
    for ev in events:
        sent.append(SentEvent(ev["event_id"], ev["agent_id"], ev["run_id"], bool(ev["label"]),
                              _run_index(ev["run_id"]) >= warmup))
        items = pending.setdefault(ev["agent_id"], [])
        items.append({k: v for k, v in ev.items() if k not in ("label", "project_id")})
        if len(items) >= batch:
            yield pending
            pending = {}
    if pending:
        yield pending


async def _sync_latency(client: RatchetClient, n: int, rate_per_s: float) -> dict[str, float]:
    """Round trip of single events sent with ``wait_ms`` at a modest fixed rate."""
    lat: list[float] = []
    interval = 1.0 / rate_per_s
    for i in range(n):
        t0 = time.perf_counter()
        answer = await client.send(
            {"event_id": str(uuid.uuid4()), "run_id": f"lat-{i // 5}", "service": "status",
             "action": "health.check", "payload": {"ok": True, "n": i},
             "end_of_run": i % 5 == 4},
            wait_ms=2000,
        )
        dt = time.perf_counter() - t0
        if answer.status == 200:
            lat.append(dt * 1000)
        await asyncio.sleep(max(0.0, interval - dt))
    if not lat:
        return {}
    return {"n": float(len(lat)), "p50": round(percentile(lat, 50), 2),
            "p99": round(percentile(lat, 99), 2)}


#: Rate-limit tier of the demo's projects (added to the configured tiers for its gateway).
DEMO_TIER = "demo"

#: Guardrail policy of the demo project: the defaults, velocity off (time is compressed).
DEMO_POLICY = (
    "# ratchet demo: days of traffic replayed in a minute; velocity windows are wall-clock\n"
    "[guardrails.velocity]\nenabled = false\n"
)


async def _drive(
    opts: DemoOptions, settings: Settings, gateway: ChildProcess, worker: ChildProcess,
    progress: _Progress,
) -> DemoReport:
    assert settings.redis_url and settings.kafka_bootstrap
    base = f"http://{settings.gateway_host}:{settings.gateway_port}"
    keys = Keys(settings.key_prefix)
    redis = connect_from_settings(settings)
    try:
        # the demo streams well over 100k events a minute: its own unbounded tier
        project_id, api_key = await create_project(redis, keys, "ratchet demo", DEMO_TIER)
        probe_project, probe_key = await create_project(redis, keys, "ratchet demo probe",
                                                        DEMO_TIER)
        _, probe_secret = await create_agent(redis, keys, probe_project, "probe")
        events, warmup = _traffic(opts, project_id)
        agent_ids = _agent_ids(opts) + ["latency-probe"]
        secrets = {a: (await create_agent(redis, keys, project_id, a))[1] for a in agent_ids}
        # The demo replays days of agent traffic in about a minute, so wall-clock velocity
        # windows would flag nearly every event: its project's policy turns velocity off.
        await save_policy(redis, keys, project_id, DEMO_POLICY, actor="system", now=time.time())
    finally:
        await redis.aclose()
    progress.say(
        f"{opts.events:,} events of {opts.agents} synthetic agents "
        f"(anomalies injected after {warmup} warm-up runs per agent)"
    )
    await wait_http_ready(base + "/readyz", gateway, 30)
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=60)
    ) as session:
        probe = RatchetClient(base, probe_key, "probe", probe_secret, project_id=probe_project,
                              session=session)
        progress.say("waiting for the worker to join its consumer group…")
        joined = await wait_worker(probe, worker, 90)
        progress.say(f"worker answering after {joined:.1f}s; streaming events")
        clients = {
            a: RatchetClient(base, api_key, a, s, project_id=project_id, session=session)
            for a, s in secrets.items()
        }
        sent_meta: list[SentEvent] = []
        async with VerdictCollector(
            settings.kafka_bootstrap, settings.topic_verdicts, from_beginning=False,
            security=client_kwargs(settings),
        ) as collector:
            started = time.monotonic()
            sent = 0
            rejected = 0
            for chunk in _rounds(events, opts.batch, warmup, sent_meta):
                answers = await asyncio.gather(
                    *(clients[a].send_batch(items) for a, items in chunk.items())
                )
                for answer in answers:
                    if answer.status != 200:
                        raise UnavailableError(f"gateway answered {answer.status}: {answer.body}")
                    rejected += int(answer.body.get("rejected", 0))
                sent += sum(len(items) for items in chunk.values())
                progress.show(sent, collector.verdicts_seen)
            ids = [e.event_id for e in sent_meta]
            while collector.missing(ids[-1:]) or collector.verdicts_seen < len(ids) - rejected:
                if await collector.wait_count(len(ids) - rejected, 1.0):
                    break
                progress.show(sent, collector.verdicts_seen)
                if time.monotonic() - started > 120 + len(ids) / 1000:
                    break
            seconds = time.monotonic() - started
            progress.show(sent, collector.verdicts_seen, final=True)
            latencies = [
                r.at - r.envelope.received_at for r in collector.envelopes
                if r.envelope.project_id == project_id and r.envelope.received_at
            ]
            report = build_report(sent_meta, collector.by_event, latencies_s=latencies,
                                  seconds=seconds)
        if opts.sync_events:
            progress.say(f"measuring {opts.sync_events} single events with wait_ms at 100/s…")
            report.sync_latency_ms = await _sync_latency(
                clients["latency-probe"], opts.sync_events, 100.0
            )
    report.metrics = await _scrape_worker(settings)
    if report.to_explain is not None:
        redis = connect_from_settings(settings)
        try:
            explainer = Explainer(redis, keys, engine_params(None, settings))
            report.add_explanation(await explainer.explain_verdict(report.to_explain))
        finally:
            await redis.aclose()
    report.settings = {
        "agents": opts.agents, "batch_per_agent": opts.batch, "seed": opts.seed,
        "anomaly_rate": opts.anomaly_rate, "warmup_runs": warmup, "rich_markov": opts.rich,
        "partitions": settings.topic_partitions,
    }
    return report


def _metrics_url(settings: Settings, process: str) -> str:
    if process == "gateway":
        return f"http://{settings.gateway_host}:{settings.gateway_port}/metrics"
    return f"http://{settings.metrics_host}:{settings.worker_web_port}/metrics"


async def _scrape_worker(settings: Settings) -> dict[str, Any]:
    """The metrics URLs, and the worker's verdict count as its /metrics reports it."""
    url = _metrics_url(settings, "worker")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session, \
            session.get(url) as resp:
        text = await resp.text()
    verdicts = sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "ratchet_verdicts"
        for sample in family.samples
        if sample.name == "ratchet_verdicts_total"
    )
    return {"gateway": _metrics_url(settings, "gateway"), "worker": url,
            "worker_verdicts_total": int(verdicts)}


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_demo(opts: DemoOptions, settings: Settings | None = None,
             out: IO[str] | None = None) -> DemoReport:
    """Run the demo; every service and child process it started is stopped before returning."""
    settings = settings or get_settings()
    err = sys.stderr
    # the demo's own Kafka clients (verdict collector) would interleave their INFO lines with
    # the progress and the summary; the gateway and worker keep their logs in their log files
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    progress = _Progress(err, opts.events, opts.quiet)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    suffix = uuid.uuid4().hex[:8]
    with contextlib.ExitStack() as stack:
        stack.callback(signal.signal, signal.SIGTERM, previous)
        changes: dict[str, Any] = {
            "gateway_host": "127.0.0.1",
            "metrics_host": "127.0.0.1",
            "gateway_port": free_port(),
            "worker_id": f"ratchet-demo-{suffix}",
            # the worker serves /metrics like in production; the demo prints where
            "worker_web_port": free_port(),
            "rich_markov": opts.rich,
            # a tier far above what one machine can send (the demo streams >100k events a
            # minute, the high_volume tier's limit): the bucket is checked, never binding
            "rate_limit_tiers": f"{settings.rate_limit_tiers},{DEMO_TIER}:1000000000:1000",
        }
        if settings.redis_url:
            changes["key_prefix"] = f"demo{suffix}"
            progress.say(f"using RATCHET_REDIS_URL under the key prefix demo{suffix} (kept "
                         "afterwards: export RATCHET_KEY_PREFIX=demo" + suffix + " to inspect it)")
        else:
            progress.say("starting redis-server…")
            changes["redis_url"] = stack.enter_context(RedisServer()).url
        if settings.kafka_bootstrap:
            for name in ("ingest", "verdicts", "feedback"):
                changes[f"topic_{name}"] = f"demo-{suffix}-{name}"
        else:
            progress.say("starting a Tansu broker (Kafka protocol)…")
            changes["kafka_bootstrap"] = stack.enter_context(TansuServer()).bootstrap
        settings = settings.replace(**changes)
        env = worker_env(**{k: v for k, v in changes.items() if v is not None})
        env.update(FAST_GROUP_ENV)
        env["RATCHET_RICH_MARKOV"] = "1" if opts.rich else "0"
        progress.say(f"starting gateway on :{settings.gateway_port} and a worker…")
        progress.say(
            f"Prometheus metrics while the demo runs: gateway {_metrics_url(settings, 'gateway')}"
            f", worker {_metrics_url(settings, 'worker')}"
        )
        gateway = gateway_process(env).start()
        stack.callback(gateway.stop)
        worker = ChildProcess(env, name="worker").start()
        stack.callback(worker.stop)
        report = asyncio.run(_drive(opts, settings, gateway, worker, progress))
        report.key_prefix = changes.get("key_prefix")  # None: the demo's own Redis, stopped
    print(report.render(), file=out or sys.stdout)
    if opts.json_path:
        Path(opts.json_path).write_bytes(
            orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2) + b"\n"
        )
    return report
