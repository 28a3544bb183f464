"""The one Redis client factory and the one translation of Redis failures.

Every process opens Redis through :func:`connect` (one set of timeouts, from
``RATCHET_REDIS_TIMEOUT_S``; a Redis Cluster when ``RATCHET_REDIS_CLUSTER`` is set), and every
"Redis is down" becomes :class:`models.errors.UnavailableError` in exactly one way,
:func:`unavailable`. Stores derive from :class:`RedisStore`, which wraps each of their public
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
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from models.errors import UnavailableError
from ratchet.config.settings import Settings

__all__ = [
    "REDIS_FAILURES",
    "RedisClient",
    "RedisStore",
    "connect",
    "connect_from_settings",
    "unavailable",
]

#: A Redis client: one server, or a cluster (keys of one chain share a hash tag).
RedisClient = Redis | RedisCluster

#: Exceptions that mean "Redis did not answer" (down, restarting, unreachable, too slow).
REDIS_FAILURES: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    TimeoutError,
)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


@overload
def connect(url: str, *, cluster: Literal[False] = False, timeout_s: float = 5.0) -> Redis: ...
@overload
def connect(url: str, *, cluster: bool, timeout_s: float = 5.0) -> RedisClient: ...
def connect(url: str, *, cluster: bool = False, timeout_s: float = 5.0) -> RedisClient:
    """A client for ``url``: connect and command timeout ``timeout_s`` (a down Redis fails fast
    instead of hanging a request or a batch); ``cluster`` for a Redis Cluster seed URL."""
    if cluster:
        return RedisCluster.from_url(url, socket_timeout=timeout_s,
                                     socket_connect_timeout=timeout_s)
    # A pooled connection whose server restarted fails on first use; it is reconnected and the
    # command retried once (connection errors only: a timeout may mean the command ran, slowly).
    return Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError],
    )


def connect_from_settings(settings: Settings, url: str | None = None) -> RedisClient:
    """:func:`connect` with the process settings (``url`` overrides ``RATCHET_REDIS_URL``)."""
    target = url or settings.redis_url
    if not target:
        raise UnavailableError(
            "RATCHET_REDIS_URL is not set: point it at redis://host:port/db"
        )
    return connect(target, cluster=settings.redis_cluster, timeout_s=settings.redis_timeout_s)


def unavailable(exc: BaseException) -> UnavailableError:
    """The one translation of a Redis failure: what callers above the store floor see."""
    return UnavailableError(f"Redis is unavailable ({type(exc).__name__}); retry later")


def _translating(method: F) -> F:
    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except REDIS_FAILURES as exc:
            raise unavailable(exc) from exc

    return wrapper  # type: ignore[return-value]


class RedisStore:
    """Base of every store: public coroutine methods raise :class:`UnavailableError`, never a
    redis-py connection error (wrapped once, when the subclass is defined)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, member in list(vars(cls).items()):
            if not name.startswith("_") and inspect.iscoroutinefunction(member):
                setattr(cls, name, _translating(member))
