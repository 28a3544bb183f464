"""``ratchet demo``: the whole pipeline on this machine, driven by synthetic agents.

The command's arguments; the run itself is :func:`ratchet.sandbox.demo.run_demo`.
"""

from __future__ import annotations

import argparse
import sys

from models.errors import ConfigError
from ratchet.sandbox.demo import DemoOptions, run_demo

__all__ = ["main", "register"]


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.events < 1:
        raise ConfigError("--events must be at least 1")
    opts = DemoOptions(
        events=args.events, agents=args.agents, batch=args.batch, seed=args.seed,
        anomaly_rate=args.anomaly_rate, rich=args.rich, sync_events=args.sync_events,
        json_path=args.json, quiet=args.quiet,
    )
    report = run_demo(opts)
    return 1 if report.missing else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` subcommand to the ``ratchet`` command."""
    d = DemoOptions()
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline locally on synthetic agents and print a summary",
        description=(
            "Start Redis and a Kafka-protocol broker (unless RATCHET_REDIS_URL / "
            "RATCHET_KAFKA_BOOTSTRAP are set), a gateway and a worker; stream synthetic agents "
            "with injected anomalies through the signed HTTP API; print how the baselines "
            "ratcheted, verdicts, throughput, latency and precision/recall. Stops everything it "
            "started on exit or Ctrl-C."
        ),
    )
    p.add_argument("--events", type=int, default=d.events,
                   help=f"events to send (default {d.events:,}: about a minute on 2 cores)")
    p.add_argument("--agents", type=int, default=d.agents,
                   help=f"synthetic agents (default {d.agents})")
    p.add_argument("--batch", type=int, default=d.batch,
                   help=f"events per bulk request per agent (default {d.batch})")
    p.add_argument("--seed", type=int, default=d.seed,
                   help=f"seed of the traffic generator: the same seed sends the same events "
                        f"(default {d.seed})")
    p.add_argument("--anomaly-rate", type=float, default=d.anomaly_rate,
                   help=f"share of post-warm-up runs made anomalous (default {d.anomaly_rate})")
    p.add_argument("--rich", action=argparse.BooleanOptionalAction, default=d.rich,
                   help="rich Markov mode (RATCHET_RICH_MARKOV: a node is the payload's shape plus "
                        "its service and coarse action); off by default, as a worker ships")
    p.add_argument("--sync-events", type=int, default=d.sync_events,
                   help="single events sent with wait_ms at the end, for latency (default "
                        f"{d.sync_events}; 0 = skip)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=_cmd_demo)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ratchet.cli.demo")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["demo", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("ratchet demo: interrupted; everything it started was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
