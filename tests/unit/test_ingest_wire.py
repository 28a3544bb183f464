"""Ingest envelopes on the wire: the compact version (2, MessagePack) carries every event field
the JSON version (1) carries, both are read by ``decode_ingest`` and by the worker's decoder (a
rolling upgrade mixes them), an envelope the compact layout cannot hold is written as JSON, and
anything else is refused with the version named."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ingest import envelopes
from models.envelope import (
    IngestEnvelope,
    decode_ingest,
    encode_ingest,
    encode_ingest_compact,
)
from models.errors import ValidationError
from models.events import PRIORITIES, IngestEvent, parse_event
from streams.worker import decode_ingest_trusted

_scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**15), max_value=10**15)
            | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15)
            | st.text(max_size=8))
_json = st.recursive(
    _scalars,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids,
                                                               max_size=3),
    max_leaves=10,
)
_id = st.text("abcXYZ019-_.:/", min_size=1, max_size=20)


@st.composite
def _envelopes(draw: Any) -> IngestEnvelope:
    events = []
    for i in range(draw(st.integers(min_value=0, max_value=5))):
        obj = {"event_id": f"{draw(_id)}-{i}", "agent_id": "agent-1", "run_id": draw(_id),
               "service": draw(_id), "action": draw(_id),
               "payload": draw(st.dictionaries(st.text(max_size=5), _json, max_size=4)),
               "priority": draw(st.sampled_from(PRIORITIES)),
               "end_of_run": draw(st.booleans())}
        for name in ("ts", "cost"):
            if draw(st.booleans()):
                obj[name] = draw(st.floats(min_value=0, max_value=1e12) | st.integers(0, 10**9))
        if draw(st.booleans()):
            obj["metadata"] = draw(st.dictionaries(st.text(max_size=5), _scalars, max_size=3))
        events.append(parse_event(obj, "prj_1"))
    return IngestEnvelope("prj_1", "agent-1", draw(st.text(max_size=8)),
                          draw(st.floats(min_value=0, max_value=2e9)), tuple(events),
                          wait=draw(st.booleans()), reply=draw(st.sampled_from(["", "gw-1"])))


@settings(max_examples=300, deadline=None)
@given(_envelopes())
def test_compact_round_trips_every_field(env: IngestEnvelope) -> None:
    compact = encode_ingest_compact(env)
    assert compact[:1] != b"{"
    assert decode_ingest(compact) == env == decode_ingest(encode_ingest(env))
    assert decode_ingest_trusted(compact) == env == decode_ingest_trusted(encode_ingest(env))
    for a, b in zip(decode_ingest(compact).events, env.events, strict=True):
        assert orjson.dumps(a.to_dict()) == orjson.dumps(b.to_dict())  # same types, ints stay ints


def _bulk_events(n: int) -> list[IngestEvent]:
    return [parse_event({"event_id": f"6f1c2b0e-0000-4000-8000-{i:012d}", "agent_id": "agent-1",
                         "run_id": f"agent-1-r{i // 9:05d}", "service": "mail",
                         "action": "mail.search", "ts": 1767225600.097 + i, "cost": 0.0027,
                         "payload": {"query": "billing report", "folder": "inbox", "limit": 25,
                                     "has_attachment": True}}, "prj_1") for i in range(n)]


def test_the_gateway_writes_compact_envelopes_about_half_the_size() -> None:
    events = _bulk_events(100)
    ((_, compact, _),) = envelopes(events, "prj_1", "t", 1.0)
    ((_, json_body, _),) = envelopes(events, "prj_1", "t", 1.0, wire_version=1)
    assert json_body[:1] == b"{" and compact[:1] != b"{"
    assert decode_ingest(compact).events == decode_ingest(json_body).events == tuple(events)
    assert len(compact) < 0.6 * len(json_body)


def test_what_the_layout_cannot_hold_is_written_as_json() -> None:
    (ev,) = _bulk_events(1)
    other = parse_event({**ev.to_dict(), "agent_id": "agent-2", "event_id": "x"}, "prj_1")
    labelled = parse_event({**ev.to_dict(), "label": True}, allow_offline_fields=True)
    for events in ((ev, other), (labelled,)):
        env = IngestEnvelope("prj_1", "agent-1", "t", 1.0, events)
        body = encode_ingest_compact(env)
        assert body[:1] == b"{" and decode_ingest(body) == env


@pytest.mark.parametrize("body, message", [
    (msgspec.msgpack.encode([3, "p", "a", "t", 1.0, False, "", []]), "unknown wire version 3"),
    (msgspec.msgpack.encode([2, "p", "a", "t", 1.0, False, "", [["e"]]]), "malformed"),
    (msgspec.msgpack.encode([2, "p", "a", "t", 1.0, False, "",
                             [["e", "r", "s", "x", {}, 9, None, None, False, None]]]),
     "unknown priority 9"),
    (b"\xc1", "neither JSON nor MessagePack"),
])
def test_bad_compact_bodies_are_refused_by_name(body: bytes, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        decode_ingest(body)
    with pytest.raises(ValidationError, match=message):
        decode_ingest_trusted(body)
