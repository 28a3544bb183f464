"""The one translation of redis-py exceptions (ratchet/store/redis.py): cluster errors included,
none reaches a caller raw."""

from __future__ import annotations

import pytest
from redis.exceptions import (
    AskError,
    ClusterCrossSlotError,
    ClusterDownError,
    ConnectionError,
    CrossSlotTransactionError,
    MovedError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)

from models.errors import ConfigError, StoreError, UnavailableError
from ratchet.store.redis import REDIS_ERRORS, REDIS_FAILURES, RedisStore, translate


@pytest.mark.parametrize(("exc", "kind", "says"), [
    (MovedError("3999 127.0.0.1:7001"), ConfigError, "RATCHET_REDIS_CLUSTER"),
    (AskError("3999 127.0.0.1:7001"), ConfigError, "RATCHET_REDIS_CLUSTER"),
    (ClusterCrossSlotError(), StoreError, "spanned hash slots"),
    (CrossSlotTransactionError("keys in different slots"), StoreError, "spanned hash slots"),
    (RedisClusterException("EVALSHA - all keys must map to the same key slot"), StoreError,
     "spanned hash slots"),
    (ClusterDownError("CLUSTERDOWN"), UnavailableError, "ClusterDownError"),
    (TryAgainError("TRYAGAIN"), UnavailableError, "TryAgainError"),
    (SlotNotCoveredError("Slot 12 is not covered"), UnavailableError, "SlotNotCoveredError"),
    (RedisClusterException("Redis Cluster cannot be connected"), UnavailableError,
     "RedisClusterException"),
    (ConnectionError("refused"), UnavailableError, "ConnectionError"),
])
def test_translate(exc: BaseException, kind: type[Exception], says: str) -> None:
    assert isinstance(exc, REDIS_ERRORS)
    out = translate(exc)
    assert type(out) is kind and says in str(out)
    # what retrying can cure is a failure (workers retry it); a bug is not
    assert isinstance(exc, REDIS_FAILURES) == (
        kind is UnavailableError and type(exc) is not RedisClusterException)


async def test_stores_translate_cluster_errors() -> None:
    class Store(RedisStore):
        async def read(self) -> None:
            raise MovedError("3999 127.0.0.1:7001")

    with pytest.raises(ConfigError, match="RATCHET_REDIS_CLUSTER"):
        await Store().read()
