"""``ratchet worker``: run one Faust worker (hook: :func:`register`; standalone: ``python -m ratchet.cli.worker``).

Needs ``RATCHET_REDIS_URL`` and ``RATCHET_KAFKA_BOOTSTRAP``. Prometheus metrics are served on
``RATCHET_WORKER_WEB_PORT`` (``/metrics``; 0 disables). Stop with SIGTERM or Ctrl-C: the worker
finishes its current batch, commits and leaves the consumer group.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
from collections.abc import Sequence

from models.errors import ConfigError, RatchetError
from ratchet.config.engine import engine_params
from ratchet.config.settings import Settings, get_settings
from ratchet.kafka.security import client_kwargs
from ratchet.kafka.topics import check_brokers
from ratchet.telemetry.logs import logging_config, setup_logging

__all__ = ["main", "register", "run_worker"]

log = logging.getLogger("ratchet.worker")


def check_settings(settings: Settings) -> None:
    missing = [
        name
        for name, value in (
            ("RATCHET_REDIS_URL", settings.redis_url),
            ("RATCHET_KAFKA_BOOTSTRAP", settings.kafka_bootstrap),
        )
        if not value
    ]
    if missing:
        raise ConfigError(
            f"{' and '.join(missing)} not set: a worker needs Redis (redis://host:port/db) and "
            "Kafka (host:port). For a self-contained try-out run `ratchet demo` instead."
        )


#: The exit code of a worker whose stop outlasted ``RATCHET_WORKER_SHUTDOWN_TIMEOUT_S``.
EXIT_STOP_TIMEOUT = 3


def _arm_stop_deadline(timeout_s: float) -> None:
    """Once a stop signal arrived: exit the process after ``timeout_s`` if the stop has not
    finished by then (a daemon timer thread: it cannot keep a finished process alive)."""
    if timeout_s <= 0 or _stop_deadline:
        return

    def expire() -> None:
        log.error("worker stop did not finish within %g s (RATCHET_WORKER_SHUTDOWN_TIMEOUT_S; a "
                  "broker or Redis not answering, or a consumer-group join still under way, "
                  "which cannot be left until the broker answers it): exiting; uncommitted "
                  "batches are redelivered", timeout_s)
        logging.shutdown()
        os._exit(EXIT_STOP_TIMEOUT)

    timer = threading.Timer(timeout_s, expire)
    timer.daemon = True
    timer.start()
    _stop_deadline.append(timer)


_stop_deadline: list[threading.Timer] = []


def run_worker(settings: Settings, *, loglevel: str | None = None, quiet: bool = True) -> int:
    """Run a worker in this process until it is stopped; returns the exit code."""
    check_settings(settings)
    # a broken engine config must stop the worker here, not inside an agent that Faust restarts
    engine_params(None, settings)
    # unreachable brokers: one error line, not Faust's traceback after its start-up
    assert settings.kafka_bootstrap
    asyncio.run(check_brokers(settings.kafka_bootstrap, client_kwargs(settings)))
    import faust

    from streams.service import get_app
    from streams.tuning import use_uvloop

    use_uvloop(settings.worker_uvloop)  # before the app and its loop exist
    app, _ = get_app(settings)
    if settings.worker_web_port:
        from prometheus_client import start_http_server

        start_http_server(settings.worker_web_port, addr=settings.metrics_host)
    level = (loglevel or settings.log_level).upper()
    deadline_s = settings.worker_shutdown_timeout_s

    class Worker(faust.Worker):
        """Faust's worker with a bound on how long a stop may take (mode's own wait is 60 s)."""

        def _on_sigterm(self) -> None:
            _arm_stop_deadline(deadline_s)
            super()._on_sigterm()

        def _on_sigint(self) -> None:
            _arm_stop_deadline(deadline_s)
            super()._on_sigint()

    worker = Worker(
        app, loglevel=level.lower(), quiet=quiet,
        logging_config=logging_config(level, settings.log_format),
    )
    # Faust's progress spinner sets the root logger to DEBUG (to spin on every record), so every
    # debug call of aiokafka and Faust builds a LogRecord: ~5% of a worker's CPU (measured with
    # py-spy). Without it the root logger keeps the configured level.
    worker.spinner = None
    log.info("ratchet worker %s starting: joining consumer group %s (a first start waits for the "
             "group to settle, up to RATCHET_BROKER_REBALANCE_TIMEOUT_S=%gs); events are decided "
             "once it logs 'joined consumer group'", settings.worker_id, settings.worker_id,
             settings.broker_rebalance_timeout_s)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.metrics_port is not None:
        settings = settings.replace(worker_web_port=args.metrics_port)
    return run_worker(settings, loglevel="debug" if getattr(args, "verbose", False) else None)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``worker`` subcommand to the ``ratchet`` command."""
    p = sub.add_parser(
        "worker",
        help="run a stream worker (Kafka ingest → engine on Redis → verdicts)",
        description=(
            "Run one Faust worker: consumes the ingest and feedback topics, decides every event "
            "with the engine on Redis and produces verdict envelopes. Scale by starting more "
            "workers (up to the number of partitions). Needs RATCHET_REDIS_URL and "
            "RATCHET_KAFKA_BOOTSTRAP; see docs/operations.md."
        ),
    )
    p.add_argument(
        "--metrics-port", type=int, default=None,
        help="serve Prometheus /metrics on this port (default RATCHET_WORKER_WEB_PORT; 0 = off)",
    )
    p.set_defaults(func=_cmd_worker)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ratchet.cli.worker")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    register(sub)
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
        setup_logging("DEBUG" if args.verbose else settings.log_level, settings.log_format)
        return int(args.func(args) or 0)
    except RatchetError as exc:
        print(f"ratchet: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
