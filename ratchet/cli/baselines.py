"""``ratchet baselines list|show|export|diff|reset``: inspect learned baselines (chains), compare
two exports (what changed after a deploy), and an operator's explicit, audited reset of one."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from models.baselines import Baseline, node_name, to_dot, to_json
from models.baselines_diff import diff_exports
from models.errors import ConfigError, NotFoundError, ValidationError
from models.nodes import ChainId
from ratchet.cli.connect import open_redis
from ratchet.config.settings import Settings, get_settings
from ratchet.engine.engine import Engine
from ratchet.kafka.audit_sink import kafka_sink
from ratchet.kafka.security import client_kwargs
from ratchet.store.audit import AuditLog
from ratchet.store.baselines import BaselineReader
from ratchet.store.keys import Keys

__all__ = ["list_table", "register", "reset_baseline"]

T = TypeVar("T")


def _read(settings: Settings, work: Callable[[BaselineReader], Awaitable[T]]) -> T:
    if not settings.redis_url:
        raise ConfigError("set RATCHET_REDIS_URL to the Redis that holds the baselines")
    url = settings.redis_url

    async def run() -> T:
        redis = await open_redis(settings, url)
        try:
            return await work(BaselineReader(redis, Keys(settings.key_prefix)))
        finally:
            await redis.aclose()

    return asyncio.run(run())


async def reset_baseline(settings: Settings, chain: ChainId, actor: str) -> int:
    if not settings.redis_url:
        raise ConfigError("set RATCHET_REDIS_URL to the Redis that holds the baselines")
    redis = await open_redis(settings)
    keys = Keys(settings.key_prefix)
    try:
        security = client_kwargs(settings)
        async with kafka_sink(settings.kafka_bootstrap, security=security) as sink:
            audit = AuditLog(redis, keys, settings, sink=sink)
            engine = Engine.create(redis, keys=keys)
            return await engine.reset(chain, audit=audit, actor=actor)
    finally:
        await redis.aclose()


def _cmd_reset(args: argparse.Namespace) -> int:
    chain = _chain(args)
    actor = f"operator:{args.operator}" if args.operator else "cli"
    deleted = asyncio.run(reset_baseline(get_settings(), chain, actor))
    state = "reset" if deleted else "had no learned state (nothing to reset)"
    print(f"chain {chain.label}: {state}; it starts again in shadow mode (audited)")
    return 0


def _chain(args: argparse.Namespace) -> ChainId:
    return ChainId(args.project, args.agent, args.service, critical=args.critical)


def _baseline(args: argparse.Namespace) -> Baseline:
    chain = _chain(args)
    found = _read(get_settings(), lambda r: r.read(chain))
    if found is None:
        raise NotFoundError(f"chain {chain.label} has no learned baseline (never seen, reset or "
                            "expired); `ratchet baselines list --project P` lists the chains")
    return found


def list_table(rows: list[tuple[ChainId, Baseline | None]]) -> list[str]:
    """The lines of ``baselines list``: the chain column as wide as its longest label (a
    ``…!critical`` chain of a long agent id pushed the other columns out of line at a fixed
    48)."""
    width = max([len("chain"), *(len(chain.label) for chain, _ in rows)])
    header = (f"{'chain':<{width}} {'mode':<10} {'runs':>7} {'events':>9} {'nodes':>6} "
              f"{'edges':>6}  flags")
    lines = [header]
    for chain, b in rows:
        if b is None:
            lines.append(f"{chain.label:<{width}} (expired or reset)")
            continue
        flags = ",".join(f for f, on in (("forced", b.forced), ("eligible", b.eligible),
                                         ("overflow", b.overflow > 0),
                                         ("unlearnable", b.unlearnable)) if on)
        lines.append(f"{chain.label:<{width}} {b.mode:<10} {b.runs:>7} {b.events:>9} "
                     f"{b.nodes:>6} {len(b.transitions):>6}  {flags}")
    return lines


def _cmd_list(args: argparse.Namespace) -> int:
    project: str = args.project

    async def work(reader: BaselineReader) -> list[tuple[ChainId, Baseline | None]]:
        chains = await reader.chains(project, args.agent)
        states = await asyncio.gather(*(reader.read(c) for c in chains))
        return list(zip(chains, states, strict=True))

    settings = get_settings()
    rows = _read(settings, work)
    if args.json:
        print(json.dumps([to_json(b, top=0) for _, b in rows if b is not None], indent=2))
        return 0
    if not rows:
        print(f"project {project}: no chains learned yet under RATCHET_KEY_PREFIX="
              f"{settings.key_prefix!r} (is the project id right? `ratchet projects list`)")
        return 0
    for line in list_table(rows):
        print(line)
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    b = _baseline(args)
    change = "n/a" if b.last_change is None else f"{b.last_change:.4f}"
    print(f"chain {b.chain} (tag {b.tag})")
    print(f"mode {b.mode}{' (forced)' if b.forced else ''}; {b.runs} runs, {b.events} events, "
          f"{b.nodes} nodes, {len(b.transitions)} transitions; last change {change}"
          f"{'; eligible for locked' if b.eligible else ''}"
          f"{'; UNLEARNABLE (never locks)' if b.unlearnable else ''}"
          f"{f'; {b.overflow} transitions past the node/edge cap' if b.overflow else ''}")
    print(f"top {min(args.top, len(b.transitions))} transitions (^ = start of a run, "
          "$ = end of a run):")
    for t in b.transitions[: args.top]:
        print(f"  {t.source:>18} -> {t.target:<18} p={t.p:.3f}  count={t.count:g}")
        if t.source in b.labels or t.target in b.labels:
            print(f"      {node_name(b, t.source)} -> {node_name(b, t.target)}")
    return 0


def _project_baselines(project: str) -> list[Baseline]:
    async def work(reader: BaselineReader) -> list[Baseline]:
        chains = await reader.chains(project)
        found = await asyncio.gather(*(reader.read(c) for c in chains))
        return [b for b in found if b is not None]

    return _read(get_settings(), work)


def _cmd_export(args: argparse.Namespace) -> int:
    if (args.agent is None) != (args.service is None):
        raise ValidationError("give both --agent and --service (one chain), or neither (every "
                              "chain of the project)", "agent" if args.agent is None else "service")
    if args.agent is None:
        everything = _project_baselines(args.project)
        what = f"{len(everything)} chains of {args.project}"
        text = ("".join(to_dot(b, top=args.top) for b in everything) if args.format == "dot"
                else json.dumps([to_json(b, top=args.top) for b in everything], indent=2) + "\n")
    else:
        b = _baseline(args)
        what = b.chain
        text = (to_dot(b, top=args.top) if args.format == "dot"
                else json.dumps(to_json(b, top=args.top), indent=2) + "\n")
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output} ({args.format}, {what})", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _load_export(path: str) -> object:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{path} is not JSON ({exc.msg} at line {exc.lineno}); give two "
                              "files written by `ratchet baselines export`", "file") from None


def _cmd_diff(args: argparse.Namespace) -> int:
    """Exit 0: no differences; 1: differences (like diff(1)); 2: trouble (unreadable file)."""
    before, after = _load_export(args.before), _load_export(args.after)
    try:
        found = diff_exports(before, after, args.min_shift)
    except ValidationError as exc:
        raise ValidationError(f"{exc} ({args.before} vs {args.after})", "file") from None
    if args.json:
        print(json.dumps(found.to_json(), indent=2))
    else:
        print(found.render_text())
    return 1 if found.differs else 0


def _chain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--project", required=True, help="project id (prj_...)")
    p.add_argument("--agent", required=True, help="agent id")
    p.add_argument("--service", required=True, help="service of the chain")
    p.add_argument("--critical", action="store_true",
                   help="the agent's critical-priority chain of that service")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    baselines = subparsers.add_parser("baselines", help="manage learned baselines (chains)")
    sub = baselines.add_subparsers(dest="baselines_command", metavar="ACTION")
    sub.required = True
    listing = sub.add_parser("list", help="the chains of a project: mode, runs, size, flags")
    listing.add_argument("--project", required=True, help="project id (prj_...)")
    listing.add_argument("--agent", default=None, help="only this agent's chains")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    listing.set_defaults(func=_cmd_list, project_must_exist=False)
    show = sub.add_parser("show", help="one chain: mode, runs, top transitions with p")
    _chain_args(show)
    show.add_argument("--top", type=int, default=20, help="transitions to show (default 20)")
    show.set_defaults(func=_cmd_show, project_must_exist=False)
    export = sub.add_parser(
        "export", help="one chain (or, without --agent/--service, every chain of the project) "
                       "as JSON or a Graphviz DOT graph, nodes named by their labels",
    )
    export.add_argument("--project", required=True, help="project id (prj_...)")
    export.add_argument("--agent", default=None, help="agent id (with --service: one chain)")
    export.add_argument("--service", default=None, help="service of the chain")
    export.add_argument("--critical", action="store_true",
                        help="the agent's critical-priority chain of that service")
    export.add_argument("--format", choices=("json", "dot"), default="json",
                        help="json (default; what `baselines diff` reads) or dot (Graphviz)")
    export.add_argument("--top", type=int, default=None,
                        help="only the most frequent transitions (default all)")
    export.add_argument("--output", "-o", default=None, help="file (default stdout)")
    export.set_defaults(func=_cmd_export, project_must_exist=False)
    diff = sub.add_parser(
        "diff", help="what changed between two JSON exports (exit 0 same, 1 different)",
    )
    diff.add_argument("before", metavar="A.json", help="the earlier export")
    diff.add_argument("after", metavar="B.json", help="the later export")
    diff.add_argument("--min-shift", type=float, default=0.05,
                      help="smallest change of a transition probability reported (default 0.05)")
    diff.add_argument("--json", action="store_true", help="JSON instead of text")
    diff.set_defaults(func=_cmd_diff)
    reset = sub.add_parser(
        "reset", help="forget one chain's learned behaviour; it restarts in shadow (audited)",
    )
    _chain_args(reset)
    reset.add_argument("--operator", default=None,
                       help="who asks (recorded as operator:<name>; default 'cli')")
    reset.set_defaults(func=_cmd_reset)
