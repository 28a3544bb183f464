"""A whole local Ratchet (Redis, Tansu, gateway, worker) with one provisioned project and agent,
for client SDK tests and trying a client out.

``python -m ratchet.sandbox.stack`` starts everything on free loopback ports, prints one JSON
line ``{"url", "api_key", "project_id", "agent_id", "agent_secret"}`` and runs until stdin closes
or it gets SIGINT/SIGTERM, then stops every process it started. The TypeScript SDK's tests use
the same stack (started by ``tests/sdk/conftest.py``) through these credentials.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from ratchet.kafka.topics import ensure_topics
from ratchet.platform.provisioning import create_agent, create_project
from ratchet.sandbox.client import RatchetClient
from ratchet.sandbox.process import (
    FAST_GROUP_ENV,
    ChildProcess,
    gateway_process,
    wait_http_ready,
    worker_env,
)
from ratchet.sandbox.ready import wait_worker
from ratchet.sandbox.servers import RedisServer, TansuServer, free_port
from ratchet.store.keys import Keys

__all__ = ["LOCKING_ENGINE", "Credentials", "local_stack", "main", "provision"]

#: Engine parameters that lock a chain after a few runs, so a test can reach ``pause`` quickly.
LOCKING_ENGINE = """
[engine]
checkpoint_runs = 2
min_runs_soft = 2
min_runs_locked = 4
stability = 1.0
stability_large = 1.0
"""


@dataclass(frozen=True)
class Credentials:
    """What a client needs; ``url`` is the gateway's base URL."""

    url: str
    api_key: str
    project_id: str
    agent_id: str
    agent_secret: str
    #: Where the stack keeps its state (to provision more projects with ``provision``).
    redis_url: str
    key_prefix: str
    topic_ingest: str
    #: The rest an operator needs beside it (``ratchet record``, ``explain``, Prometheus):
    #: the broker and the other topics, the worker's metrics, the engine config both use.
    kafka_bootstrap: str = ""
    topic_verdicts: str = ""
    topic_feedback: str = ""
    topic_audit: str = ""
    worker_metrics_url: str = ""
    engine_config: str = ""


async def provision(redis_url: str, prefix: str, agent_id: str,
                    tier: str | None = None) -> tuple[str, str, str]:
    """A new project (on ``tier``) with one agent: ``(project_id, api_key, agent_secret)``."""
    redis = Redis.from_url(redis_url)
    try:
        project, api_key = await create_project(redis, Keys(prefix), "sdk stack", tier)
        _, secret = await create_agent(redis, Keys(prefix), project, agent_id)
        return project, api_key, secret
    finally:
        await redis.aclose()


async def _wait_decided(url: str, redis_url: str, prefix: str, tier: str,
                        worker: ChildProcess) -> None:
    """Until the worker decides: probe events from a project of their own (not the user's)."""
    project, api_key, secret = await provision(redis_url, prefix, "stack-probe", tier)
    async with aiohttp.ClientSession() as session:
        probe = RatchetClient(url, api_key, "stack-probe", secret, project_id=project,
                              session=session)
        await wait_worker(probe, worker, 60)


@contextlib.contextmanager
def local_stack(redis_url: str, kafka_bootstrap: str, *, agent_id: str = "sdk-agent",
                tiers: str = "sdk:6000:300", **settings: str | float) -> Iterator[Credentials]:
    """Gateway and worker child processes on their own topics and key prefix (servers given),
    with the locking engine and one project on the first of ``tiers``; always stopped.

    Yields once the worker decides events (a probe project's events come back with verdicts),
    so the caller's first event is answered like every later one."""
    suffix = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="ratchet-stack-") as tmp:
        engine = Path(tmp) / "engine.toml"
        engine.write_text(LOCKING_ENGINE)
        port, metrics_port = free_port(), free_port()
        prefix = f"sdk{suffix}"
        topics = {"topic_ingest": f"ingest-{suffix}", "topic_verdicts": f"verdicts-{suffix}",
                  "topic_feedback": f"feedback-{suffix}", "topic_audit": f"audit-{suffix}"}
        values: dict[str, str | float] = {
            "redis_url": redis_url, "kafka_bootstrap": kafka_bootstrap, "key_prefix": prefix,
            "topic_partitions": 2, "worker_id": f"sdk-{suffix}",
            "worker_web_port": metrics_port,
            "gateway_host": "127.0.0.1", "gateway_port": port, "engine_config": str(engine),
            "rate_limit_tiers": tiers, "default_tier": tiers.split(":", 1)[0],
            **topics, **settings,
        }
        env = worker_env()
        env.update({f"RATCHET_{k.upper()}": str(v) for k, v in values.items()})
        env.update(FAST_GROUP_ENV)
        asyncio.run(ensure_topics(kafka_bootstrap, list(topics.values()), 2))
        project, api_key, secret = asyncio.run(
            provision(redis_url, prefix, agent_id, tiers.split(":", 1)[0]))
        gateway = gateway_process(env)
        worker = ChildProcess(env, name="worker")
        try:
            gateway.start()
            worker.start()
            url = f"http://127.0.0.1:{port}"
            asyncio.run(wait_http_ready(url + "/readyz", gateway, 60))
            asyncio.run(_wait_decided(url, redis_url, prefix, tiers.split(":", 1)[0], worker))
            yield Credentials(url, api_key, project, agent_id, secret, redis_url, prefix,
                              topics["topic_ingest"], kafka_bootstrap, topics["topic_verdicts"],
                              topics["topic_feedback"], topics["topic_audit"],
                              f"http://127.0.0.1:{metrics_port}/metrics", str(engine))
        finally:
            worker.stop()
            gateway.stop()


def main(argv: list[str] | None = None) -> int:
    """Start Redis, Tansu and the stack; print the credentials; stop on EOF or a signal."""
    argparse.ArgumentParser(
        prog="python -m ratchet.sandbox.stack",
        description="A whole local Ratchet for trying a client out: redis-server, the Tansu "
                    "broker, a gateway and a worker on free loopback ports, with one project and "
                    "one agent. Prints one JSON line (url, api_key, project_id, agent_id, "
                    "agent_secret, redis_url, key_prefix, topic_ingest, kafka_bootstrap, the "
                    "other topics, worker_metrics_url, engine_config — set RATCHET_REDIS_URL, "
                    "RATCHET_KEY_PREFIX, RATCHET_ENGINE_CONFIG, RATCHET_KAFKA_BOOTSTRAP and the "
                    "RATCHET_TOPIC_* to them for the CLI) once the worker answers "
                    "(about 30 s: it joins its consumer group), then runs until stdin closes or "
                    "Ctrl-C, and stops everything it started. Not for production.",
    ).parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def until_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=until_eof, daemon=True).start()
    with RedisServer() as redis, TansuServer() as broker, \
            local_stack(redis.url, broker.bootstrap) as creds:
        print(json.dumps(asdict(creds)), flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
