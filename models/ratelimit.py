"""Rate-limit tiers and the arithmetic of a token bucket's answer (pure; no I/O, no clock).

A tier grants a project three buckets: ``ingest`` (one token per event, plus one per
:data:`VALUES_PER_TOKEN` JSON values, one per :data:`KEYS_PER_TOKEN` object keys and one per
:data:`CHARS_PER_TOKEN` characters of strings and keys it carries —
:func:`event_tokens`; a batch takes the sum of its events' tokens, all or nothing) and ``register`` (one token per credential operation: registering an
agent, rotating a key or a secret), and every other authenticated call takes tokens of a third,
``api``, as large as ``ingest`` (one per call plus one per :data:`API_BYTES_PER_TOKEN` bytes it
sends and returns: :func:`api_tokens`). A bucket holds one minute's worth of tokens and refills
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
    "AGENT_ENVELOPE_TOKENS",
    "API",
    "API_BYTES_PER_TOKEN",
    "API_CPU_S_PER_TOKEN",
    "BODY_BYTES_PER_TOKEN",
    "CHARS_PER_TOKEN",
    "INGEST",
    "KEYS_PER_TOKEN",
    "PRECHARGE_BYTES",
    "REGISTER",
    "SPREAD",
    "SPREAD_BURST_S",
    "SPREAD_REFILL_SHARE",
    "VALUES_PER_TOKEN",
    "Bucket",
    "LimitKind",
    "RateDecision",
    "Tier",
    "api_tokens",
    "body_tokens",
    "check_spread_burst",
    "envelope_tokens",
    "event_tokens",
    "parse_tiers",
    "retry_after_header",
    "single_event_charge",
    "spread_charge",
    "work_tokens",
]

LimitKind = Literal["ingest", "register", "api"]
INGEST: LimitKind = "ingest"
REGISTER: LimitKind = "register"
#: Every other authenticated call: reads (verdicts, approvals, audit, decision streams, lists)
#: and configuration writes, one token per call plus one per :data:`API_BYTES_PER_TOKEN` bytes
#: its request and response carry (:func:`api_tokens`); a bucket of its own, as large as the
#: tier's ingest bucket.
API: LimitKind = "api"
#: The label of a refusal by an ingest request's *spread* bucket (:meth:`Tier.spread_bucket`) in
#: ``ratchet_ratelimit_rejected_total`` and in :attr:`RateDecision.refused_by`.
SPREAD = "spread"
#: An API call takes one more token per this many bytes it returns or sends. Measured (Dec 5,
#: round 9 of the outside attack runs): ``GET /v1/approvals?limit=500`` returned 394 KB in 52–69
#: ms of gateway time (≈ 140 µs per KB; an ordinary event's worker CPU, one ingest token, is
#: ≈ 90–150 µs), a 22 KB policy took 41–44 ms to store; unmetered, 20 concurrent readers put
#: another tenant's verdicts at a p50 of 1.9 s (18 ms without them).
API_BYTES_PER_TOKEN = 1024
#: An API call whose handler does CPU work its bytes do not show (a policy write compiles every
#: rule's RE2 program: a 22 KB policy of 256 counted-repeat rules measured 35 ms of parsing, 23 of
#: them compiling, Dec 5) is charged that work instead when it is more: one token per this many
#: seconds of the handler's measured CPU — the gateway time a read pays per KB (≈ 140 µs).
API_CPU_S_PER_TOKEN = 0.00015

#: An event's ingest tokens grow with what deciding it costs the worker, so that one token is
#: about one ordinary event's worker CPU (≈ 90–150 µs: docs/operations.md) whatever the event's
#: shape. The worker's cost of a wide event is the guardrails' walk of every value (path walk,
#: PII and media scans of every string with its key path) and the skeleton, in proportion to
#: values and, for strings and arrays of objects, to keys too. Measured (Dec 4, Engine.decide
#: with guardrails and labels on, batches of 10, client CPU; an ordinary event ≈ 39 µs in
#: batches of 100 on the same machine), per event of N = 5,000:
#: ints in one array 4.9 ms (≈ 1 µs per value), strings in one array 11.7 ms (≈ 2.3 µs),
#: 5,000 keys of ints 4.9 ms (≈ 1 µs), 5,000 keys of strings 17.7 ms (≈ 3.5 µs),
#: rows of objects with distinct keys 15.4 ms (≈ 3–5 µs per value). One more token per 64
#: values and per 64 keys charges ≈ 110–150 µs of worker CPU per token for string values (keyed
#: or not), ≈ 100–170 µs for arrays of objects, and over-charges numbers (≈ 30–60 µs): the
#: 5,000-keyed string event of the Dec 4 attack run (≈ 19.5 ms of worker CPU per event, its
#: verdicts fell 18.7 s behind at 11 tokens an event) now takes 157 tokens, not 6.
#: An ordinary event (tens of values: the synthetic traffic's largest ≈ 55) still takes one.
VALUES_PER_TOKEN = 64
#: One more token per this many object keys (payload and metadata, every depth); see above.
KEYS_PER_TOKEN = 64
#: One more token per this many characters of strings and keys (payload and metadata). The
#: worker's content scans (PII detectors, pattern rules, Unicode folding) cost in proportion to
#: the text they read, and far more for some text than for prose: measured (Dec 4, Engine.decide
#: as above, events of 10 strings of 63,000 characters; an ordinary event ≈ 33 µs) ≈ 9 ns per
#: character of prose, e-mail addresses or base64, 18 of CJK, 74 of U+FDFA (NFKC growth),
#: 120–160 of digit runs, SSN- or card-shaped groups that fail their checks, high-entropy words,
#: and up to ≈ 300 (IBANs) and ≈ 470 (valid card numbers, each one a finding). Before this,
#: text was free: 60 strings of 63,000 card-like characters took 1–2 tokens and 0.15–0.45 s of
#: worker CPU (round 8 of the Dec 4 attack runs). One token per 512 characters charges ≈ 150–250
#: µs per token for digit-heavy text (an ordinary event's CPU is a token) and over-charges prose.
CHARS_PER_TOKEN = 512


def event_tokens(values: int, keys: int = 0, chars: int = 0) -> int:
    """Ingest tokens of one event carrying ``values`` JSON values, ``keys`` of them object
    members, and ``chars`` characters of strings and keys (:func:`models.events.shape_of`
    counts all three in its one walk).

    >>> event_tokens(0), event_tokens(63, 63), event_tokens(64), event_tokens(64, 64)
    (1, 1, 2, 3)
    >>> event_tokens(5_000, 5_000), event_tokens(10_000)
    (157, 157)
    >>> event_tokens(3, 3, CHARS_PER_TOKEN - 1), event_tokens(1, 1, 60 * 63_000)
    (1, 7383)
    """
    return (1 + max(values, 0) // VALUES_PER_TOKEN + max(keys, 0) // KEYS_PER_TOKEN
            + max(chars, 0) // CHARS_PER_TOKEN)

#: Tokens for each agent of a batch request beyond its first. The gateway publishes one envelope
#: per agent of a request, and the worker's cost of an envelope is mostly fixed — a Kafka
#: message and, per agent, its own guardrail, chain and save script calls: an envelope of one
#: event costs ≈ 300 µs of worker CPU and ≈ 200 µs of Redis (``benchmarks.worker_single``),
#: an event in a large envelope ≈ 45–60 and ≈ 40 (``benchmarks.pipeline``): ≈ 4 ordinary
#: events' worth more. Before this charge a request of 200 events of 200 agents cost 200 tokens
#: and 200 envelopes: one tenant inside its limit spreading its events over 1,000 agents put
#: another tenant's verdicts 12–21 s late (attack run 9, Dec 5). A single event, and a batch of
#: one agent's events, pay nothing more (their envelope is what their tokens were set against).
AGENT_ENVELOPE_TOKENS = 4
#: Seconds of a tier's ingest rate its *spread* bucket holds (:meth:`Tier.spread_bucket`). The
#: envelope tokens of a batch (:func:`envelope_tokens`) come from the ingest bucket and from
#: this one too, which holds only this long a burst. Before it, a project could spend a whole
#: minute's ingest bucket on one-event envelopes at once (``high_volume``: ≈ 25,600 events over
#: 1,000 agents in 17 s) and put another tenant's verdicts 10 s late (round 15 of the outside
#: attack runs, Dec 5); the steady rate the charge allows (≈ 335 such envelopes a second on
#: ``high_volume``) kept them within 310 ms. Five seconds hold ≈ 2,080 extra envelopes on
#: ``high_volume`` (≈ 0.6 s of one worker's CPU), 10 batches of 200 agents each, and 2 extra
#: agents on ``free``.
SPREAD_BURST_S = 5
#: The spread bucket refills at this share of the ingest rate: a one-event envelope takes 5
#: ingest tokens (its event's and 4) and 4 spread tokens, so at 4/5 both buckets allow the same
#: steady rate of such envelopes — a fifth of the ingest rate (≈ 333 a second on
#: ``high_volume``), the rate the outside run measured as harmless.
SPREAD_REFILL_SHARE = AGENT_ENVELOPE_TOKENS / (AGENT_ENVELOPE_TOKENS + 1)


def check_spread_burst(seconds: float) -> None:
    """:class:`ConfigError` unless ``RATCHET_SPREAD_BURST_S`` is in (0, 60].

    >>> check_spread_burst(5)
    >>> check_spread_burst(0)
    Traceback (most recent call last):
    ...
    models.errors.ConfigError: RATCHET_SPREAD_BURST_S=0 must be more than 0 and at most 60 seconds (a bucket holds a minute)
    """
    if not 0 < seconds <= 60:
        raise ConfigError(f"RATCHET_SPREAD_BURST_S={seconds:g} must be more than 0 and at most "
                          "60 seconds (a bucket holds a minute)")


def envelope_tokens(agents: int) -> int:
    """Ingest tokens a request's envelopes take beyond its events' (``agents`` distinct agents).

    >>> envelope_tokens(1), envelope_tokens(2), envelope_tokens(200)
    (0, 4, 796)
    """
    return max(agents - 1, 0) * AGENT_ENVELOPE_TOKENS


#: An ingest request takes at least one token per this many bytes of body, and a body larger
#: than :data:`PRECHARGE_BYTES` (or of unknown length) takes them *before* it is read: the
#: gateway's cost of a body it refuses is its reading and parsing, which a limit decided only
#: after them does not bound (round 9 of the outside attack runs: 3.9 MB events sent over 500
#: connections, 1,489 of 1,500 refused with 429 after being read, put another tenant's p50 at
#: 9.8 s and the gateway's memory at 4.1 GB). Parsing and checking one costs the gateway ≈ 1 µs
#: per KB of text or whitespace and ≈ 30–70 µs per KB of numbers and small values (whose values
#: tokens charge them), so this bounds what the size of a request alone can cost.
BODY_BYTES_PER_TOKEN = 16_384
PRECHARGE_BYTES = 65_536


def body_tokens(body_bytes: int) -> int:
    """Tokens an ingest request takes by its body's size alone (its events' tokens when more).

    >>> body_tokens(900), body_tokens(65_536), body_tokens(4 * 1024 * 1024)
    (0, 4, 256)
    """
    return max(body_bytes, 0) // BODY_BYTES_PER_TOKEN


def api_tokens(request_bytes: int, response_bytes: int) -> int:
    """Tokens of one API call that sent ``request_bytes`` and returned ``response_bytes``.

    >>> api_tokens(0, 99), api_tokens(0, 1024), api_tokens(22_000, 12), api_tokens(0, 394_331)
    (1, 2, 22, 386)
    """
    return 1 + (max(request_bytes, 0) + max(response_bytes, 0)) // API_BYTES_PER_TOKEN


def work_tokens(request_bytes: int, response_bytes: int, cpu_s: float) -> int:
    """Tokens of an API call that also spent ``cpu_s`` seconds of measured handler CPU: its
    bytes' tokens (:func:`api_tokens`) or one plus the work's, whichever is more.

    >>> work_tokens(22_000, 500, 0.0), work_tokens(22_000, 500, 0.035), work_tokens(900, 0, 0.0001)
    (22, 234, 1)
    """
    by_work = 1 + int(max(cpu_s, 0.0) / API_CPU_S_PER_TOKEN)
    return max(api_tokens(request_bytes, response_bytes), by_work)


def spread_charge(tokens: int, capacity: int) -> int:
    """What a batch takes from the spread bucket: its envelope tokens, but never more than the
    bucket holds (a batch of more agents than one burst allows passes when the bucket is full
    and empties it, instead of being refused forever; the ingest bucket still charges them all).

    >>> spread_charge(0, 10), spread_charge(8, 10), spread_charge(796, 10)
    (0, 8, 10)
    """
    return max(0, min(tokens, capacity))


def single_event_charge(tokens: int, capacity: int) -> int:
    """What one event sent alone is charged: its tokens, but never more than a full bucket. An
    event too wide for a small tier's bucket (≈ 7,600 values and keys on 120 tokens) drains the
    bucket instead of being refused forever; a batch is still charged its events' sum (split it).

    >>> single_event_charge(3, 120), single_event_charge(235, 120), single_event_charge(5, 0)
    (3, 120, 1)
    """
    return max(1, min(tokens, capacity))


_TIER_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


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
        return self.register_per_min if kind == REGISTER else self.ingest_per_min

    def bucket(self, kind: LimitKind) -> Bucket:
        per_min = self.per_minute(kind)
        return Bucket(per_min, per_min / 60_000)

    def spread_bucket(self, burst_s: float = SPREAD_BURST_S) -> Bucket:
        """The ingest request's second bucket for envelope tokens: a burst of ``burst_s``
        seconds of the ingest rate (:data:`SPREAD_BURST_S`; at least one agent's envelope, at
        most the ingest bucket), refilled at :data:`SPREAD_REFILL_SHARE` of it.

        >>> Tier("t", 100_000, 1_000).spread_bucket().capacity, Tier("f", 120, 20).spread_bucket()
        (8334, Bucket(capacity=10, refill_per_ms=0.0016))
        >>> Tier("t", 100_000, 1_000).spread_bucket(60).capacity
        100000
        """
        per_min = self.ingest_per_min
        capacity = min(max(math.ceil(per_min * burst_s / 60), AGENT_ENVELOPE_TOKENS), per_min)
        return Bucket(capacity, per_min * SPREAD_REFILL_SHARE / 60_000)


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
    #: What refused it: ``""`` (allowed, or the bucket of its kind) or :data:`SPREAD` (only the
    #: ingest request's spread bucket lacked tokens).
    refused_by: str = ""

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
        if len(fields) != 3 or not _TIER_NAME.fullmatch(fields[0]):
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
