"""The compact verdict wire format (models/verdict_wire.py) against the JSON envelope it replaces.

Agreement: for any verdict, the HTTP verdict a waiting caller gets (``Verdict.to_dict`` of what
the gateway decoded) is byte for byte the one the JSON envelope gave. Versions: JSON (1) and
compact (2) are both read; anything else is refused with a message naming the version.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.envelope import VerdictEnvelope, encode_verdicts
from models.errors import ValidationError
from models.verdict import ACTIONS, MODES, Edge, Reason, Verdict
from models.verdict_stored import decode_stored, encode_stored
from models.verdict_wire import (
    COMPACT_VERSION,
    decode_compact,
    decode_verdict_message,
    encode_compact,
    verdict_row,
    wire_version,
)

TEXT = st.text(max_size=12)
FLOAT = st.floats(allow_nan=False, allow_infinity=False, width=64)
JSON_LEAF = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | FLOAT | TEXT
DETAIL = st.dictionaries(TEXT, st.recursive(
    JSON_LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6), max_size=4)


@st.composite
def verdicts(draw: st.DrawFn, project: str = "p", agent: str = "a", trace: str = "t") -> Verdict:
    same = st.booleans()
    return Verdict(
        event_id=draw(TEXT),
        agent_id=agent if draw(same) else draw(TEXT),
        run_id=draw(TEXT),
        chain=draw(TEXT),
        mode=draw(st.sampled_from(MODES) | TEXT),
        anomalous=draw(st.booleans()),
        score=draw(FLOAT),
        threshold=draw(FLOAT),
        # counts are floats (count / COUNT_SCALE), whole or not
        edge=Edge(draw(TEXT), draw(TEXT), draw(FLOAT),
                  draw(FLOAT | st.integers(0, 10**6).map(float)),
                  draw(FLOAT | st.integers(0, 10**6).map(float))),
        action=draw(st.sampled_from(ACTIONS) | TEXT),
        reasons=tuple(Reason(draw(TEXT), draw(st.sampled_from(ACTIONS)), draw(DETAIL))
                      for _ in range(draw(st.integers(0, 3)))),
        decided_at=draw(FLOAT),
        trace_id=trace if draw(same) else draw(TEXT),
        project_id=project if draw(same) else draw(TEXT),
        chain_tag=draw(TEXT),
        mode_change=draw(st.sampled_from(["", "soft_lock", "locked", "locked(forced)"])),
        duplicate=draw(st.booleans()),
        held=draw(st.booleans()),
        error=draw(st.none() | TEXT),
    )


def _http(v: Verdict) -> bytes:
    """What a waiting caller receives for ``v`` (the gateway answers ``to_dict`` as JSON)."""
    return orjson.dumps(v.to_dict())


@settings(max_examples=400, deadline=None)
@given(st.lists(verdicts(), min_size=0, max_size=4), FLOAT)
def test_every_field_of_the_http_verdict_round_trips(vs: list[Verdict], received_at: float) -> None:
    compact = decode_compact(encode_compact("p", "a", "t", received_at, vs))
    via_json = decode_verdict_message(encode_verdicts(VerdictEnvelope("p", "a", "t", tuple(vs),
                                                                      received_at)))
    assert (compact.project_id, compact.agent_id, compact.trace_id) == ("p", "a", "t")
    assert compact.received_at == received_at
    assert [_http(v) for v in compact.verdicts] == [_http(v) for v in via_json.verdicts]
    assert [_http(v) for v in compact.verdicts] == [_http(v) for v in vs]


def _typical() -> Verdict:
    return Verdict(
        "0b6d0a36-5d5b-4f7b-9a8c-0d6f3c1e2a11", "support-bot-7", "run-000123",
        "proj/support-bot-7/helpdesk", "locked", False, 0.4151, 11.2,
        Edge("3f9a1c2b7d4e5f60", "a1b2c3d4e5f60718", 0.75, 30.0, 40.0), "allow", (),
        1764680000.123456, trace_id="9f1c2e3d4b5a69788796a5b4c3d2e1f0", project_id="p_1234abcd",
        chain_tag="7d4e5f603f9a1c2b",
    )


def test_the_compact_body_is_a_fraction_of_the_json_body() -> None:
    vs = [_typical()] * 10
    json_body = encode_verdicts(VerdictEnvelope("p_1234abcd", "support-bot-7",
                                                vs[0].trace_id, tuple(vs), 1.0))
    compact = encode_compact("p_1234abcd", "support-bot-7", vs[0].trace_id, 1.0, vs)
    assert len(compact) * 2 < len(json_body), (len(compact), len(json_body))
    assert wire_version(compact) == COMPACT_VERSION and wire_version(json_body) == 1


@pytest.mark.parametrize("version", [0, 1, 3, 99, "2"])
def test_an_unknown_version_is_refused_naming_it(version: Any) -> None:
    body = msgspec.msgpack.encode([version, "p", "a", "t", 0.0, []])
    with pytest.raises(ValidationError, match=f"wire version {version!r}"):
        decode_compact(body)
    with pytest.raises(ValidationError, match="wire version"):
        decode_verdict_message(body)
    assert wire_version(body) == version


@pytest.mark.parametrize("body", [
    b"", b"\xc1", b"not msgpack", msgspec.msgpack.encode({"v": 2}),
    msgspec.msgpack.encode([2, "p", "a"]),
    msgspec.msgpack.encode([2, "p", "a", "t", 0.0, [["only", "three", "fields"]]]),
    msgspec.msgpack.encode([2, "p", "a", "t", 0.0, [[
        "e", "r", "c", "ct", 9, False, 0.0, 0.0, "f", "t", 0.0, 0, 0, 0, [], 0.0, 0]]]),
    msgspec.msgpack.encode([2, "p", "a", "t", 0.0, [[
        "e", "r", "c", "ct", 0, False, 0.0, 0.0, "f", "t", 0.0, 0, 0, 0, [["s", "a", [1]]],
        0.0, 0]]]),
    # reasons that are no list (a falsy one too), an action code out of range, a bool code
    *(msgspec.msgpack.encode([2, "p", "a", "t", 0.0, [[
        "e", "r", "c", "ct", 0, False, 0.0, 0.0, "f", "t", 0.0, 0, 0, action, reasons, 0.0, 0]]])
      for action, reasons in ((0, 0), (0, None), (0, 5), (9, []), (True, []))),
])
def test_garbage_is_a_validation_error_not_a_crash(body: bytes) -> None:
    with pytest.raises(ValidationError, match="verdict message"):
        decode_compact(body)


def test_json_version_1_bodies_are_still_read() -> None:
    v = _typical()
    body = encode_verdicts(VerdictEnvelope("p_1234abcd", "support-bot-7", v.trace_id, (v,), 2.5))
    env = decode_verdict_message(body)
    assert env.verdicts == (v,) or _http(env.verdicts[0]) == _http(v)
    assert env.received_at == 2.5


@settings(max_examples=300, deadline=None)
@given(verdicts())
def test_a_stored_verdict_reads_back_as_its_json(v: Verdict) -> None:
    """What Redis keeps for a verdict (models/verdict_stored.py): the same JSON object a reader
    got from the JSON stored before, from a third or so of its bytes; and the earlier JSON
    form still reads."""
    stored = encode_stored(v)
    assert orjson.dumps(decode_stored(stored)) == _http(v)
    assert decode_stored(_http(v)) == orjson.loads(_http(v))
    head = msgspec.msgpack.decode(stored)  # what the Lua scripts read: agent, the row's decided_at
    assert head[2] == v.agent_id and head[5][0][15] == v.decided_at and len(head[5]) == 1


@settings(max_examples=400, deadline=None)
@given(st.lists(verdicts(), min_size=0, max_size=5), FLOAT)
def test_rows_built_once_encode_the_same_bytes(vs: list[Verdict], received_at: float) -> None:
    """The worker builds each verdict's row once (``verdict_row``) for its stored body and its
    envelope on the topic: the same bytes as each encoder building its own, for verdicts that
    share the envelope's ids and for those that do not (their row is built again)."""
    rows = [verdict_row(v) for v in vs]
    assert encode_compact("p", "a", "t", received_at, vs, rows) == \
        encode_compact("p", "a", "t", received_at, vs)
    for v, row in zip(vs, rows, strict=True):
        assert encode_stored(v, row) == encode_stored(v)
    with pytest.raises(ValueError):  # a row per verdict, or a bug
        encode_compact("p", "a", "t", received_at, vs, [*rows, []])
