"""The connection settings of every Kafka client Ratchet opens, built in one place.

The gateway's producer and verdict consumer, the webhook dispatcher's consumer, the audit sink,
topic creation and lag probes all pass :func:`client_kwargs` to aiokafka; the Faust workers get
the same values as ``broker_credentials`` (:func:`streams.app.faust_credentials`). One function means a
production cluster (TLS, SASL PLAIN or SCRAM) is configured once, by ``RATCHET_KAFKA_*``
settings, and no client can be left talking plaintext by accident.

>>> from ratchet.config.settings import Settings
>>> client_kwargs(Settings())
{'security_protocol': 'PLAINTEXT'}
>>> kw = client_kwargs(Settings(kafka_security_protocol="SASL_SSL",
...     kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="ratchet",
...     kafka_sasl_password="pw"))
>>> kw["sasl_mechanism"], kw["sasl_plain_username"], kw["ssl_context"] is not None
('SCRAM-SHA-512', 'ratchet', True)
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka.helpers import create_ssl_context

from models.errors import ConfigError
from ratchet.config.settings import Settings

__all__ = ["PROTOCOLS", "SASL_MECHANISMS", "client_kwargs"]

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _protocol(settings: Settings) -> str:
    protocol = settings.kafka_security_protocol.strip().upper()
    if protocol not in PROTOCOLS:
        raise ConfigError(
            f"RATCHET_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol!r} is not one of "
            f"{', '.join(PROTOCOLS)}"
        )
    return protocol


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    if bool(settings.kafka_ssl_certfile) != bool(settings.kafka_ssl_keyfile):
        raise ConfigError(
            "RATCHET_KAFKA_SSL_CERTFILE and RATCHET_KAFKA_SSL_KEYFILE go together (mutual TLS): "
            "set both or neither"
        )
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
            password=settings.kafka_ssl_key_password,
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            "cannot read the Kafka TLS files (RATCHET_KAFKA_SSL_CAFILE / _CERTFILE / _KEYFILE): "
            f"{exc}"
        ) from exc
    context.check_hostname = settings.kafka_ssl_check_hostname
    return context


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Security keyword arguments for any aiokafka producer, consumer or admin client.

    Raises :class:`ConfigError` naming the setting when the combination is incomplete (a SASL
    protocol without a mechanism, user name or password; a certificate without its key).
    """
    protocol = _protocol(settings)
    kwargs: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = _ssl_context(settings)
    if protocol.startswith("SASL_"):
        mechanism = settings.kafka_sasl_mechanism.strip().upper()
        if mechanism not in SASL_MECHANISMS:
            raise ConfigError(
                f"RATCHET_KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism!r} is not one of "
                f"{', '.join(SASL_MECHANISMS)}"
            )
        if not settings.kafka_sasl_username or not settings.kafka_sasl_password:
            raise ConfigError(
                f"RATCHET_KAFKA_SECURITY_PROTOCOL={protocol} needs RATCHET_KAFKA_SASL_USERNAME "
                "and RATCHET_KAFKA_SASL_PASSWORD"
            )
        kwargs["sasl_mechanism"] = mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = str(settings.kafka_sasl_password)
    return kwargs

