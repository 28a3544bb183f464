"""Create Kafka topics explicitly (broker auto-creation varies: Tansu, Apache Kafka, MSK...)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from models.errors import UnavailableError
from ratchet.kafka.failures import unavailable

__all__ = ["check_brokers", "ensure_topics", "make_admin"]

_TOPIC_ALREADY_EXISTS = 36


def make_admin(bootstrap: str, security: Mapping[str, Any] | None) -> AIOKafkaAdminClient:
    """An admin client (not connected yet) with Ratchet's security settings."""
    return AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000,
                               client_id="ratchet-admin", **(security or {}))


async def check_brokers(bootstrap: str, security: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`UnavailableError` unless the brokers answer a metadata request (a
    process's start-up check, before a framework would fail with its own traceback)."""
    admin = make_admin(bootstrap, security)
    try:
        await admin.start()
        await admin.list_topics()
    except KafkaError as exc:
        raise unavailable(bootstrap, exc) from exc
    finally:
        await admin.close()


async def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    replication: int = 1,
    *,
    security: Mapping[str, Any] | None = None,
) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are.

    ``partitions`` and ``replication`` come from ``RATCHET_TOPIC_PARTITIONS`` and
    ``RATCHET_TOPIC_REPLICATION_FACTOR``; ``security`` from
    :func:`ratchet.kafka.security.client_kwargs`.
    """
    wanted = list(dict.fromkeys(names))
    admin = make_admin(bootstrap, security)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if not missing:
            return
        response = await admin.create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=replication) for n in missing]
        )
        for topic, code, *_ in response.topic_errors:
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                raise UnavailableError(f"could not create Kafka topic {topic}: error code {code}")
    except KafkaError as exc:
        raise unavailable(bootstrap, exc) from exc
    finally:
        await admin.close()
