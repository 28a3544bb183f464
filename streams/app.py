"""The one Faust application of Ratchet's workers, built from :class:`ratchet.config.settings.Settings`.

No pickle, no Faust records: every topic carries raw bytes (``value_serializer="raw"``) and the
bodies are decoded with :mod:`models.envelope`. No tables and no changelog topics either — all
state lives in Redis — so the only Faust-internal topic is the assignor's leader topic.

``create_app(settings)`` builds an app and its topics; the app never imports its agents:
:mod:`streams.service` builds the process's app and attaches them.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import faust
from faust.types import TopicT

from models.errors import ConfigError
from ratchet.config.settings import Settings
from ratchet.kafka.security import client_kwargs
from streams.transport import RatchetApp

__all__ = ["Topics", "create_app", "faust_broker_url", "faust_credentials"]


@dataclass(frozen=True)
class Topics:
    """The Kafka topics a worker reads and writes (names from settings)."""

    ingest: TopicT
    verdicts: TopicT
    feedback: TopicT
    #: The decision-log topic (``RATCHET_TOPIC_DECISIONS``), None when not set.
    decisions: TopicT | None = None


def faust_broker_url(bootstrap: str) -> str:
    """``host:port[,host:port]`` → Faust's ``kafka://host:port;host:port``."""
    hosts = [h.strip() for h in bootstrap.split(",") if h.strip()]
    if not hosts:
        raise ConfigError("RATCHET_KAFKA_BOOTSTRAP is empty; set it to host:port[,host:port]")
    return "kafka://" + ";".join(h.removeprefix("kafka://") for h in hosts)


def faust_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """:func:`ratchet.kafka.security.client_kwargs` as Faust ``broker_credentials``.

    Faust turns them back into aiokafka arguments (``credentials_to_aiokafka_auth``): SASL
    credentials with an SSL context become ``SASL_SSL``, without one ``SASL_PLAINTEXT``; so its
    consumers, producer and topic creation connect exactly like every other Ratchet client.
    """
    kwargs = client_kwargs(settings)
    protocol = kwargs["security_protocol"]
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(kwargs["ssl_context"])
    return faust.SASLCredentials(
        username=kwargs["sasl_plain_username"],
        password=kwargs["sasl_plain_password"],
        ssl_context=kwargs.get("ssl_context"),
        mechanism=kwargs["sasl_mechanism"],
    )


def create_app(settings: Settings) -> tuple[faust.App, Topics]:
    """A Faust app with Ratchet's topics; agents are attached by :mod:`streams.agents`."""
    if not settings.kafka_bootstrap:
        raise ConfigError(
            "RATCHET_KAFKA_BOOTSTRAP is not set: point it at Kafka (host:port), or run "
            "`ratchet demo`, which starts its own broker"
        )
    # Faust wants a data directory even without tables; nothing durable is written there.
    datadir = Path(tempfile.gettempdir()) / "ratchet-faust" / settings.worker_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = RatchetApp(
        settings.worker_id,
        broker=faust_broker_url(settings.kafka_bootstrap),
        datadir=str(datadir),
        store="memory://",
        autodiscover=False,
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        broker_credentials=faust_credentials(settings),
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=settings.broker_heartbeat_interval_s,
        broker_rebalance_timeout=settings.broker_rebalance_timeout_s,
        broker_request_timeout=max(90.0, settings.broker_session_timeout_s + 5.0),
        # Offsets are committed this often; a killed worker's successor re-reads at most this
        # much, and the engine's event-id dedup makes the replay harmless.
        broker_commit_interval=1.0,
        producer_linger=0.001,
        producer_acks=1,
        stream_wait_empty=False,
        table_cleanup_interval=3600.0,
        logging_config=None,
    )

    app.ratchet_fetch_wait_ms = settings.worker_fetch_wait_ms

    def topic(name: str) -> TopicT:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.topic_partitions,
        )

    topics = Topics(
        ingest=topic(settings.topic_ingest),
        verdicts=topic(settings.topic_verdicts),
        feedback=topic(settings.topic_feedback),
        decisions=topic(settings.topic_decisions) if settings.topic_decisions else None,
    )
    return app, topics
