"""The one translation of redis-py exceptions (ratchet/store/redis.py): cluster errors included,
none reaches a caller raw."""

from __future__ import annotations

from typing import Any

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

from models.errors import ConfigError, RedisUnavailableError, StoreError, UnavailableError
from ratchet.store.redis import REDIS_ERRORS, REDIS_FAILURES, RedisStore, client_broke, translate


@pytest.mark.parametrize(("exc", "kind", "says"), [
    (MovedError("3999 127.0.0.1:7001"), ConfigError, "RATCHET_REDIS_CLUSTER"),
    (AskError("3999 127.0.0.1:7001"), ConfigError, "RATCHET_REDIS_CLUSTER"),
    (ClusterCrossSlotError(), StoreError, "spanned hash slots"),
    (CrossSlotTransactionError("keys in different slots"), StoreError, "spanned hash slots"),
    (RedisClusterException("EVALSHA - all keys must map to the same key slot"), StoreError,
     "spanned hash slots"),
    (ClusterDownError("CLUSTERDOWN"), RedisUnavailableError, "ClusterDownError"),
    (TryAgainError("TRYAGAIN"), RedisUnavailableError, "TryAgainError"),
    (SlotNotCoveredError("Slot 12 is not covered"), RedisUnavailableError,
     "SlotNotCoveredError"),
    (RedisClusterException("Redis Cluster cannot be connected"), RedisUnavailableError,
     "RedisClusterException"),
    (ConnectionError("refused"), RedisUnavailableError, "ConnectionError"),
])
def test_translate(exc: BaseException, kind: type[Exception], says: str) -> None:
    assert isinstance(exc, REDIS_ERRORS)
    out = translate(exc)
    assert type(out) is kind and says in str(out)
    # what retrying can cure is a failure (workers retry it); a bug is not
    assert isinstance(exc, REDIS_FAILURES) == (
        kind is RedisUnavailableError and type(exc) is not RedisClusterException)


async def test_stores_translate_cluster_errors() -> None:
    class Store(RedisStore):
        async def read(self) -> None:
            raise MovedError("3999 127.0.0.1:7001")

    with pytest.raises(ConfigError, match="RATCHET_REDIS_CLUSTER"):
        await Store().read()


def _written_by(module: str) -> Any:
    """A function whose code runs as part of ``module`` (its globals name it), like redis-py's
    connection writing to a writer another coroutine has just closed."""
    ns: dict[str, Any] = {"__name__": module}
    exec("def send(writer):\n    writer.writelines([b'PING'])\n", ns)  # noqa: S102
    return ns["send"]


async def test_redis_py_failing_on_a_torn_down_connection_is_unavailable() -> None:
    """Seen in a failover of the test cluster: redis-py's cluster pipeline wrote to a
    connection whose writer another coroutine had set to None (AttributeError raised inside
    redis.asyncio.connection). That is a broken connection (503, retry), not a bug of ours; the
    same exception from our own code still propagates as it is."""
    send = _written_by("redis.asyncio.connection")
    with pytest.raises(AttributeError) as raised:
        send(None)
    assert client_broke(raised.value)

    class Store(RedisStore):
        async def write(self, module: str) -> None:
            _written_by(module)(None)

    with pytest.raises(UnavailableError, match="AttributeError"):
        await Store().write("redis.asyncio.connection")
    with pytest.raises(AttributeError):
        await Store().write("ratchet.store.verdicts")
    try:
        _written_by("ratchet.store.verdicts")(None)
    except AttributeError as exc:
        assert not client_broke(exc)
    assert not client_broke(ValueError("x")) and not client_broke(AttributeError("no traceback"))
