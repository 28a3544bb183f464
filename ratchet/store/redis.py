"""The one Redis client factory and the one translation of Redis failures.

Every process opens Redis through :func:`connect_from_settings` (one set of timeouts, from
``RATCHET_REDIS_TIMEOUT_S``; a Redis Cluster client when ``RATCHET_REDIS_CLUSTER`` is set), and
every Redis failure becomes a :class:`models.errors.RatchetError` in exactly one way,
:func:`translate`: "Redis is down" (including a cluster that is failing over or has an uncovered
slot) is :class:`~models.errors.UnavailableError` (503, retry); a ``MOVED`` answer to a plain
client (the URL is a cluster node, ``RATCHET_REDIS_CLUSTER`` is off) is a
:class:`~models.errors.ConfigError` naming the setting; a ``CROSSSLOT`` refusal (a command whose
keys span hash slots: a bug) is a :class:`~models.errors.StoreError`; redis-py failing in its own
code on a connection torn down under a command (:func:`client_broke`) is unavailable too. No
redis-py exception
reaches a client or a CLI user raw. Stores derive from :class:`RedisStore`, which wraps each of their public
coroutine methods once (as ``limits`` wraps its storage methods), so callers above the store floor
catch one error type and never a redis-py exception.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import socket
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Literal, TypeVar, cast, overload

from redis._parsers.base import BaseParser
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.connection import HiredisRespSerializer
from redis.exceptions import (
    AskError,
    ClusterCrossSlotError,
    ClusterDownError,
    ClusterError,
    CrossSlotTransactionError,
    InvalidResponse,
    MaxConnectionsError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import HIREDIS_AVAILABLE

if HIREDIS_AVAILABLE:
    from hiredis import pack_command as _pack_c

from models.errors import (
    ConfigError,
    RatchetError,
    RedisUnavailableError,
    StoreError,
    UnavailableError,
)
from ratchet.config.settings import Settings, redacted_url
from ratchet.store.deadline import with_deadline
from ratchet.store.pipeline import LeanRedis
from ratchet.store.pool import WaitingConnectionPool

__all__ = [
    "REDIS_ERRORS",
    "REDIS_FAILURES",
    "RedisClient",
    "RedisStore",
    "ScriptBusyError",
    "client_broke",
    "connect",
    "connect_from_settings",
    "refresh_topology",
    "translate",
    "unavailable",
]

#: A Redis client: one server, or a cluster (keys of one chain share a hash tag).
RedisClient = Redis | RedisCluster

class ScriptBusyError(ResponseError):
    """Redis answered ``BUSY``: a script has run past the server's busy-reply threshold
    (``busy-reply-threshold``, 5 s by default) and every other command is refused until it ends.
    Nothing of the refused command ran; retrying later succeeds."""


# redis-py turns an error reply into the class its first word names and a plain ResponseError
# otherwise (a script's own error, a wrong command: a bug). BUSY gets a class of its own so it
# is caught as the failure it is — 503 at the gateway, retried by workers — not as a bug.
BaseParser.EXCEPTION_CLASSES.setdefault("BUSY", ScriptBusyError)

#: Exceptions that mean "Redis did not answer" (down, restarting, unreachable, too slow; a
#: cluster that is down, failing over or cannot be reached at all, or whose slot kept answering
#: ``TRYAGAIN``/redirects while it migrates: redis-py's "TTL exhausted" ``ClusterError``) or did
#: not answer as Redis (a reply the protocol parser cannot read — something else on the port, a
#: proxy or the connection broke mid-reply —, a replica refusing writes during a failover, a
#: server over ``maxmemory``, a server busy with a long script): retrying later can succeed.
REDIS_FAILURES: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    TimeoutError,
    ClusterDownError,
    ClusterError,
    TryAgainError,
    SlotNotCoveredError,
    InvalidResponse,
    ReadOnlyError,
    OutOfMemoryError,
    ScriptBusyError,
)

#: Every Redis exception :func:`translate` knows: the failures above, plus a ``MOVED``/``ASK``
#: redirect a plain client cannot follow, a cross-slot refusal and any other refusal of the
#: cluster client.
REDIS_ERRORS: tuple[type[BaseException], ...] = (
    *REDIS_FAILURES, AskError, ClusterCrossSlotError, RedisClusterException,
)

#: Exceptions redis-py's I/O raises when another coroutine tears a connection down under a
#: command (seen in failovers of the test cluster, where redis-py's cluster client disconnects
#: connections that other requests are using): ``AttributeError: 'NoneType' object has no
#: attribute 'writelines'`` from redis-py's own code when the writer is already gone, and
#: uvloop's ``RuntimeError: unable to perform operation on <TCPTransport closed=True>; the
#: handler is closed`` from the transport when it is closed but not yet gone (asyncio's own
#: transport ignores such a write; uvloop raises). Raised from inside the ``redis`` package, or
#: from the event loop's transport under it, they mean the connection broke:
#: :func:`client_broke` tells them apart from a bug of ours.
_CLIENT_BREAKS: tuple[type[BaseException], ...] = (
    AttributeError, TypeError, IndexError, KeyError, RuntimeError)

#: Modules of the transport under redis-py's connections (the event loop's streams and
#: transports; uvloop's Cython frames carry their module's name too).
_TRANSPORT_MODULES = ("asyncio", "uvloop")


def _in(module: object, *packages: str) -> bool:
    return isinstance(module, str) and any(
        module == p or module.startswith(p + ".") for p in packages)


def client_broke(exc: BaseException) -> bool:
    """Whether ``exc`` is redis-py failing on a torn-down connection: an exception of
    :data:`_CLIENT_BREAKS` raised inside the ``redis`` package, or inside the event loop's
    transport (:data:`_TRANSPORT_MODULES`) that redis-py called — every frame after the
    innermost ``redis`` frame is the transport's. A failure to retry later, like a connection
    error, not an error of the caller's; the same exception from our own code (a response
    callback redis-py calls included) is not."""
    if not isinstance(exc, _CLIENT_BREAKS):
        return False
    modules: list[object] = []
    tb = exc.__traceback__
    while tb is not None:
        modules.append(tb.tb_frame.f_globals.get("__name__", ""))
        tb = tb.tb_next
    for i in range(len(modules) - 1, -1, -1):
        if _in(modules[i], "redis"):
            return all(_in(m, *_TRANSPORT_MODULES) for m in modules[i + 1:])
    return False


#: How redis-py words its own refusal of a command whose keys span slots.
_CROSS_SLOT = "same key slot"

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


#: Set while a command of a cluster client runs: redis-py "closes" the client from inside a
#: failing command (CLUSTERDOWN during a failover, every 5th MOVED), see :meth:`_Cluster.aclose`.
_IN_COMMAND: ContextVar[bool] = ContextVar("ratchet_redis_cluster_command", default=False)


class _Cluster(RedisCluster):
    """redis-py's cluster client, made to degrade one command at a time instead of all at once.

    What redis-py 8.1 does, and what this class changes (each reproduced on a test cluster):

    - A fresh client's first commands, sent concurrently, race the topology discovery redis-py
      starts inside the first of them (``AttributeError`` on a connection it closed under them):
      discovery here is locked and finishes before a command runs.
    - On ``CLUSTERDOWN`` (a failover in progress), on an uncovered slot and on every 5th
      ``MOVED`` (resharding), redis-py calls ``aclose()`` from inside the failing command: every
      connection of every node is closed, also those other requests are using at that moment,
      which then fail with ``AttributeError`` (a 500 at the gateway). Inside a command,
      :meth:`aclose` here only marks the topology for discovery and the connections for a
      reconnect once they are free; closing the client from outside still closes it.
    - Its pipelines, on a ``ConnectionError`` or timeout (including "too many connections"),
      also close the whole client, sleep 0.25 s and run again: the client is built without
      retries (``connect``), so a pipeline fails alone and callers retry (503 + ``Retry-After``
      at the gateway, the batch again at the worker). A command that fails to connect is retried
      once here, after the topology was discovered again (as the plain client retries once
      after a restart); a timeout is never retried (the command may have run).
    - An unreachable cluster raises a ``ConnectionError`` (a failure workers retry, 503 at the
      gateway) and keys of several slots in one command a ``ClusterCrossSlotError`` (a bug,
      never retried).
    - Its connections pack commands in pure Python (redis-py hard-codes the connection class
      in the kwargs every node is built from): here they pack in C, as the single server's do
      (:class:`_HiredisPack`) — on a 3-master cluster the packing was ≈ 40 % of a worker's
      profile on bulk envelopes (``python -m benchmarks.worker_bulk --redis-cluster``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # nodes discovered later are built from these kwargs; the startup nodes exist already
        for shared in (self.connection_kwargs, self.nodes_manager.connection_kwargs):
            cls = shared.get("connection_class")
            if cls is not None:
                shared["connection_class"] = _hiredis_packing(cls)
        for node in self.nodes_manager.startup_nodes.values():
            node.connection_class = _hiredis_packing(node.connection_class)

    async def _determine_slot(self, command: str, *args: Any) -> int:
        # A script's keys share one hash tag by construction (a chain's, an agent's, a
        # project's): redis-py hashes every key to check that — 138 keys for a guardrail call of
        # 34 runs. Hash each distinct tag once instead; different tags are checked as redis-py
        # checks them (its own error when they fall in different slots).
        if len(args) > 2 and command.upper() in ("EVAL", "EVALSHA"):
            keys = args[2:2 + int(args[1])]
            if len(keys) > 1:
                parts = {_hashed_part(key) for key in keys}
                if len(parts) == 1:
                    return self.keyslot(parts.pop())
                slots = {self.keyslot(part) for part in parts}
                if len(slots) != 1:
                    raise RedisClusterException(
                        f"{command} - all keys must map to the same key slot")
                return slots.pop()
        return await super()._determine_slot(command, *args)

    async def initialize(self, *args: Any, **kwargs: Any) -> _Cluster:
        try:
            await super().initialize(*args, **kwargs)
        except SlotNotCoveredError:
            raise
        except RedisClusterException as exc:  # "Redis Cluster cannot be connected", ...
            raise RedisConnectionError(f"Redis Cluster unreachable: {exc}") from exc
        return self

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        token = _IN_COMMAND.set(True)
        try:
            if self._initialize:
                await self.initialize()
            try:
                return await super().execute_command(*args, **kwargs)
            except MaxConnectionsError:
                raise
            except RedisConnectionError:
                # redis-py marked the topology for discovery; run it, then the command once more
                await self.initialize()
                return await super().execute_command(*args, **kwargs)
        except RedisClusterException as exc:
            if _CROSS_SLOT in str(exc):
                raise ClusterCrossSlotError(str(exc)) from exc
            raise
        except AttributeError as exc:  # a connection closed under the command (see above)
            raise RedisConnectionError(f"Redis connection closed during the command: {exc}") from exc
        finally:
            _IN_COMMAND.reset(token)

    async def aclose(self) -> None:
        if not _IN_COMMAND.get():
            await super().aclose()
            return
        await self.mark_stale()

    async def mark_stale(self) -> None:
        """Discover the topology before the next command; reconnect every connection once it
        is free (idle ones now). Nothing in use is closed."""
        self._initialize = True
        for node in self.get_nodes():
            node.update_active_connections_for_reconnect()
            await node.disconnect_free_connections()


@overload
def connect(url: str, *, cluster: Literal[False] = False, timeout_s: float = 5.0,
            max_connections: int = 1000) -> Redis: ...
@overload
def connect(url: str, *, cluster: bool, timeout_s: float = 5.0,
            max_connections: int = 1000) -> RedisClient: ...
def connect(url: str, *, cluster: bool = False, timeout_s: float = 5.0,
            max_connections: int = 1000) -> RedisClient:
    """A client for ``url``: connect and command timeout ``timeout_s`` (a down Redis fails fast
    instead of hanging a request or a batch); ``cluster`` for a Redis Cluster seed URL (see
    :class:`_Cluster` for its failure handling).

    At most ``max_connections`` connections per server (per node of a cluster). A single
    server's client WAITS for a free one (up to ``timeout_s``, :mod:`ratchet.store.pool`):
    redis-py's default pool refuses the command at once (``MaxConnectionsError``), so a burst of
    concurrent requests from one tenant made other tenants' requests fail with 503. A cluster
    client cannot wait; its command fails (503 with Retry-After)."""
    if max_connections < 1:
        raise ConfigError("RATCHET_REDIS_MAX_CONNECTIONS must be at least 1")
    if not timeout_s > 0:
        raise ConfigError(f"RATCHET_REDIS_TIMEOUT_S must be a positive number of seconds, "
                          f"not {timeout_s!r}")
    if cluster:
        return _Cluster.from_url(url, socket_timeout=timeout_s,
                                 socket_connect_timeout=timeout_s,
                                 max_connections=max_connections,
                                 retry=Retry(NoBackoff(), 0))
    # A pooled connection whose server restarted fails on first use; it is closed, reconnected
    # and the command (or the whole pipeline) sent once more. A timeout is not retried
    # (redis-py's Retry would count it by default): a hung server then costs a caller one
    # RATCHET_REDIS_TIMEOUT_S, as documented, not two (a UX audit measured 10.0 s for 5), and a
    # command that timed out is not sent twice. (A retried connection error may still have run
    # the command once: the per-event scripts — observe, guardrails, verdict save, event-id
    # claim — answer a repeated event with their first answer.)
    # Command timeouts by one timer per busy connection (ratchet.store.deadline), not redis-py's
    # timer per send and per reply read: no socket_timeout here, the deadline instead.
    # TCP keepalive on every connection (probes after 30 s idle): a NAT or load balancer
    # between a process and Redis does not drop an idle pooled connection silently — which
    # would cost a command its whole timeout now that a timeout is not retried — and a peer
    # that vanished is found as a connection error, which is retried.
    pool = WaitingConnectionPool.from_url(
        url, max_connections=max_connections, wait_s=timeout_s,
        socket_timeout=None, socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        socket_keepalive=True, socket_keepalive_options=_KEEPALIVE,
    )
    pool.connection_class = with_deadline(_hiredis_packing(pool.connection_class), timeout_s)
    client = LeanRedis(connection_pool=pool)  # plain pipelines without redis-py's extra steps
    client.auto_close_connection_pool = True  # aclose() closes the pool, as from_url's would
    return client


#: Keepalive probes: first after 30 s idle, then every 10 s, 3 unanswered = dead (where the
#: platform has the options; elsewhere the system's defaults).
_KEEPALIVE: dict[int, int] = {
    opt: value for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10),
                                   ("TCP_KEEPCNT", 3))
    if (opt := getattr(socket, name, None)) is not None
}


class _HiredisPack:
    """Commands packed by hiredis's C packer (``hiredis.pack_command``, through redis-py's own
    ``HiredisRespSerializer``) instead of redis-py's pure-Python one, which its asyncio
    connections always use: the same bytes (a test compares them), ≈ 3x less CPU — 40 → 13 µs
    for an ``observe.lua`` call of one event (50 arguments), the largest single cost of a worker
    on single events before (about a third of its CPU in cProfile)."""

    _packer = cast(Any, HiredisRespSerializer)()  # untyped in redis-py 8.2

    def pack_command(self, *args: Any) -> list[bytes]:
        # redis-py's serializer splits the command name, then copies every argument through a
        # generator (bytearray / memoryview → bytes) before the C packer: one Python step per
        # argument, 7 per bulk event. hiredis refuses exactly those types (TypeError), so they —
        # and anything it cannot pack, which redis-py reports as DataError — go the long way.
        head = args[0]
        if isinstance(head, str):
            flat = (*head.encode().split(), *args[1:])
        elif b" " in head:
            flat = (*head.split(), *args[1:])
        else:
            flat = args
        try:
            return [_pack_c(flat)]
        except TypeError:
            packed: list[bytes] = self._packer.pack(*args)
            return packed


_PACKING: dict[type[Any], type[Any]] = {}


def _hashed_part(key: Any) -> Any:
    """The part of ``key`` Redis Cluster hashes: what is between its first ``{`` and the first
    ``}`` after it when that is not empty, else the whole key (``str`` and ``bytes``; any other
    type is returned as it is, for redis-py to encode and hash whole)."""
    if isinstance(key, str):
        start = key.find("{")
        if start != -1:
            end = key.find("}", start + 1)
            if end > start + 1:
                return key[start + 1:end]
    elif isinstance(key, bytes):
        start = key.find(b"{")
        if start != -1:
            end = key.find(b"}", start + 1)
            if end > start + 1:
                return key[start + 1:end]
    return key


def _hiredis_packing(cls: type[Any]) -> type[Any]:
    """``cls`` with :class:`_HiredisPack` in front (``cls`` itself without hiredis)."""
    if not HIREDIS_AVAILABLE or issubclass(cls, _HiredisPack):
        return cls
    fast = _PACKING.get(cls)
    if fast is None:
        fast = _PACKING[cls] = type(f"HiredisPack{cls.__name__}", (_HiredisPack, cls), {})
    return fast


def connect_from_settings(settings: Settings, url: str | None = None) -> RedisClient:
    """:func:`connect` with the process settings (``url`` overrides ``RATCHET_REDIS_URL``)."""
    target = url or settings.redis_url
    if not target:
        raise UnavailableError(
            "RATCHET_REDIS_URL is not set: point it at redis://host:port/db"
        )
    return connect(target, cluster=settings.redis_cluster, timeout_s=settings.redis_timeout_s,
                   max_connections=settings.redis_max_connections)


async def refresh_topology(client: RedisClient) -> None:
    """Discover a cluster client's topology now (a no-op for a single Redis).

    For a client that may not have run a command since a failover (a gateway's reply listener
    resubscribing after its shard's connection dropped): it would otherwise subscribe at the
    old master again."""
    if isinstance(client, RedisCluster):
        client._initialize = True  # redis-py's own flag: the next initialize() discovers
        await client.initialize()


async def log_reachability(client: RedisClient, url: str, log: logging.Logger,
                           timeout_s: float = 5.0) -> bool:
    """Ping Redis once at a process's start and log the outcome: ``Redis at <url> answers``, or
    a WARNING with what went wrong. Not fatal (a Redis restarting beside the process comes
    back; requests and events wait for it), but a wrong ``RATCHET_REDIS_URL`` shows at start.
    Returns whether it answered."""
    try:
        await asyncio.wait_for(client.ping(), timeout_s)
    except (REDIS_ERRORS + (TimeoutError,)) as exc:
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        log.warning("Redis at %s does not answer (%s): work waits and is retried until it "
                    "does; check RATCHET_REDIS_URL", redacted_url(url), what)
        return False
    log.info("Redis at %s answers", redacted_url(url))
    return True


def reply_text(raw: object) -> str:
    """A value of a Redis reply (bytes from a client without ``decode_responses``) as text."""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def unavailable(exc: BaseException) -> UnavailableError:
    """A Redis failure as callers above the store floor see it (503, retry later)."""
    return RedisUnavailableError(f"Redis is unavailable ({type(exc).__name__}); retry later")


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
        except _CLIENT_BREAKS as exc:
            if client_broke(exc):
                raise unavailable(exc) from exc
            raise

    return wrapper  # type: ignore[return-value]


class RedisStore:
    """Base of every store: public coroutine methods raise :class:`UnavailableError`, never a
    redis-py connection error (wrapped once, when the subclass is defined)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, member in list(vars(cls).items()):
            if not name.startswith("_") and inspect.iscoroutinefunction(member):
                setattr(cls, name, _translating(member))
