"""Fixtures of the integration tests: an in-process gateway, a tenant, a whole HTTP stack.

Servers (redis-server, Tansu) come from tests/conftest.py; helpers live in ``*_support.py``
modules. No test module imports another.

The security and isolation modules of :data:`CLUSTER_MODULES` run every test twice: once on the
single redis-server (``[single]``) and once with the gateway and every Redis client of the test
on the 3-master Redis Cluster (``[cluster]``, ``RATCHET_REDIS_CLUSTER=true``). A test takes part
by using ``redis_url``, ``redis_client`` or ``gw_settings`` (all follow ``redis_mode``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from ratchet.config.settings import Settings
from ratchet.kafka.topics import ensure_topics
from ratchet.platform.provisioning import create_agent, create_project
from ratchet.sandbox.client import RatchetClient
from ratchet.sandbox.process import FAST_GROUP_ENV, ChildProcess, gateway_process, worker_env
from ratchet.sandbox.servers import free_port
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient, connect
from tests.integration.gateway_support import Gateway, Tenant, make_tenant, own_gateway
from tests.integration.pipeline_support import LOCKING_ENGINE, Stack

#: Modules also run against the Redis Cluster (see the module docstring).
CLUSTER_MODULES = frozenset({
    "test_tenant_isolation", "test_scope_matrix", "test_gateway_auth", "test_gateway_rotation",
    "test_gateway_signup", "test_gateway_idempotency", "test_gateway_ratelimit", "test_key_steps",
    "test_attack_caps", "test_engine_batching",
})


#: Tests of those modules that run on the single Redis only: the CLI walk-through on the cluster
#: is tests/integration/test_cli_cluster.py.
SINGLE_ONLY = frozenset({"test_rotation_cli"})


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if (module in CLUSTER_MODULES and "redis_mode" in metafunc.fixturenames
            and metafunc.function.__name__ not in SINGLE_ONLY):
        metafunc.parametrize(
            "redis_mode", ["single", pytest.param("cluster", marks=pytest.mark.cluster)],
            indirect=True)


@pytest.fixture
def redis_mode(request: pytest.FixtureRequest) -> str:
    """``single`` or ``cluster``: which Redis this test's gateway and clients use."""
    return str(getattr(request, "param", "single"))


@pytest.fixture
def redis_url(redis_url: str, redis_mode: str, request: pytest.FixtureRequest) -> str:
    """The session's single redis-server, or a seed node of the session's Redis Cluster."""
    if redis_mode == "cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    return redis_url


@pytest.fixture
async def redis_client(redis_url: str, redis_mode: str) -> AsyncIterator[RedisClient]:
    client = connect(redis_url, cluster=redis_mode == "cluster")
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def gw_settings(
    redis_url: str, redis_mode: str, kafka_bootstrap: str, key_prefix: str
) -> Settings:
    settings = Settings(
        redis_url=redis_url, redis_cluster=redis_mode == "cluster",
        kafka_bootstrap=kafka_bootstrap, key_prefix=key_prefix,
        topic_ingest=f"{key_prefix}-ingest", topic_verdicts=f"{key_prefix}-verdicts",
        topic_feedback=f"{key_prefix}-feedback", topic_audit=f"{key_prefix}-audit",
        topic_partitions=2,
        kafka_send_timeout_s=2.0, max_wait_ms=3000,
    )
    await ensure_topics(kafka_bootstrap, [settings.topic_ingest, settings.topic_verdicts,
                                          settings.topic_feedback, settings.topic_audit], 2)
    return settings


@pytest.fixture
async def gateway(gw_settings: Settings) -> AsyncIterator[Gateway]:
    async with own_gateway(gw_settings) as gw:
        yield gw


@pytest.fixture
async def tenant(gateway: Gateway) -> AsyncIterator[Tenant]:
    t = await make_tenant(gateway)
    try:
        yield t
    finally:
        await t.client.close()


@pytest.fixture
async def stack(
    redis_url: str, kafka_bootstrap: str, key_prefix: str, tmp_path: Path
) -> AsyncIterator[Stack]:
    suffix = uuid.uuid4().hex[:8]
    engine = tmp_path / "engine.toml"
    engine.write_text(LOCKING_ENGINE)
    port = free_port()
    env = worker_env(
        redis_url=redis_url, kafka_bootstrap=kafka_bootstrap, key_prefix=key_prefix,
        topic_ingest=f"ingest-{suffix}", topic_verdicts=f"verdicts-{suffix}",
        topic_feedback=f"feedback-{suffix}", topic_partitions=4, worker_id=f"pipe-{suffix}",
        worker_web_port=0, gateway_host="127.0.0.1", gateway_port=port,
        engine_config=str(engine),
    )
    env.update(FAST_GROUP_ENV)
    keys = Keys(key_prefix)
    redis = Redis.from_url(redis_url)
    try:
        project, api_key = await create_project(redis, keys, "pipeline test")
        _, secret = await create_agent(redis, keys, project, "ops-bot")
    finally:
        await redis.aclose()
    gateway = gateway_process(env).start()
    worker = ChildProcess(env, name="worker").start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with session.get(base + "/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, gateway.log()[-3000:]
                await asyncio.sleep(0.2)
            client = RatchetClient(base, api_key, "ops-bot", secret, project_id=project,
                                   session=session)
            yield Stack(client, redis_url, keys, gateway, worker)
    finally:
        worker.stop()
        gateway.stop()
