"""The worker's side of bulk events, alone and in-process: decode + decide + save, per event.

    python -m benchmarks.worker_bulk [--events 30000] [--warm 10000] [--repeat 3]
                                     [--scripts] [--profile FILE] [--redis-cluster] [--json FILE]

Starts a redis-server (unless RATCHET_REDIS_URL is set; a local 3-master Redis Cluster with
``--redis-cluster``, Redis CPU then summed over the masters) and runs what a worker does with bulk
envelopes — :meth:`streams.worker.IngestProcessor.decode` of the compact ingest bodies the
gateway writes, then ``IngestProcessor.process`` (guardrails under the pipeline benchmark's
``raised`` policy, the engine, the verdict save, the verdict envelopes) — one envelope of one
agent's events (``--batch``, the pipeline's 1,000) at a time: the pipeline benchmark's traffic
(:func:`ratchet.sandbox.traffic.iter_events`, 24 agents, seed 11) without Kafka or the
gateway, so the worker's own CPU per event is measured without the idle polling and the
neighbours' noise. Like a worker: uvloop, and the collector frozen and tuned after start-up
(``--gc-gen0``, :mod:`streams.tuning`). ``--warm`` events are decided first (chains leave
shadow, memos fill). Reported, best of ``--repeat`` runs (each on fresh keys): the worker's CPU
µs per event (``process_time``), Redis's CPU µs per event (INFO ``used_cpu_user`` +
``used_cpu_sys``) and the wall time per event. ``--scripts``: Redis's time per script
(``INFO commandstats`` does not split EVALSHA by script, so every command goes to the slowlog
and the scripts' entries are summed; the logging costs Redis CPU itself — not for the CPU
figures). ``--profile FILE``: a cProfile (CPU clock) of the last run's measured part.
``--callgrind DIR``: run under ``valgrind --tool=callgrind --callgrind-out-file=DIR/cg.%p``
(with ``--repeat 1``) to count this process's instructions per measured event — the counters
zeroed before the measured envelopes and dumped after them; instructions do not depend on the
neighbours' load, so one run of each tree compares them (the CPU figures under valgrind mean
nothing).
Run it from a worktree of ``main`` and from this
one, alternately, for a before/after pair.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import glob
import hashlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import uvloop

from benchmarks.redis_stats import cpu_seconds
from models.envelope import IngestEnvelope, encode_ingest_compact
from models.events import parse_event
from models.guardrails import parse_policy_toml
from ratchet.engine.engine import Engine
from ratchet.sandbox.traffic import iter_events
from ratchet.store.keys import Keys
from ratchet.store.policies import FixedPolicy
from ratchet.store.redis import connect
from ratchet.store.replies import ReplyPublisher
from ratchet.store.scripts import script_source
from ratchet.store.verdicts import VerdictStore
from streams.agents import Tuning, envelope_lane
from streams.batcher import GreedyBatcher
from streams.tuning import DEFAULT_GEN0, tune_gc
from streams.worker import IngestProcessor

#: The pipeline benchmark's ``raised`` policy: velocity rules run but cannot trip on replay.
RAISED_VELOCITY = """
[guardrails.velocity.per_agent]
limit = 100000000
[guardrails.velocity.per_run]
limit = 100000000
"""


def bodies(n: int, agents: int, batch: int, seed: int) -> list[tuple[bytes, int]]:
    """Compact ingest bodies (and their event counts): one agent per envelope, in stream order."""
    raw = list(iter_events(agents=agents, runs_per_agent=max(20, n // (agents * 9) + 1),
                           warmup_runs=10**6, seed=seed, project_id="bench"))[:n]
    per_agent: dict[str, list[dict[str, Any]]] = {}
    out: list[tuple[bytes, int]] = []
    for ev in raw:
        evs = per_agent.setdefault(ev["agent_id"], [])
        evs.append({k: v for k, v in ev.items() if k not in ("label", "project_id")})
        if len(evs) == batch:
            out.append(_encode(ev["agent_id"], evs))
            per_agent[ev["agent_id"]] = []
    out.extend(_encode(a, evs) for a, evs in per_agent.items() if evs)
    return out


def _encode(agent: str, evs: list[dict[str, Any]]) -> tuple[bytes, int]:
    env = IngestEnvelope("bench", agent, uuid.uuid4().hex, time.time(),
                         tuple(parse_event(e, "bench") for e in evs))
    return encode_ingest_compact(env), len(evs)


async def _server_cpu(redis: Any) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _slowlog_us(redis: Any) -> dict[str, float]:
    """Redis µs spent per command since the slowlog was reset (every command logged), the
    scripts by name (their SHA1 looked up in the registry): where Redis's time goes."""
    names = {hashlib.sha1(script_source(n).encode()).hexdigest(): n
             for n in ("observe", "guardrails", "save_verdicts")}
    out: dict[str, float] = {}
    for entry in await redis.slowlog_get(-1):
        cmd = entry["command"].split(b" ") if isinstance(entry["command"], bytes) else []
        name = cmd[0].decode().lower() if cmd else "?"
        if name == "evalsha" and len(cmd) > 1:
            name = names.get(cmd[1].decode(), "other_script")
        if name not in names.values():
            continue  # the commands scripts call are logged too (and counted in the script)
        out[name] = out.get(name, 0.0) + entry["duration"]
    return out


def _callgrind_control(arg: str) -> None:
    """``callgrind_control arg`` for this process. Callgrind reads such commands only while the
    process runs code, so this process spins (a few thousand instructions) until it is done
    rather than wait in a system call the command could never interrupt."""
    proc = subprocess.Popen(["callgrind_control", arg, str(os.getpid())],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None:
        pass
    if proc.returncode:
        raise RuntimeError(f"callgrind_control {arg} failed: is this run under callgrind?")


def _dumped_instructions(out_dir: str) -> int:
    """Instructions (Ir) of this process's newest callgrind dump in ``out_dir``."""
    dumps = sorted(glob.glob(os.path.join(out_dir, f"cg.{os.getpid()}.*")), key=os.path.getmtime)
    for path in reversed(dumps):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
    raise RuntimeError(f"no callgrind dump of this process in {out_dir}")


async def _through_lanes(processor: IngestProcessor, measured: list[tuple[bytes, int]],
                         lanes: int, max_events: int = Tuning.max_events) -> None:
    """The measured envelopes as a backlog a worker finds in Kafka: all queued at once into the
    worker's batcher (its limits, ``lanes`` lanes by agent), each decided batch then acked."""
    tuning = Tuning()
    left = len(measured)
    done = asyncio.get_running_loop().create_future()

    async def process(batch: Sequence[IngestEnvelope]) -> None:
        await processor.process(batch)

    async def ack(_env: IngestEnvelope) -> None:
        nonlocal left
        left -= 1
        if left == 0:
            done.set_result(None)

    batcher: GreedyBatcher[IngestEnvelope] = GreedyBatcher(
        process, ack, size_of=lambda env: len(env.events), max_items=tuning.max_envelopes,
        max_events=max_events, lanes=lanes, lane_of=envelope_lane)
    async with batcher:
        for body, _ in measured:
            for env in processor.decode([body]):
                await batcher.put(env)
        await done


async def _one_run(url: str, work: list[tuple[bytes, int]], warm: int,
                   profile: cProfile.Profile | None, scripts: bool,
                   callgrind: str | None = None, lanes: int = 0,
                   max_events: int = Tuning.max_events,
                   cluster_ports: Sequence[int] = ()) -> dict[str, float]:
    redis = connect(url, cluster=bool(cluster_ports))
    keys = Keys(f"wb{uuid.uuid4().hex[:8]}")
    engine = Engine.create(redis, keys=keys, project_overrides=True,
                           policies=FixedPolicy(parse_policy_toml(RAISED_VELOCITY)))
    processor = IngestProcessor(engine, VerdictStore(redis, keys),
                                replies=ReplyPublisher(redis, keys))
    seen, split = 0, 0
    while split < len(work) and seen < warm:
        seen += work[split][1]
        split += 1
    for body, _ in work[:split]:
        await processor.process(processor.decode([body]))
    measured = work[split:]
    events = sum(n for _, n in measured)
    if scripts:
        await redis.config_set("slowlog-log-slower-than", 0)
        await redis.config_set("slowlog-max-len", 1_000_000)
        await redis.slowlog_reset()
    async def server_cpu() -> float:
        return await (cpu_seconds(cluster_ports) if cluster_ports else _server_cpu(redis))

    server0 = await server_cpu()
    if profile is not None:
        profile.enable()
    if callgrind:
        _callgrind_control("-z")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if lanes:
        await _through_lanes(processor, measured, lanes, max_events)
    else:
        for body, _ in measured:
            await processor.process(processor.decode([body]))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if callgrind:
        _callgrind_control("-d")
    if profile is not None:
        profile.disable()
    server = await server_cpu() - server0
    per_command = await _slowlog_us(redis) if scripts else {}
    if scripts:
        await redis.config_set("slowlog-log-slower-than", 10_000)
    await redis.aclose()
    counted = ({"worker_instructions_per_event": round(_dumped_instructions(callgrind) / events)}
               if callgrind else {})
    return {
        **counted,
        **{f"redis_{name}_us_per_event": round(us / events, 2) for name, us in per_command.items()},
        "events": events,
        "worker_cpu_us_per_event": round(cpu / events * 1e6, 2),
        "redis_cpu_us_per_event": round(server / events * 1e6, 2),
        "wall_us_per_event": round(wall / events * 1e6, 2),
    }


def run(url: str, args: argparse.Namespace, cluster_ports: Sequence[int] = ()) -> dict[str, Any]:
    work = bodies(args.warm + args.events, args.agents, args.batch, args.seed)
    tune_gc(args.gc_gen0)  # as a worker does after start-up (streams/tuning.py)
    runs = []
    for i in range(args.repeat):
        prof = cProfile.Profile(time.process_time) if args.profile and i == args.repeat - 1 else None
        runs.append(uvloop.run(_one_run(url, work, args.warm, prof, args.scripts,
                                        args.callgrind, args.lanes, args.max_events,
                                        cluster_ports)))
        if prof is not None:
            prof.dump_stats(args.profile)
    best = {name: min(r.get(name, 0.0) for r in runs) for name in runs[0]}
    return {"best": best, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.worker_bulk", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=30_000)
    p.add_argument("--warm", type=int, default=10_000)
    p.add_argument("--agents", type=int, default=24)
    p.add_argument("--batch", type=int, default=1000, help="events per envelope")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--gc-gen0", type=int, default=DEFAULT_GEN0,
                   help="generation-0 GC threshold after start-up, as the worker (0: untouched)")
    p.add_argument("--profile", metavar="FILE", help="cProfile (CPU clock) of the last run")
    p.add_argument("--scripts", action="store_true",
                   help="log every command (slowlog) and report Redis µs per event by script "
                        "(the logging itself costs Redis CPU: not for CPU figures)")
    p.add_argument("--callgrind", metavar="DIR",
                   help="under valgrind --tool=callgrind --callgrind-out-file=DIR/cg.%%p: "
                        "instructions of this process per measured event (use --repeat 1)")
    p.add_argument("--lanes", type=int, default=0,
                   help="N >= 1: all measured envelopes queued at once (a backlog in Kafka) into "
                        "the worker's batcher with N lanes by agent (RATCHET_WORKER_LANES); the "
                        "wall time per event is then the worker's drain rate. 0 (default): one "
                        "envelope at a time, as before")
    p.add_argument("--max-events", type=int, default=Tuning.max_events,
                   help="with --lanes: most events in one batch (the worker's Tuning.max_events)")
    p.add_argument("--redis-cluster", action="store_true",
                   help="a local 3-master Redis Cluster instead of one redis-server (Redis CPU "
                        "summed over the masters; not with --scripts or RATCHET_REDIS_URL)")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    if args.redis_cluster and (args.scripts or os.environ.get("RATCHET_REDIS_URL")):
        p.error("--redis-cluster starts its own cluster and cannot log scripts (--scripts)")
    load = os.getloadavg()[0]
    with contextlib.ExitStack() as stack:
        url = os.environ.get("RATCHET_REDIS_URL")
        ports: list[int] = []
        if args.redis_cluster:
            from ratchet.sandbox.servers import RedisClusterServer
            cluster = stack.enter_context(RedisClusterServer(masters=3))
            url, ports = cluster.url, cluster.ports
        elif not url:
            from ratchet.sandbox.servers import RedisServer
            url = stack.enter_context(RedisServer()).url
        result = run(url, args, ports)
    b = result["best"]
    per_run = ", ".join(f"{r['worker_cpu_us_per_event']}/{r['redis_cpu_us_per_event']}"
                        for r in result["runs"])
    print(f"worker, bulk events: worker {b['worker_cpu_us_per_event']} µs CPU/event, redis "
          f"{b['redis_cpu_us_per_event']} µs CPU/event, wall {b['wall_us_per_event']} µs/event "
          f"(best of {args.repeat}: worker/redis {per_run}; {b['events']} events; "
          f"load average {load:.1f})")
    scripts = {k[6:-13]: v for k, v in b.items() if k.startswith("redis_") and k.endswith(
        "_us_per_event") and k != "redis_cpu_us_per_event"}
    if "worker_instructions_per_event" in b:
        print(f"worker instructions per measured event (callgrind): "
              f"{b['worker_instructions_per_event']:,}")
    if scripts:
        print("redis µs/event by script (slowlog, best of each): " + ", ".join(
            f"{k} {v}" for k, v in sorted(scripts.items(), key=lambda kv: -kv[1])))
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps({"load_average": load, **result}, option=orjson.OPT_INDENT_2)
                    + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
