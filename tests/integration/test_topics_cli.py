"""``ratchet topics create`` against the real broker: every topic with the settings' partitions,
idempotent, and a bad security setting is refused before anything is sent."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import pytest
from aiokafka import AIOKafkaConsumer

from ratchet.cli.topics import create_topics
from ratchet.config.settings import Settings

pytestmark = pytest.mark.kafka


async def _partitions(bootstrap: str, names: list[str]) -> dict[str, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()
        return {n: len(consumer.partitions_for_topic(n) or ()) for n in names}
    finally:
        await consumer.stop()


def test_topics_create_makes_every_topic_once(kafka_bootstrap: str) -> None:
    p = f"cli-{uuid.uuid4().hex[:8]}"
    s = Settings(kafka_bootstrap=kafka_bootstrap, topic_ingest=f"{p}-ingest",
                 topic_verdicts=f"{p}-verdicts", topic_feedback=f"{p}-feedback",
                 topic_audit=f"{p}-audit", topic_partitions=3)
    names = create_topics(s)
    assert asyncio.run(_partitions(kafka_bootstrap, names)) == dict.fromkeys(names, 3)
    # again, with another partition count: existing topics are left as they are
    assert create_topics(s.replace(topic_partitions=5)) == names
    assert asyncio.run(_partitions(kafka_bootstrap, names)) == dict.fromkeys(names, 3)


def test_the_command_names_a_bad_security_setting(kafka_bootstrap: str) -> None:
    env = {"RATCHET_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "RATCHET_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RATCHET_KAFKA_SASL_USERNAME": "u"}
    res = subprocess.run([sys.executable, "-m", "ratchet", "topics", "create"], env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "RATCHET_KAFKA_SASL_PASSWORD" in res.stderr
