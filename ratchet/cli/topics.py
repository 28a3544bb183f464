"""``ratchet topics create``: create Ratchet's Kafka topics with the configured layout.

The Kubernetes topic Job and the compose one-shot run this instead of ``kafka-topics.sh`` so topic
creation connects like every other Ratchet client (``RATCHET_KAFKA_SECURITY_PROTOCOL``, SASL, TLS)
and takes ``RATCHET_TOPIC_PARTITIONS`` and ``RATCHET_TOPIC_REPLICATION_FACTOR`` from the same
settings. Existing topics are left as they are (Kafka never shrinks partitions).
"""

from __future__ import annotations

import argparse
import asyncio

from models.errors import ConfigError
from ratchet.config.settings import Settings, get_settings
from ratchet.kafka.security import client_kwargs
from ratchet.kafka.topics import ensure_topics

__all__ = ["create_topics", "register", "topic_names"]


def topic_names(settings: Settings) -> list[str]:
    return [settings.topic_ingest, settings.topic_verdicts, settings.topic_feedback,
            settings.topic_audit]


def create_topics(settings: Settings) -> list[str]:
    """Create the missing topics of ``settings``; returns every topic name."""
    if not settings.kafka_bootstrap:
        raise ConfigError("set RATCHET_KAFKA_BOOTSTRAP to the Kafka cluster (host:port)")
    names = topic_names(settings)
    asyncio.run(ensure_topics(settings.kafka_bootstrap, names, settings.topic_partitions,
                              settings.topic_replication_factor,
                              security=client_kwargs(settings)))
    return names


def _cmd_create(args: argparse.Namespace) -> int:
    settings = get_settings()
    for name in create_topics(settings):
        print(f"{name}: ok ({settings.topic_partitions} partitions, replication "
              f"{settings.topic_replication_factor} when created)")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    topics = subparsers.add_parser(
        "topics", help="Kafka topics of Ratchet",
        description="Create the ingest, verdicts, feedback and audit topics "
                    "(RATCHET_TOPIC_*), with RATCHET_TOPIC_PARTITIONS partitions and "
                    "RATCHET_TOPIC_REPLICATION_FACTOR replicas, on the brokers of "
                    "RATCHET_KAFKA_BOOTSTRAP (required) over the configured Kafka security "
                    "settings. Idempotent.",
    )
    sub = topics.add_subparsers(dest="topics_command", metavar="ACTION")
    sub.required = True
    create = sub.add_parser("create", help="create the topics that do not exist yet")
    create.set_defaults(func=_cmd_create)
