"""How ``ratchet`` commands open Redis, and what they tell the user when Redis is not what the
settings say.

:func:`open_redis` is :func:`ratchet.store.redis.connect_from_settings` (the one client factory)
plus two things only a command at a terminal needs:

- it remembers which URL the command used (``RATCHET_REDIS_URL`` or a ``--redis-url``), so an
  error can name it (:func:`moved_message`, :func:`unavailable_hint`);
- once per URL and process, with ``RATCHET_REDIS_CLUSTER`` off, it asks the server
  ``INFO cluster``: a Redis Cluster node (``cluster_enabled:1``) is refused at once with the
  setting to change. Without this, a plain client on a cluster node reads only that node's
  keys (``projects list`` printed "no projects yet") and a write may half-happen before a
  ``MOVED`` answer stops it (``projects create`` left an id hash behind).

Services (gateway, worker) open Redis with ``connect_from_settings`` directly: the check is
for commands, not for the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.exceptions import ResponseError

from models.errors import ConfigError, NotFoundError
from models.sanitize import clean_text
from ratchet.config.settings import Settings, redacted_url
from ratchet.platform.provisioning import project_exists
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient, connect_from_settings

__all__ = ["Target", "check_redis", "moved_message", "open_redis", "require_project", "target",
           "unavailable_hint"]


@dataclass(frozen=True)
class Target:
    """The Redis a command connected to: its URL, where the URL came from, the cluster flag."""

    url: str
    source: str
    cluster: bool

    @property
    def shown(self) -> str:
        """``RATCHET_REDIS_URL=redis://…@host:port/0`` (the password left out)."""
        return f"{self.source}={redacted_url(self.url)}"


_target: Target | None = None
_checked: set[str] = set()


def target() -> Target | None:
    """The Redis the last :func:`open_redis` of this process connected to (None: none yet)."""
    return _target


async def open_redis(settings: Settings, url: str | None = None) -> RedisClient:
    """A client for ``url`` (default ``RATCHET_REDIS_URL``) with the settings' cluster flag,
    timeouts and pool size; a cluster node with the flag off is a :class:`ConfigError` naming
    ``RATCHET_REDIS_CLUSTER`` (checked once per URL and process)."""
    global _target
    client = connect_from_settings(settings, url)  # raises when there is no URL at all
    used = url or settings.redis_url
    assert used is not None
    source = "RATCHET_REDIS_URL" if used == settings.redis_url else "--redis-url"
    _target = Target(used, source, settings.redis_cluster)
    if settings.redis_cluster or used in _checked:
        return client
    try:
        try:
            info = await client.info("cluster")
        except ResponseError:  # INFO refused (an ACL, a proxy): nothing to learn here
            info = {}
        if str(info.get("cluster_enabled", "0")) == "1":
            raise ConfigError(
                f"Redis at {_target.shown} is a Redis Cluster node (cluster_enabled:1): set "
                "RATCHET_REDIS_CLUSTER=true to use the cluster client")
        _checked.add(used)
    except BaseException:
        await client.aclose()
        raise
    return client


async def check_redis(settings: Settings, url: str | None = None) -> None:
    """:func:`open_redis`'s check alone, for work that opens its own client afterwards
    (``replay``)."""
    client = await open_redis(settings, url)
    await client.aclose()


def moved_message() -> str | None:
    """What to say about a ``MOVED`` answer, naming the URL in use (None: no command connected
    through :func:`open_redis`)."""
    if _target is None:
        return None
    if _target.cluster:  # the cluster client follows redirects: a single-server client did not
        return (f"Redis at {_target.shown} answered MOVED although RATCHET_REDIS_CLUSTER is set: "
                "this command used a single-server client (a bug of Ratchet; please report it)")
    return (f"Redis at {_target.shown} answered MOVED: it is a Redis Cluster node; set "
            "RATCHET_REDIS_CLUSTER=true")


def unavailable_hint() -> str | None:
    """Where an unavailable Redis was looked for (None: no command connected yet)."""
    return None if _target is None else _target.shown


async def require_project(settings: Settings, project: str, url: str | None = None) -> None:
    """:class:`NotFoundError` unless ``project`` exists in ``url`` (default ``RATCHET_REDIS_URL``,
    the command's ``--redis-url`` when it has one): a command given
    a mistyped ``--project`` must not write for a project nobody has (an override nobody reads)
    nor answer "nothing here" as if the project were empty."""
    redis = await open_redis(settings, url)
    try:
        found = await project_exists(redis, Keys(settings.key_prefix), project)
    finally:
        await redis.aclose()
    if not found:
        where = _target.shown if _target is not None else "RATCHET_REDIS_URL"
        raise NotFoundError(f"project {clean_text(project, 80)} does not exist in {where} (key prefix "
                            f"{settings.key_prefix!r}); `ratchet projects list` shows the projects")
