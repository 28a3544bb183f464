"""Where the gateway keeps event-id bindings: one hash per project and time bucket.

An event id is bound, per project, to the fingerprint of the first body accepted under it for
``RATCHET_EVENT_ID_WINDOW_S`` (``lua/event_ids_claim.lua``). A key per binding cost ≈ 152 bytes
of Redis memory per event for a day (a key, its TTL and a 32-digit hex value); a field of a
hash per project and :data:`BUCKET_S` seconds (or the window, when shorter) costs ≈ 80 (the
hash's own entry: a 17-byte field, ``ratchet.store.keys.event_field``, and 12 bytes of the
fingerprint; measured in docs/operations.md, "What Redis keeps per event"). A bucket expires
one window after its end, so each binding is kept at least the window and less than the window
plus one bucket; a claim reads every bucket that may still hold a binding of the window — one
``HMGET`` per bucket for all the call's ids — plus the next one (a gateway whose clock runs
ahead writes there) and, until they expire, the keys of the layout before buckets.

This module builds the KEYS and ARGV of the claim and release scripts, so the batch path
(:class:`ratchet.store.idempotency.EventIds`) and the admission round trip
(:class:`ratchet.store.admission.AdmissionStore`) call them the same way.

>>> live_buckets(4 * 3600 * 10 + 5, 86_400, 14_400)
[10, 11, 9, 8, 7, 6, 5, 4]
>>> bucket_expiry(10, 86_400, 14_400)
244800
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ratchet.store.keys import Keys, event_field

__all__ = ["BUCKET_S", "bucket_expiry", "bucket_width", "claim_call", "compact_print",
           "live_buckets", "release_call"]

#: Width of a bucket, seconds. Wider buckets keep bindings longer (on average the window plus
#: half a bucket), narrower ones cost a claim more ``HMGET`` calls (window / width + 2): 4 h
#: keeps a binding ≈ 8 % longer than the window for 8 lookups per call (docs/operations.md).
BUCKET_S = 14_400


def bucket_width(window_s: int) -> int:
    """The bucket width for a window: :data:`BUCKET_S`, or the window itself when shorter (so a
    binding is never kept more than twice its window).

    >>> bucket_width(86_400), bucket_width(60)
    (14400, 60)
    """
    return max(1, min(BUCKET_S, window_s))


def live_buckets(now: float, window_s: int, width_s: int = BUCKET_S) -> list[int]:
    """Indexes of the buckets a claim at ``now`` reads: the current one first (new ids are
    bound there), then the next (clock skew), then older ones down to the bucket holding
    ``now - window_s``."""
    current = int(now // width_s)
    oldest = int((now - window_s) // width_s)
    return [current, current + 1, *range(current - 1, oldest - 1, -1)]


def bucket_expiry(index: int, window_s: int, width_s: int = BUCKET_S) -> int:
    """Unix second bucket ``index`` expires at: its end plus the window."""
    return (index + 1) * width_s + window_s


def compact_print(fingerprint: str) -> bytes:
    """The stored form of a body fingerprint (``models.idempotency.event_fingerprint``, 32 hex
    digits): its first 12 bytes (96 bits; a value of up to 12 bytes takes Redis's smallest
    string allocation).

    >>> compact_print("00112233445566778899aabbccddeeff").hex()
    '00112233445566778899aabb'
    """
    return bytes.fromhex(fingerprint[:24])


def claim_call(
    keys: Keys, project_id: str, claims: Sequence[tuple[str, str]], window_s: int, now: float,
    *, legacy: bool = True,
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of one ``event_ids_claim.lua`` call for ``claims`` (``(event id,
    fingerprint)``) of one project at ``now``; ``legacy`` also reads the per-id keys of the
    layout before buckets (bindings of an older release, until they expire)."""
    width = bucket_width(window_s)
    indexes = live_buckets(now, window_s, width)
    script_keys = [keys.event_id_bucket(project_id, i) for i in indexes]
    args: list[Any] = [len(indexes), 1 if legacy else 0,
                       bucket_expiry(indexes[0], window_s, width)]
    for event_id, fingerprint in claims:
        args.append(event_field(event_id))
        args.append(compact_print(fingerprint))
    if legacy:
        script_keys += [keys.event_fingerprint(project_id, event_id) for event_id, _ in claims]
    return script_keys, args


def release_call(
    keys: Keys, project_id: str, bound: Sequence[tuple[str, str]], window_s: int, now: float,
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of one ``event_ids_release.lua`` call for ``bound`` (``(event id,
    fingerprint)``, each answered 1 by a claim)."""
    indexes = live_buckets(now, window_s, bucket_width(window_s))
    script_keys = [keys.event_id_bucket(project_id, i) for i in indexes]
    args: list[Any] = []
    for event_id, fingerprint in bound:
        args.append(event_field(event_id))
        args.append(compact_print(fingerprint))
    return script_keys, args
