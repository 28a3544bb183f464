"""The one translation of a Kafka client failure at start-up into the product's error.

A process that cannot reach its brokers when it starts (a producer, a consumer, an admin client)
fails with :class:`models.errors.UnavailableError` naming the bootstrap servers and what the
client said — one line at the terminal (``ratchet: error: ...``), a 503 at the gateway — never a
client traceback.

>>> from aiokafka.errors import KafkaConnectionError
>>> str(unavailable("k:9092", KafkaConnectionError("Unable to bootstrap")))
'Kafka at k:9092 did not answer: KafkaConnectionError: Unable to bootstrap'
"""

from __future__ import annotations

from models.errors import UnavailableError

__all__ = ["unavailable"]


def unavailable(bootstrap: str, exc: BaseException) -> UnavailableError:
    """``Kafka at <bootstrap> did not answer: <exc>`` (raise it ``from exc``)."""
    return UnavailableError(f"Kafka at {bootstrap} did not answer: {exc}")
