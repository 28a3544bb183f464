"""Kafka security settings on the wire, against the real Tansu broker.

Tansu 0.6 on memory storage cannot show a successful TLS or SASL login (docs/deploy.md says why;
that needs a broker with SCRAM users: Apache Kafka, MSK, Confluent). What it CAN show: with
``RATCHET_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT`` every client — the Faust worker included —
opens its connection with a SASL handshake (Tansu refuses it: ``UnsupportedSaslMechanism``), the
refusal surfaces as an error naming the broker instead of a hang or a silent plaintext fallback,
and with the same settings set to ``PLAINTEXT`` the same clients work.
"""

from __future__ import annotations

import time
import uuid

import pytest
from redis.asyncio import Redis

from gateway.publisher import Publisher
from models.errors import UnavailableError
from ratchet.config.settings import Settings
from ratchet.kafka.audit_sink import kafka_sink
from ratchet.kafka.security import client_kwargs
from ratchet.kafka.topics import ensure_topics
from ratchet.sandbox.process import FAST_GROUP_ENV, ChildProcess, worker_env
from ratchet.webhooks.dispatch import WebhookDispatcher

pytestmark = pytest.mark.kafka

SASL = {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "ratchet", "kafka_sasl_password": "not-checked-by-tansu"}


def _settings(kafka_bootstrap: str, redis_url: str, **kw: object) -> Settings:
    topic = f"sec-{uuid.uuid4().hex[:8]}"
    return Settings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, topic_verdicts=topic,
                    topic_partitions=2, kafka_send_timeout_s=2.0,
                    broker_session_timeout_s=6.0, broker_heartbeat_interval_s=1.0,
                    **kw)  # type: ignore[arg-type]


def _refused(caplog: pytest.LogCaptureFixture) -> bool:
    """Did the broker refuse a SASL handshake since the last check? (aiokafka logs the cause.)"""
    seen = "UnsupportedSaslMechanism" in caplog.text
    caplog.clear()
    return seen


async def test_sasl_settings_reach_every_client_and_fail_loudly(
    kafka_bootstrap: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    s = _settings(kafka_bootstrap, redis_url, **SASL)
    sec = client_kwargs(s)
    caplog.set_level("ERROR", logger="aiokafka")

    with pytest.raises(UnavailableError, match=f"Kafka at {kafka_bootstrap}"):
        await ensure_topics(kafka_bootstrap, [s.topic_verdicts], 2, security=sec)
    assert _refused(caplog), "topic creation did not attempt SASL"

    publisher = Publisher(kafka_bootstrap, linger_ms=2, send_timeout_s=2.0, security=sec)
    with pytest.raises(UnavailableError, match=f"Kafka at {kafka_bootstrap}"):
        await publisher.start()
    await publisher.stop()
    assert _refused(caplog), "the gateway publisher did not attempt SASL"

    await ensure_topics(kafka_bootstrap, [s.topic_verdicts], 2)
    assert not _refused(caplog)

    async with kafka_sink(kafka_bootstrap, security=sec) as sink:
        assert sink is None  # best effort: the audit log keeps Redis as the source of truth
    assert _refused(caplog), "the audit sink did not attempt SASL"

    redis = Redis.from_url(redis_url)
    dispatcher = WebhookDispatcher(s, redis)
    try:
        with pytest.raises(UnavailableError, match=f"Kafka at {kafka_bootstrap}"):
            await dispatcher.start(assign_timeout_s=5.0)
        assert _refused(caplog), "the webhook dispatcher did not attempt SASL"
    finally:
        await dispatcher.stop()
        await redis.aclose()


async def test_the_same_clients_work_in_plaintext(kafka_bootstrap: str, redis_url: str) -> None:
    s = _settings(kafka_bootstrap, redis_url, kafka_security_protocol="plaintext")
    sec = client_kwargs(s)
    assert sec == {"security_protocol": "PLAINTEXT"}
    await ensure_topics(kafka_bootstrap, [s.topic_verdicts], 2, security=sec)
    publisher = Publisher(kafka_bootstrap, linger_ms=2, send_timeout_s=2.0, security=sec)
    try:
        await publisher.start()
        await publisher.send_raw(s.topic_verdicts, b"k", b"v")
        await publisher.check()
    finally:
        await publisher.stop()
    async with kafka_sink(kafka_bootstrap, security=sec) as sink:
        assert sink is not None
        await sink(s.topic_verdicts, b"k", b"audit")


def test_a_faust_worker_logs_in_with_sasl_and_exits_when_refused(
    kafka_bootstrap: str, redis_url: str
) -> None:
    """The worker's Faust clients get the SASL settings (broker_credentials): refused by the
    broker, the worker exits with an error instead of running in plaintext."""
    suffix = uuid.uuid4().hex[:8]
    env = worker_env(
        redis_url=redis_url, kafka_bootstrap=kafka_bootstrap, topic_ingest=f"i-{suffix}",
        topic_verdicts=f"v-{suffix}", topic_feedback=f"f-{suffix}", worker_id=f"w-{suffix}",
        worker_web_port=0, **{k: str(v) for k, v in SASL.items()},
    )
    env.update(FAST_GROUP_ENV)
    worker = ChildProcess(env, name="worker").start()
    try:
        deadline = time.monotonic() + 60
        while worker.running:
            assert time.monotonic() < deadline, "the worker kept running: " + worker.log()[-2000:]
            time.sleep(0.2)
        assert worker.proc is not None and worker.proc.returncode != 0
        assert "UnsupportedSaslMechanism" in worker.log(), worker.log()[-2000:]
    finally:
        worker.stop()
