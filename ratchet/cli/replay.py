"""``ratchet replay``: score recorded events offline with the real engine (backtests, what-if).

Without ``--redis-url`` a private ``redis-server`` is started and removed; with one, replay works
in its own key namespace and deletes it afterwards (``--keep`` keeps it). The work itself is
:func:`ratchet.engine.replay.replay`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from models.errors import ConfigError, ValidationError
from models.guardrails import Policy, parse_policy_toml
from ratchet.cli.connect import check_redis
from ratchet.config.engine import engine_params
from ratchet.config.settings import Settings, get_settings
from ratchet.engine.replay import replay
from ratchet.sandbox.servers import redis_for
from ratchet.store.keys import Keys

__all__ = ["load_policy_file", "register", "replay_redis"]


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="score recorded events offline with the real engine (backtests, what-if)",
        description=(
            "Replay ingest events (JSONL, one per line; project_id and label allowed) through "
            "the engine and write one verdict per line, in input order. Lines with a boolean "
            "'label' give precision/recall/F1 per run and per event in the summary."
        ),
    )
    p.add_argument("--input", required=True, help="events file (JSONL), or - for stdin")
    p.add_argument("--output", required=True, help="verdicts file (JSONL), or - for stdout")
    p.add_argument(
        "--redis-url",
        help="use this Redis (in a private key namespace) instead of starting a redis-server",
    )
    p.add_argument("--config", help="TOML file whose [engine] table overrides engine defaults")
    p.add_argument(
        "--policy",
        help="guardrail policy (TOML) applied to every project instead of the stored ones: "
        "test a policy change against recorded traffic before PUT /v1/policy",
    )
    p.add_argument(
        "--no-guardrails", action="store_true", help="the Markov chain alone (no guardrails)"
    )
    p.add_argument(
        "--no-learn", action="store_true",
        help="score without changing the baseline (what-if evaluation on an existing namespace): "
        "with --namespace, nothing under it is written — the replay runs in a scratch copy of "
        "the state it reads, deleted afterwards (events that namespace already decided are "
        "answered as redeliveries: their first verdict)",
    )
    p.add_argument(
        "--namespace",
        help="key namespace to use (e.g. one kept from an earlier replay with --keep)",
    )
    p.add_argument("--keep", action="store_true", help="keep the replay's keys afterwards")
    p.add_argument("--rich", action="store_true", help="rich Markov mode (service+action in nodes)")
    p.add_argument("--batch", type=int, default=500, help="events per engine call (default 500)")
    p.add_argument(
        "--warmup", type=int, default=0, metavar="N",
        help="leave each agent's first N runs out of the precision/recall figures (they still "
        "train the baseline)",
    )
    p.add_argument(
        "--review", choices=("none", "labels"), default="none",
        help="'labels': act as the human reviewer after each batch — approve held events "
        "labelled false (the baseline learns them, as after a real approval), reject those "
        "labelled true. Without it, paused normal behaviour is never learned (no one approves).",
    )
    p.add_argument("--json", help="also write the summary as JSON to this file")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=_main)


def load_policy_file(path: str) -> Policy:
    """A policy file for ``--policy``; an invalid one is a :class:`ConfigError` naming the field."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read policy {path}: {exc.strerror}") from None
    try:
        return parse_policy_toml(text)
    except ValidationError as exc:
        raise ConfigError(f"--policy {path}: {exc}") from None


@contextmanager
def replay_redis(url: str | None, settings: Settings) -> Iterator[tuple[str, Settings]]:
    """The Redis a replay runs on and the settings to connect to it with (``ratchet replay``,
    ``ratchet tune``): ``url`` (``--redis-url``, else ``RATCHET_REDIS_URL``) with the settings
    as they are — ``RATCHET_REDIS_CLUSTER`` included, a cluster node without it refused as by
    every command —, or, without a URL, a private ``redis-server`` for the block: a single
    server, whatever ``RATCHET_REDIS_CLUSTER`` says."""
    if url:
        asyncio.run(check_redis(settings, url))
        yield url, settings
        return
    with redis_for(None) as private:
        yield private, settings.replace(redis_cluster=False)


def _main(args: argparse.Namespace) -> int:
    settings = get_settings()
    params = engine_params(args.config, settings)
    policy = load_policy_file(args.policy) if args.policy else None
    if args.batch < 1:
        raise ConfigError("--batch must be >= 1")
    if args.warmup < 0:
        raise ConfigError("--warmup must be >= 0")
    if args.keep and not (args.redis_url or settings.redis_url):
        raise ConfigError("--keep needs --redis-url (or RATCHET_REDIS_URL): without one the "
                          "replay runs on a private redis-server that stops with it, and the "
                          "kept keys would go with it")
    src_path = None if args.input == "-" else Path(args.input)
    if src_path is not None and not src_path.is_file():
        raise ConfigError(f"--input {args.input}: no such file")
    total = _count_lines(src_path) if src_path is not None else None
    source = src_path.open("rb") if src_path is not None else sys.stdin.buffer
    sink = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")  # noqa: SIM115
    try:
        with replay_redis(args.redis_url or settings.redis_url, settings) as (url, used):
            summary = asyncio.run(
                replay(
                    source, sink, redis_url=url, params=params, settings=used,
                    learn=not args.no_learn,
                    namespace=args.namespace, keep=args.keep, batch_size=args.batch,
                    rich=args.rich or settings.rich_markov, total=total,
                    progress=None if args.quiet else sys.stderr,
                    warmup_runs=args.warmup, review_with_labels=args.review == "labels",
                    policy=policy, policy_keys=Keys(settings.key_prefix),
                    guardrails=not args.no_guardrails,
                )
            )
    finally:
        if src_path is not None:
            source.close()
        if sink is not sys.stdout.buffer:
            sink.close()
    print(summary.render(), file=sys.stderr)
    if args.keep:
        print(f"kept namespace: {summary.namespace} (RATCHET_KEY_PREFIX={summary.namespace} "
              "reads it; --namespace reuses it)", file=sys.stderr)
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(summary.as_dict(), option=orjson.OPT_INDENT_2))
    return 1 if summary.invalid else 0
