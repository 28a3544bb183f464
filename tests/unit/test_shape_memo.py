"""Memoized skeleton hashes and node ids (models/shape_memo.py) against the reference
(models/skeleton.py, models/nodes.py): identical answers on generated payloads, including
payloads that share a structure signature with a different payload seen first."""

from __future__ import annotations

import doctest
import random
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import shape_memo
from models.nodes import node_id
from models.shape_memo import _signature, event_nodes, memo_clear, skeleton_hash_memo
from models.skeleton import MAX_DEPTH, MAX_KEYS, MAX_NODES, is_id_like, skeleton_hash

# payload strategies as in tests/unit/test_skeleton.py (id-like keys, names, any text)
ID_KEYS = st.one_of(
    st.integers(min_value=0).map(str),
    st.uuids().map(str),
    st.uuids().map(lambda u: u.hex),
    st.from_regex(r"[A-Za-z]{1,8}[-_:.][0-9]{1,8}[A-Za-z0-9]{0,3}", fullmatch=True),
    st.from_regex(r"[A-Za-z]{3}_[A-Za-z0-9]{10}[a-z][A-Z][0-9]", fullmatch=True),
)
NAME_KEYS = st.one_of(
    st.sampled_from(["name", "user_id", "items", "v2", "id", "email", "createdAt", "a", "b"]),
    st.from_regex(r"[a-z]{1,7}(_[a-z]{1,7})?", fullmatch=True),
)
KEYS = st.one_of(NAME_KEYS, ID_KEYS, st.text(max_size=6))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(KEYS, inner, max_size=6),
    max_leaves=40,
)
HOSTILE = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=12)
        | st.dictionaries(st.one_of(KEYS, st.text()), inner, max_size=20)
    ),
    max_leaves=250,
)
CAPS = st.fixed_dictionaries(
    {"max_depth": st.integers(0, 6), "max_keys": st.integers(0, 10), "max_nodes": st.integers(0, 60)}
)
DEFAULT_CAPS = {"max_depth": MAX_DEPTH, "max_keys": MAX_KEYS, "max_nodes": MAX_NODES}
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def twin(value: Any, rng: random.Random) -> Any:
    """A payload with the same structure signature and other values: every scalar replaced by
    another of the same type, array elements repeated or shuffled duplicates dropped."""
    kind = type(value)
    if kind is dict:
        return {k: twin(v, rng) for k, v in value.items()}
    if kind is list:
        out = [twin(v, rng) for v in value]
        # repeat some elements (an exact repeat adds nothing to the signature's distinct set)
        for v in list(out):
            if rng.random() < 0.4:
                out.append(v)
        return out
    if kind is bool:
        return rng.random() < 0.5
    if kind is int:
        return rng.randint(-10**12, 10**12)
    if kind is float:
        return rng.uniform(-1e9, 1e9)
    if kind is str:
        return "".join(rng.choice("abcxyz019 _-") for _ in range(rng.randint(0, 12)))
    return value  # None


_NEW = (1, "s", None, True, 2.5, [], {}, {"k": 1}, [1])


def mutants(value: Any) -> list[Any]:
    """Every payload one small structural change away, anywhere in the tree: a key renamed,
    added or dropped, an element added or dropped, a value of another type. A signature that
    leaves out anything the skeleton depends on makes some mutant collide with the original."""
    kind = type(value)
    out: list[Any] = []
    if kind is dict:
        keys = list(value)
        for k in keys:
            out.append({(k + "x" if j == k else j): v for j, v in value.items()})
            out.append({j: v for j, v in value.items() if j != k})
            out.extend({**value, k: m} for m in mutants(value[k]))
        out.extend({**value, "n9": new} for new in _NEW)
    elif kind is list:
        for i in range(len(value)):
            out.append(value[:i] + value[i + 1:])
            out.extend(value[:i] + [m] + value[i + 1:] for m in mutants(value[i]))
        out.extend([*value, new] for new in _NEW)
    out.extend(new for new in _NEW if type(new) is not kind)
    return out


def sig_or_none(payload: Any, caps: dict[str, int]) -> Any:
    try:
        return _signature(payload, caps["max_depth"], caps["max_keys"])
    except shape_memo._NotMemoizable:
        return None


@PROPS
@given(JSON, st.randoms(use_true_random=False))
def test_memo_equals_reference_default_caps(payload: Any, rng: random.Random) -> None:
    memo_clear()
    other = twin(payload, rng)
    first = skeleton_hash_memo(other)  # fills the memo from the twin
    assert first == skeleton_hash(other)
    assert skeleton_hash_memo(payload) == skeleton_hash(payload)
    assert skeleton_hash_memo(payload) == skeleton_hash(payload)  # and from the memo


@PROPS
@given(JSON, CAPS, st.randoms(use_true_random=False))
def test_memo_equals_reference_small_caps(
    payload: Any, caps: dict[str, int], rng: random.Random
) -> None:
    memo_clear()
    other = twin(payload, rng)
    assert skeleton_hash_memo(other, **caps) == skeleton_hash(other, **caps)
    assert skeleton_hash_memo(payload, **caps) == skeleton_hash(payload, **caps)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(HOSTILE, CAPS, st.randoms(use_true_random=False))
def test_memo_equals_reference_hostile(
    payload: Any, caps: dict[str, int], rng: random.Random
) -> None:
    memo_clear()
    other = twin(payload, rng)
    for c in (caps, DEFAULT_CAPS):
        assert skeleton_hash_memo(other, **c) == skeleton_hash(other, **c)
        assert skeleton_hash_memo(payload, **c) == skeleton_hash(payload, **c)


@PROPS
@given(JSON, CAPS, st.randoms(use_true_random=False))
def test_memo_never_confuses_near_structures(
    payload: Any, caps: dict[str, int], rng: random.Random
) -> None:
    """No memo_clear between examples or mutants: every near structure seen stays remembered,
    so a signature that leaves out anything the skeleton depends on gives a wrong answer."""
    for c in (caps, DEFAULT_CAPS):
        near = mutants(payload)
        for other in rng.sample(near, min(len(near), 40)):
            assert skeleton_hash_memo(other, **c) == skeleton_hash(other, **c)
            assert skeleton_hash_memo(payload, **c) == skeleton_hash(payload, **c)


@PROPS
@given(JSON, st.randoms(use_true_random=False))
def test_twins_share_a_signature(payload: Any, rng: random.Random) -> None:
    """The property above is only meaningful if twins really hit the same memo entry."""
    assert sig_or_none(twin(payload, rng), DEFAULT_CAPS) == sig_or_none(payload, DEFAULT_CAPS)


@PROPS
@given(JSON, st.sampled_from(["crm", "tools", "db"]),
       st.sampled_from(["contacts.read", "db:query", "files/upload", "send", "a.b.c"]))
def test_event_nodes_equal_reference(payload: Any, service: str, action: str) -> None:
    skel, rich = event_nodes(payload, service, action)
    assert skel == skeleton_hash(payload)
    assert rich == node_id(skeleton_hash(payload), service=service, action=action, rich=True)


def test_key_order_and_values_do_not_matter_but_types_do() -> None:
    memo_clear()
    a = skeleton_hash_memo({"a": 1, "b": "x"})
    assert skeleton_hash_memo({"b": "y", "a": 2}) == a
    assert skeleton_hash_memo({"a": True, "b": "x"}) != a  # a bool is not a number
    assert skeleton_hash_memo({"a": 1.5, "b": "x"}) == a  # ints and floats are both "num"


def test_deep_containers_are_deep_whatever_they_hold() -> None:
    memo_clear()
    deep1 = {"a": {"b": {"c": 1}}}
    deep2 = {"a": {"b": {"zzz": [1, {"q": None}]}}}
    assert _signature(deep1, 2, 64) == _signature(deep2, 2, 64)
    assert skeleton_hash_memo(deep1, max_depth=2) == skeleton_hash(deep1, max_depth=2)
    assert skeleton_hash_memo(deep2, max_depth=2) == skeleton_hash(deep2, max_depth=2)


@pytest.mark.parametrize("payload", [
    (1, 2),  # a tuple: the reference treats it as an array; no signature stands for it
    OrderedDict(a=1),  # a Mapping subclass
    {"a": (1, "x")},
    {"a": [OrderedDict(b=1)]},
])
def test_look_alikes_go_to_the_reference(payload: Any) -> None:
    memo_clear()
    assert sig_or_none(payload, DEFAULT_CAPS) is None
    assert skeleton_hash_memo(payload) == skeleton_hash(payload)
    assert not shape_memo._skel_memo


def test_values_json_cannot_hold_still_raise() -> None:
    with pytest.raises(TypeError):
        skeleton_hash_memo({"a": object()})


def test_big_payloads_are_not_remembered() -> None:
    memo_clear()
    big = {"rows": [{f"k{i}": i} for i in range(3000)]}
    assert skeleton_hash_memo(big) == skeleton_hash(big)
    assert not shape_memo._skel_memo


def test_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    memo_clear()
    monkeypatch.setattr(shape_memo, "_MEMO_CAP", 10)
    for i in range(25):
        payload = {f"field{i}": 1}
        assert skeleton_hash_memo(payload) == skeleton_hash(payload)
        assert len(shape_memo._skel_memo) <= 10


def test_doctests() -> None:
    assert doctest.testmod(shape_memo).failed == 0


# --- maps (objects whose keys are all id-like) folded: other ids, same answer --------------

MAPS_JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(KEYS, inner, max_size=6)
        | st.dictionaries(ID_KEYS, inner, min_size=1, max_size=6)
    ),
    max_leaves=40,
)


def rekey(value: Any, rng: random.Random) -> Any:
    """The same payload with every map's ids replaced by fresh ones, in a shuffled order, and
    its values twinned (a map of other ids and values has the same skeleton)."""
    kind = type(value)
    if kind is dict:
        items = [(k, rekey(v, rng)) for k, v in value.items()]
        if items and all(is_id_like(k) for k in items_keys(items)):
            rng.shuffle(items)
            fresh = [f"id_{rng.randrange(10**9)}{i}" for i in range(len(items))]
            return {k: v for k, (_, v) in zip(fresh, items, strict=True)}
        return dict(items)
    if kind is list:
        return [rekey(v, rng) for v in value]
    return twin(value, rng)


def items_keys(items: list[tuple[str, Any]]) -> list[str]:
    return [k for k, _ in items]


@PROPS
@given(MAPS_JSON, CAPS, st.randoms(use_true_random=False))
def test_folded_maps_equal_reference(payload: Any, caps: dict[str, int], rng: random.Random) -> None:
    """The memo filled by a payload whose maps have other ids (and keys in another order)
    answers exactly the reference for this one — default and small caps."""
    memo_clear()
    other = rekey(payload, rng)
    for c in (DEFAULT_CAPS, caps):
        assert skeleton_hash_memo(other, **c) == skeleton_hash(other, **c)
        assert skeleton_hash_memo(payload, **c) == skeleton_hash(payload, **c)


@PROPS
@given(MAPS_JSON, CAPS, st.randoms(use_true_random=False))
def test_folded_maps_never_confuse_near_structures(
    payload: Any, caps: dict[str, int], rng: random.Random
) -> None:
    """Without clearing: maps one structural change away (a key renamed to a field name, a
    value of another type, an entry dropped) keep their own answers."""
    for c in (caps, DEFAULT_CAPS):
        near = mutants(payload) + [rekey(m, rng) for m in mutants(payload)[:10]]
        for other in rng.sample(near, min(len(near), 40)):
            assert skeleton_hash_memo(other, **c) == skeleton_hash(other, **c)
            assert skeleton_hash_memo(payload, **c) == skeleton_hash(payload, **c)


def test_a_map_of_new_ids_is_answered_from_the_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of folding: the report of another set of orders costs no reference call."""
    memo_clear()
    calls: list[int] = []

    def counted(payload: Any, **caps: int) -> str:
        calls.append(1)
        return skeleton_hash(payload, **caps)

    monkeypatch.setattr(shape_memo, "skeleton_hash", counted)

    def report(first: int) -> dict[str, Any]:
        return {"report": "r", "dataset": {
            f"ord_{first + i}": {"amount": 1.5, "status": "paid", "customer_id": "c"}
            for i in range(10)}}

    assert skeleton_hash_memo(report(100)) == skeleton_hash(report(100))
    assert skeleton_hash_memo(report(900)) == skeleton_hash(report(900))
    assert len(calls) == 1
    assert ("report", "dataset") in shape_memo._fold_first  # next time: folded straight away
    assert skeleton_hash_memo(report(300)) == skeleton_hash(report(300))
    assert len(calls) == 1
    flat = {"report": "r", "dataset": "d"}  # same top-level keys, no map: its own answer
    assert skeleton_hash_memo(flat) == skeleton_hash(flat) != skeleton_hash(report(1))
    assert len(calls) == 2
    mixed = report(500)
    mixed["dataset"]["status"] = {"amount": 1.5, "status": "x", "customer_id": "c"}  # not an id
    assert skeleton_hash_memo(mixed) == skeleton_hash(mixed)
    assert skeleton_hash(mixed) != skeleton_hash(report(100))
    assert len(calls) == 3
