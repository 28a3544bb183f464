"""Rate-limit tiers and the arithmetic of a token bucket's answer (pure; no I/O, no clock).

A tier grants a project two buckets: ``ingest`` (one token per event; a batch of N events takes
N tokens, all or nothing) and ``register`` (one token per credential operation: registering an
agent, rotating a key or a secret). A bucket holds one minute's worth of tokens and refills
continuously, so "120/min" allows a burst of 120 and then 2 per second.

>>> tiers = parse_tiers("free:120:20,high_volume:100000:1000")
>>> tiers["free"].per_minute("ingest")
120
>>> bucket = tiers["free"].bucket("ingest")
>>> bucket.capacity, round(bucket.refill_per_ms * 60_000)
(120, 120)
>>> retry_after_header(1.2)
'2'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from models.errors import ConfigError

__all__ = [
    "INGEST",
    "REGISTER",
    "Bucket",
    "LimitKind",
    "RateDecision",
    "Tier",
    "parse_tiers",
    "retry_after_header",
]

LimitKind = Literal["ingest", "register"]
INGEST: LimitKind = "ingest"
REGISTER: LimitKind = "register"

_TIER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True, slots=True)
class Bucket:
    """Parameters of one token bucket: ``capacity`` tokens, refilled at ``refill_per_ms``."""

    capacity: int
    refill_per_ms: float


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    ingest_per_min: int
    register_per_min: int

    def per_minute(self, kind: LimitKind) -> int:
        return self.ingest_per_min if kind == INGEST else self.register_per_min

    def bucket(self, kind: LimitKind) -> Bucket:
        per_min = self.per_minute(kind)
        return Bucket(per_min, per_min / 60_000)


@dataclass(frozen=True, slots=True)
class RateDecision:
    """What one bucket call answered (times in seconds, rounded up for headers)."""

    allowed: bool
    limit: int
    remaining: int
    #: Seconds until the bucket is full again.
    reset_s: float
    #: Seconds until the refused request could succeed; ``inf`` if it never can (cost > limit).
    retry_after_s: float

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-*`` headers of every response of a rate-limited route."""
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(self.remaining, 0)),
            "X-RateLimit-Reset": str(max(math.ceil(self.reset_s), 0)),
        }


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))


def parse_tiers(spec: str) -> dict[str, Tier]:
    """Parse ``name:ingest_per_min:register_per_min[,...]`` (``RATCHET_RATE_LIMIT_TIERS``)."""
    tiers: dict[str, Tier] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        fields = part.split(":")
        if len(fields) != 3 or not _TIER_NAME.match(fields[0]):
            raise ConfigError(
                f"RATCHET_RATE_LIMIT_TIERS: {part!r} is not name:ingest_per_min:register_per_min "
                "(name of lowercase letters, digits, _)"
            )
        try:
            ingest, register = int(fields[1]), int(fields[2])
        except ValueError:
            raise ConfigError(f"RATCHET_RATE_LIMIT_TIERS: {part!r} needs integer rates") from None
        if ingest < 1 or register < 1:
            raise ConfigError(f"RATCHET_RATE_LIMIT_TIERS: {part!r} rates must be at least 1")
        if fields[0] in tiers:
            raise ConfigError(f"RATCHET_RATE_LIMIT_TIERS: tier {fields[0]!r} appears twice")
        tiers[fields[0]] = Tier(fields[0], ingest, register)
    if not tiers:
        raise ConfigError("RATCHET_RATE_LIMIT_TIERS defines no tier")
    return tiers
