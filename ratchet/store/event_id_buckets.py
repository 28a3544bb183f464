"""Where the gateway keeps event-id bindings: one hash per project, records packed into slots.

An event id is bound, per project, to the fingerprint of the first body accepted under it for
``RATCHET_EVENT_ID_WINDOW_S`` (``lua/event_ids_claim.lua``). A key per binding cost ≈ 152 bytes
of Redis memory per event (a key, its TTL and a 32-digit hex value); a field per binding in a
hash per project and 4-hour bucket ≈ 80 (Redis's hash-table entry, field and value). Now a
binding is a 24-byte record — 12 bytes of the id's digest (:func:`id_digest`), 8 of the body's
fingerprint, the second it was bound — packed with ≈ :data:`PER_SLOT` others into one field of
the project's hash (``keys.event_ids``), whose slots split one at a time as it fills (linear
hashing, ``lua/includes/id_slots.lua``): ≈ 30 bytes per binding, measured in docs/operations.md
("What Redis keeps per event"), with no server setting. A record is live for the window after
its second and dropped when its slot is next written, so a claim reads one slot per id (one
``HMGET`` for the call) instead of one field in every bucket of the window.

The layouts before are read while one of their bindings can still be live: the time buckets of
a field per id (:func:`live_buckets`, ``EXISTS`` first) and the per-id keys before them
(``legacy``). The hash remembers when this layout first bound in it; a window and a margin later
the claim script stops reading them and says so in its answer's last element, and the caller
stops sending their keys (:class:`Settled`: half the arguments per event). A project created by
a release with this layout never had bindings of the layouts before: its hash is created with
the project, remembering second 0 (:func:`born_settled`), so its first claim already answers that
they are done with — a fresh deployment, or a benchmark's project, does not pay their reads (and
a bulk request's ≈ 1,000 per-id key names) for its first day. This module builds
the KEYS and ARGV of the claim and release scripts, so the batch path
(:class:`ratchet.store.idempotency.EventIds`) and the admission round trip
(:class:`ratchet.store.admission.AdmissionStore`) call them the same way.

>>> live_buckets(4 * 3600 * 10 + 5, 86_400, 14_400)
[10, 11, 9, 8, 7, 6, 5, 4]
>>> bucket_expiry(10, 86_400, 14_400)
244800
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from typing import Any

from models.errors import StoreError
from ratchet.store.keys import Keys, event_field, part

__all__ = ["BUCKET_S", "NO_LAYOUTS_BEFORE", "PER_SLOT", "SALT_PROPOSAL", "Settled",
           "born_settled", "bucket_expiry", "bucket_width", "claim_answers", "claim_call",
           "compact_print", "id_digest", "live_buckets", "release_call"]

#: Width of a time bucket of the layout before (a hash of a field per id per project and
#: bucket), seconds: which of those a claim still reads during an upgrade.
BUCKET_S = 14_400

#: Records per slot field before the hash splits a slot (``lua/includes/id_slots.lua``): more
#: cost a claim more bytes read and rewritten per id, fewer cost more bytes per binding (each
#: slot is an entry of Redis's hash table, ≈ 50 bytes). Gateways may differ: the slots are in
#: Redis.
PER_SLOT = 16

#: This process's proposal for a project hash's salt (stored by the first claim that binds in
#: it, then the stored one is used): slot addresses are SHA-1(salt .. digest), so an agent that
#: grinds event ids offline cannot aim them at one slot of its project's hash — a slot no split
#: can thin out, whose value every claim there would copy. The salt never leaves Redis.
SALT_PROPOSAL = secrets.token_bytes(16)


#: The ``"#c"`` a project's bindings hash is created with when the project is
#: (:func:`born_settled`): only this layout has bound in it since second 0, so the claim script
#: finds the window and margin after it long past and never reads the layouts before.
NO_LAYOUTS_BEFORE = 0


def born_settled(keys: Keys, project_id: str) -> tuple[str, str, int]:
    """The key, field and value a new project's bindings hash starts with (``HSET`` them with the
    project, before its API key exists, so no claim can come first): ``"#c"`` =
    :data:`NO_LAYOUTS_BEFORE`. Nothing else: the first claim proposes the salt and sets up the
    slots, as in any hash (``lua/event_ids_claim.lua``), and sets the hash's expiry. A project
    without it (created by a release before) reads the layouts before for a window and a margin
    from its first claim, as ever. The mark lasts as long as the hash: a project idle for a
    window and a margin loses both, and its next claim starts a hash like a project of a release
    before (a gateway that already knows the project settled keeps sending the short form).

    >>> born_settled(Keys("rt"), "p1")
    ('rt:{e:p1}:ids', '#c', 0)
    """
    return keys.event_ids(project_id), "#c", NO_LAYOUTS_BEFORE


def id_digest(event_id: str) -> bytes:
    """The 12 bytes a binding keeps of an event id (BLAKE2b of its compact form,
    ``ratchet.store.keys.event_field``): the first 4 pick its slot, all 12 tell it apart from
    the slot's other ids (96 bits: two ids of a window sharing one is not a concern).

    >>> id_digest("ev-7").hex()
    '598f2e6465130e2bd7ebe193'
    >>> len(id_digest("2b63178a-08d0-4bdd-b89b-e270ec0c47ba"))
    12
    """
    return hashlib.blake2b(event_field(event_id), digest_size=12).digest()


def bucket_width(window_s: int) -> int:
    """The bucket width of the layout before for a window: :data:`BUCKET_S`, or the window
    itself when shorter.

    >>> bucket_width(86_400), bucket_width(60)
    (14400, 60)
    """
    return max(1, min(BUCKET_S, window_s))


def live_buckets(now: float, window_s: int, width_s: int = BUCKET_S) -> list[int]:
    """Indexes of the buckets of the layout before a claim at ``now`` reads: the current one,
    the next (clock skew), then older ones down to the bucket holding ``now - window_s``."""
    current = int(now // width_s)
    oldest = int((now - window_s) // width_s)
    return [current, current + 1, *range(current - 1, oldest - 1, -1)]


def bucket_expiry(index: int, window_s: int, width_s: int = BUCKET_S) -> int:
    """Unix second bucket ``index`` of the layout before expired at: its end plus the window."""
    return (index + 1) * width_s + window_s


def compact_print(fingerprint: str) -> bytes:
    """The stored form of a body fingerprint (``models.idempotency.event_fingerprint``, 32 hex
    digits): its first 12 bytes, as the layout before kept it (a record keeps the first 8: 64
    bits, so a different body under a reused id passes for a retry with chance 2^-64).

    >>> compact_print("00112233445566778899aabbccddeeff").hex()
    '00112233445566778899aabb'
    """
    return bytes.fromhex(fingerprint[:24])


def claim_call(
    keys: Keys, project_id: str, claims: Sequence[tuple[str, str]], window_s: int, now: float,
    *, legacy: bool = True,
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of one ``event_ids_claim.lua`` call for ``claims`` (``(event id,
    fingerprint)``) of one project at ``now``; ``legacy`` also reads the layouts before (the
    time buckets of a field per id and the per-id keys before them, until they expire): without
    it, two arguments per event and no keys but the hash."""
    if not legacy:
        args: list[Any] = [0, 0, int(now), window_s, PER_SLOT, SALT_PROPOSAL]
        for event_id, fingerprint in claims:
            args += (id_digest(event_id), compact_print(fingerprint))
        return [keys.event_ids(project_id)], args
    indexes = live_buckets(now, window_s, bucket_width(window_s))
    script_keys = [keys.event_ids(project_id),
                   *(keys.event_id_bucket(project_id, i) for i in indexes)]
    args = [len(indexes), 1, int(now), window_s, PER_SLOT, SALT_PROPOSAL]
    args += _claim_args(claims)
    # keys.event_fingerprint(project_id, id) for each id, the project's part escaped once
    head_key = keys.event_fingerprint(project_id, "")
    script_keys += [head_key + part(event_id) for event_id, _ in claims]
    return script_keys, args


def _claim_args(claims: Sequence[tuple[str, str]]) -> list[Any]:
    """Per claim its digest, compact print and field (:func:`id_digest`, :func:`compact_print`,
    ``event_field``), each id's field computed once (a 1,000-event batch: 1,000 fields)."""
    out: list[Any] = []
    blake2b = hashlib.blake2b
    for event_id, fingerprint in claims:
        field = event_field(event_id)
        out += (blake2b(field, digest_size=12).digest(), bytes.fromhex(fingerprint[:24]), field)
    return out


class Settled:
    """The projects whose claims no longer need the layouts before: the claim script answered
    that none of their bindings can still be live. Per process, bounded (a forgotten project
    costs one call with the old keys, which answers again)."""

    def __init__(self, limit: int = 100_000) -> None:
        self._projects: set[str] = set()
        self._limit = limit

    def legacy(self, project_id: str) -> bool:
        """Whether a claim of ``project_id`` should still send the layouts before."""
        return project_id not in self._projects

    def add(self, project_id: str) -> None:
        """Remember that ``project_id``'s claims are done with the layouts before."""
        if len(self._projects) >= self._limit:
            self._projects.clear()
        self._projects.add(project_id)


def claim_answers(answer: Sequence[Any], n: int, settled: Settled | None = None,
                  project_id: str = "") -> list[int]:
    """The ``n`` per-event answers (1 new, 2 retry, 0 another body) of an
    ``event_ids_claim.lua`` reply; its last element (0: the layouts before are done with) is
    noted in ``settled``. A reply of another length is a store error, not a guess."""
    if len(answer) != n + 1:
        raise StoreError(f"event_ids_claim answered {len(answer)} values for {n} events")
    if settled is not None and int(answer[n]) == 0:
        settled.add(project_id)
    return [int(x) for x in answer[:n]]


def release_call(
    keys: Keys, project_id: str, bound: Sequence[tuple[str, str]], window_s: int, now: float,
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of one ``event_ids_release.lua`` call for ``bound`` (``(event id,
    fingerprint)``, each answered 1 by a claim)."""
    indexes = live_buckets(now, window_s, bucket_width(window_s))
    script_keys = [keys.event_ids(project_id),
                   *(keys.event_id_bucket(project_id, i) for i in indexes)]
    return script_keys, [int(now), window_s, *_claim_args(bound)]
