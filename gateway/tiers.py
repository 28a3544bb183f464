"""Each project's rate-limit tier, cached per gateway (one HGET per project per TTL)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from models.ratelimit import Tier
from ratchet.platform.credentials import project_tier
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient

__all__ = ["TierCache"]

log = logging.getLogger(__name__)


@dataclass
class TierCache:
    """A project's tier, cached per gateway for ``ttl_s`` (one HGET per project per TTL)."""

    tiers: dict[str, Tier]
    default: str
    ttl_s: float
    _cached: dict[str, tuple[Tier, float]] = field(default_factory=dict)
    #: Projects already warned about: a stored tier this gateway does not know.
    _warned: set[str] = field(default_factory=set)

    async def tier_of(self, redis: RedisClient, keys: Keys, project_id: str) -> Tier:
        now = time.monotonic()
        hit = self._cached.get(project_id)
        if hit is not None and hit[1] > now:
            return hit[0]
        name = await project_tier(redis, keys, project_id)
        tier = self.tiers.get(name or self.default) or self.tiers[self.default]
        if name and name not in self.tiers and project_id not in self._warned:
            if len(self._warned) > 100_000:
                self._warned.clear()
            self._warned.add(project_id)
            log.warning("project %s has tier %r, which RATCHET_RATE_LIMIT_TIERS does not "
                        "define (%s): the default tier %r applies to it", project_id, name,
                        ", ".join(sorted(self.tiers)), self.default)
        if len(self._cached) > 100_000:
            self._cached.clear()
        self._cached[project_id] = (tier, now + self.ttl_s)
        return tier
