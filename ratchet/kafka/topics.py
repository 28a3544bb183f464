"""Create Kafka topics explicitly (broker auto-creation varies: Tansu, Apache Kafka, MSK...)."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from models.errors import UnavailableError

__all__ = ["ensure_topics"]

_TOPIC_ALREADY_EXISTS = 36


async def ensure_topics(
    bootstrap: str, names: Iterable[str], partitions: int, replication: int = 1
) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    wanted = list(dict.fromkeys(names))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
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
        raise UnavailableError(f"Kafka at {bootstrap} did not answer: {exc}") from exc
    finally:
        await admin.close()
