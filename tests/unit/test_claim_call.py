"""The event-id claim and release calls (ratchet.store.event_id_buckets) build, per claim, the
same ARGV and legacy KEYS as the per-id helpers they are defined by: ``id_digest``,
``compact_print``, ``event_field`` and ``Keys.event_fingerprint`` (the batch path computes each
id's field once and escapes the project once)."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from ratchet.store.event_id_buckets import (
    PER_SLOT,
    SALT_PROPOSAL,
    bucket_width,
    claim_call,
    compact_print,
    id_digest,
    live_buckets,
    release_call,
)
from ratchet.store.keys import Keys, event_field

_ids = st.one_of(
    st.text(min_size=1, max_size=40),
    st.text(alphabet="%:{}ab-", min_size=1, max_size=12),  # every character part() escapes
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
)
_prints = st.binary(min_size=16, max_size=16).map(bytes.hex)
_claims = st.lists(st.tuples(_ids, _prints), max_size=30)


def _reference_claim(keys: Keys, project_id: str, claims: list[tuple[str, str]], window_s: int,
                     now: float, legacy: bool) -> tuple[list[str], list[object]]:
    if not legacy:
        short: list[object] = [0, 0, int(now), window_s, PER_SLOT, SALT_PROPOSAL]
        for event_id, fingerprint in claims:
            short += (id_digest(event_id), compact_print(fingerprint))
        return [keys.event_ids(project_id)], short
    indexes = live_buckets(now, window_s, bucket_width(window_s))
    script_keys = [keys.event_ids(project_id),
                   *(keys.event_id_bucket(project_id, i) for i in indexes)]
    args: list[object] = [len(indexes), 1, int(now), window_s, PER_SLOT, SALT_PROPOSAL]
    for event_id, fingerprint in claims:
        args += (id_digest(event_id), compact_print(fingerprint), event_field(event_id))
    script_keys += [keys.event_fingerprint(project_id, event_id) for event_id, _ in claims]
    return script_keys, args


@settings(max_examples=300, deadline=None)
@given(project=_ids, claims=_claims, window=st.sampled_from([60, 3_600, 86_400]),
       legacy=st.booleans())
def test_claim_call_matches_the_per_id_helpers(
    project: str, claims: list[tuple[str, str]], window: int, legacy: bool
) -> None:
    keys = Keys("rt:x")
    now = 1_764_700_000.5
    assert claim_call(keys, project, claims, window, now, legacy=legacy) == _reference_claim(
        keys, project, claims, window, now, legacy)


@settings(max_examples=200, deadline=None)
@given(project=_ids, claims=_claims)
def test_release_call_matches_the_per_id_helpers(project: str,
                                                 claims: list[tuple[str, str]]) -> None:
    keys = Keys("rt")
    now = 1_764_700_000.0
    script_keys, args = release_call(keys, project, claims, 86_400, now)
    expected: list[object] = [int(now), 86_400]
    for event_id, fingerprint in claims:
        expected += (id_digest(event_id), compact_print(fingerprint), event_field(event_id))
    assert args == expected
    assert script_keys == _reference_claim(keys, project, [], 86_400, now, True)[0]


def test_legacy_keys_escape_the_project_and_the_id() -> None:
    keys = Keys("rt")
    event_id = str(uuid.uuid4())
    script_keys, _ = claim_call(keys, "p:1{x}", [("a:b%", "0" * 32), (event_id, "f" * 32)],
                                86_400, 1_764_700_000.0)
    assert script_keys[-2:] == ["rt:{e:p%3A1%7Bx%7D}:eid:a%3Ab%25",
                                f"rt:{{e:p%3A1%7Bx%7D}}:eid:{event_id}"]
