"""Data contracts: events validation, verdict round trips, envelopes."""

from __future__ import annotations

import pytest

from models.envelope import (
    FeedbackMessage,
    IngestEnvelope,
    VerdictEnvelope,
    decode_feedback,
    decode_ingest,
    decode_verdicts,
    encode_feedback,
    encode_ingest,
    encode_verdicts,
)
from models.errors import ValidationError
from models.events import parse_event
from models.verdict import Edge, Reason, Verdict, strictest

BASE = {
    "event_id": "e1",
    "agent_id": "a1",
    "run_id": "r1",
    "service": "crm",
    "action": "contacts.read",
    "payload": {"id": 3},
}


def test_parse_event_defaults() -> None:
    e = parse_event(dict(BASE), "p1")
    assert e.priority == "normal" and e.end_of_run is False and e.metadata == {}


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"event_id": None}, "event_id"),
        ({"agent_id": 5}, "agent_id"),
        ({"priority": "urgent"}, "priority"),
        ({"payload": []}, "payload"),
        ({"payload": None}, "payload"),
        ({"end_of_run": "yes"}, "end_of_run"),
        ({"cost": "3"}, "cost"),
        ({"cost": -1}, "cost"),
        ({"cost": 1e300}, "cost"),
        ({"metadata": {"a": {"b": {"c": {"d": 1}}}}}, "metadata"),
        ({"metadata": {f"k{i}": i for i in range(51)}}, "metadata"),
        ({"metadata": {"big": "x" * 11000}}, "metadata"),
        ({"run_id": "a\x00b"}, "run_id"),
        ({"payload": {"n": 10**20}}, "payload.n"),
    ],
)
def test_parse_event_names_the_bad_field(patch: dict[str, object], field: str) -> None:
    obj = {**BASE, **patch}
    obj = {k: v for k, v in obj.items() if v is not None}
    with pytest.raises(ValidationError) as info:
        parse_event(obj, "p1")
    assert info.value.field == field


def test_project_id_never_from_body_online() -> None:
    with pytest.raises(ValidationError):
        parse_event({**BASE, "project_id": "other"}, None)
    assert parse_event({**BASE, "project_id": "other"}, "mine").project_id == "mine"
    assert parse_event({**BASE, "project_id": "x"}, None, allow_offline_fields=True).project_id == "x"


def _verdict() -> Verdict:
    return Verdict(
        event_id="e1", agent_id="a1", run_id="r1", chain="p/a1/crm", mode="locked",
        anomalous=True, score=19.93, threshold=6.0, edge=Edge("^", "ab", 0.0, 0, 12),
        action="pause", reasons=(Reason("markov", "pause", {"bits": 19.93}),), decided_at=1.0,
        trace_id="t", project_id="p1", held=True,
    )


def test_envelopes_round_trip() -> None:
    ev = parse_event(dict(BASE), "p1")
    env = IngestEnvelope("p1", "a1", "t", 2.0, (ev, ev), wait=False)
    assert decode_ingest(encode_ingest(env)) == env
    venv = VerdictEnvelope("p1", "a1", "t", (_verdict(),), 2.0)
    assert decode_verdicts(encode_verdicts(venv)) == venv
    fb = FeedbackMessage("p1", "e1", "approve", "ok", "alice", "t", 3.0)
    assert decode_feedback(encode_feedback(fb)) == fb


def test_strictest() -> None:
    assert strictest([]) == "allow"
    assert strictest(["flag", "reject", "pause"]) == "reject"


def test_bad_envelope_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        decode_ingest(b"{not json")
    with pytest.raises(ValidationError):
        decode_ingest(b'{"v": 99}')
