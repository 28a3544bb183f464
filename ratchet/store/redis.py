"""The one Redis client factory and the one translation of Redis failures.

Every process opens Redis through :func:`connect_from_settings` (one set of timeouts, from
``RATCHET_REDIS_TIMEOUT_S``; a Redis Cluster client when ``RATCHET_REDIS_CLUSTER`` is set), and
every Redis failure becomes a :class:`models.errors.RatchetError` in exactly one way,
:func:`translate`: "Redis is down" (including a cluster that is failing over or has an uncovered
slot) is :class:`~models.errors.UnavailableError` (503, retry); a ``MOVED`` answer to a plain
client (the URL is a cluster node, ``RATCHET_REDIS_CLUSTER`` is off) is a
:class:`~models.errors.ConfigError` naming the setting; a ``CROSSSLOT`` refusal (a command whose
keys span hash slots: a bug) is a :class:`~models.errors.StoreError`. No redis-py exception
reaches a client or a CLI user raw. Stores derive from :class:`RedisStore`, which wraps each of their public
coroutine methods once (as ``limits`` wraps its storage methods), so callers above the store floor
catch one error type and never a redis-py exception.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar, overload

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    ClusterCrossSlotError,
    ClusterDownError,
    CrossSlotTransactionError,
    InvalidResponse,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from models.errors import ConfigError, RatchetError, StoreError, UnavailableError
from ratchet.config.settings import Settings
from ratchet.store.pool import WaitingConnectionPool

__all__ = [
    "REDIS_ERRORS",
    "REDIS_FAILURES",
    "RedisClient",
    "RedisStore",
    "connect",
    "connect_from_settings",
    "translate",
    "unavailable",
]

#: A Redis client: one server, or a cluster (keys of one chain share a hash tag).
RedisClient = Redis | RedisCluster

#: Exceptions that mean "Redis did not answer" (down, restarting, unreachable, too slow; a
#: cluster that is down, failing over or cannot be reached at all) or did not answer as Redis
#: (a reply the protocol parser cannot read — something else on the port, a proxy or the
#: connection broke mid-reply —, a replica refusing writes during a failover, a server over
#: ``maxmemory``): retrying later can succeed.
REDIS_FAILURES: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    TimeoutError,
    ClusterDownError,
    TryAgainError,
    SlotNotCoveredError,
    InvalidResponse,
    ReadOnlyError,
    OutOfMemoryError,
)

#: Every Redis exception :func:`translate` knows: the failures above, plus a ``MOVED``/``ASK``
#: redirect a plain client cannot follow, a cross-slot refusal and any other refusal of the
#: cluster client.
REDIS_ERRORS: tuple[type[BaseException], ...] = (
    *REDIS_FAILURES, AskError, ClusterCrossSlotError, RedisClusterException,
)

#: How redis-py words its own refusal of a command whose keys span slots.
_CROSS_SLOT = "same key slot"

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class _Cluster(RedisCluster):
    """redis-py's cluster client, which finishes discovering the topology before a command runs.

    Without this, the first commands of a fresh client sent concurrently (a gateway's first
    requests, a batch of scripts) race the discovery that redis-py starts inside the first of
    them and some fail with ``AttributeError`` on a connection it closed under them (redis-py
    8.1, reproduced on the 3-master test cluster). Discovery is locked and runs once.

    Its client-side refusals are also given the types the rest of Ratchet knows: an unreachable
    cluster raises a ``ConnectionError`` (a failure workers retry, 503 at the gateway), keys of
    several slots in one command a ``ClusterCrossSlotError`` (a bug, never retried).
    """

    async def initialize(self, *args: Any, **kwargs: Any) -> _Cluster:
        try:
            await super().initialize(*args, **kwargs)
        except SlotNotCoveredError:
            raise
        except RedisClusterException as exc:  # "Redis Cluster cannot be connected", ...
            raise RedisConnectionError(f"Redis Cluster unreachable: {exc}") from exc
        return self

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self._initialize:
            await self.initialize()
        try:
            return await super().execute_command(*args, **kwargs)
        except RedisClusterException as exc:
            if _CROSS_SLOT in str(exc):
                raise ClusterCrossSlotError(str(exc)) from exc
            raise


@overload
def connect(url: str, *, cluster: Literal[False] = False, timeout_s: float = 5.0,
            max_connections: int = 100) -> Redis: ...
@overload
def connect(url: str, *, cluster: bool, timeout_s: float = 5.0,
            max_connections: int = 100) -> RedisClient: ...
def connect(url: str, *, cluster: bool = False, timeout_s: float = 5.0,
            max_connections: int = 100) -> RedisClient:
    """A client for ``url``: connect and command timeout ``timeout_s`` (a down Redis fails fast
    instead of hanging a request or a batch); ``cluster`` for a Redis Cluster seed URL.

    A single server's client keeps at most ``max_connections`` connections, and a command that
    finds them all in use WAITS for one (up to ``timeout_s``, :mod:`ratchet.store.pool`):
    redis-py's default pool refuses it at once (``MaxConnectionsError``), so a burst of
    concurrent requests from one tenant made other tenants' requests fail with 503."""
    if cluster:
        return _Cluster.from_url(url, socket_timeout=timeout_s,
                                 socket_connect_timeout=timeout_s)
    # A pooled connection whose server restarted fails on first use; it is reconnected and the
    # command retried once (connection errors only: a timeout may mean the command ran, slowly).
    pool = WaitingConnectionPool.from_url(
        url, max_connections=max_connections, wait_s=timeout_s,
        socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError],
    )
    client = Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # aclose() closes the pool, as from_url's would
    return client


def connect_from_settings(settings: Settings, url: str | None = None) -> RedisClient:
    """:func:`connect` with the process settings (``url`` overrides ``RATCHET_REDIS_URL``)."""
    target = url or settings.redis_url
    if not target:
        raise UnavailableError(
            "RATCHET_REDIS_URL is not set: point it at redis://host:port/db"
        )
    return connect(target, cluster=settings.redis_cluster, timeout_s=settings.redis_timeout_s,
                   max_connections=settings.redis_max_connections)


def unavailable(exc: BaseException) -> UnavailableError:
    """A Redis failure as callers above the store floor see it (503, retry later)."""
    return UnavailableError(f"Redis is unavailable ({type(exc).__name__}); retry later")


def translate(exc: BaseException) -> RatchetError:
    """The one translation of a Redis exception of :data:`REDIS_ERRORS` (see the module doc)."""
    if isinstance(exc, (ClusterCrossSlotError, CrossSlotTransactionError)) or (
            _CROSS_SLOT in str(exc)):
        return StoreError("a Redis command spanned hash slots (a bug: every multi-key step "
                          "must use keys of one hash tag); nothing was written by it")
    if isinstance(exc, AskError):  # MovedError included
        return ConfigError("Redis answered MOVED: RATCHET_REDIS_URL is a Redis Cluster node; "
                           "set RATCHET_REDIS_CLUSTER=true")
    return unavailable(exc)


def _translating(method: F) -> F:
    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except REDIS_ERRORS as exc:
            raise translate(exc) from exc

    return wrapper  # type: ignore[return-value]


class RedisStore:
    """Base of every store: public coroutine methods raise :class:`UnavailableError`, never a
    redis-py connection error (wrapped once, when the subclass is defined)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, member in list(vars(cls).items()):
            if not name.startswith("_") and inspect.iscoroutinefunction(member):
                setattr(cls, name, _translating(member))
