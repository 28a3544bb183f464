"""Payload skeletons: unit tests and hypothesis properties (models/skeleton.py)."""

from __future__ import annotations

import doctest
import random
import uuid
from collections import OrderedDict
from typing import Any

import pytest
import xxhash
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import models.skeleton as skeleton_module
from models.events import Limits, json_depth
from models.skeleton import (
    MAP,
    MAX_DEPTH,
    MAX_NODES,
    TRUNC,
    canonical,
    is_id_like,
    skeleton,
    skeleton_hash,
)

# --------------------------------------------------------------------------------------------
# helpers


def count_nodes(skel: Any) -> tuple[int, int]:
    """(charged nodes, ``"trunc"`` leaves) of a skeleton; list heads are not nodes."""
    if isinstance(skel, str):
        return (0, 1) if skel == TRUNC else (1, 0)
    children = list(skel.values()) if isinstance(skel, dict) else skel[1:]
    real, trunc = 1, 0
    for child in children:
        r, t = count_nodes(child)
        real, trunc = real + r, trunc + t
    return real, trunc


def tags(skel: Any) -> set[str]:
    if isinstance(skel, str):
        return {skel}
    children = list(skel.values()) if isinstance(skel, dict) else skel[1:]
    return set().union(*(tags(c) for c in children)) if children else set()


def shuffle_keys(value: Any, rnd: random.Random) -> Any:
    """Same value, every object's insertion order shuffled (recursively)."""
    if isinstance(value, dict):
        keys = list(value)
        rnd.shuffle(keys)
        return {k: shuffle_keys(value[k], rnd) for k in keys}
    if isinstance(value, list):
        return [shuffle_keys(v, rnd) for v in value]
    return value


def shuffle_arrays(value: Any, rnd: random.Random) -> Any:
    if isinstance(value, dict):
        return {k: shuffle_arrays(v, rnd) for k, v in value.items()}
    if isinstance(value, list):
        out = [shuffle_arrays(v, rnd) for v in value]
        rnd.shuffle(out)
        return out
    return value


def revalue(value: Any, rnd: random.Random) -> Any:
    """Every scalar replaced by another of the same JSON type (ints and floats swap freely)."""
    if isinstance(value, dict):
        return {k: revalue(v, rnd) for k, v in value.items()}
    if isinstance(value, list):
        return [revalue(v, rnd) for v in value]
    if isinstance(value, bool):
        return rnd.random() < 0.5
    if isinstance(value, (int, float)):
        return rnd.randint(-(10**12), 10**12) if rnd.random() < 0.5 else rnd.uniform(-1e9, 1e9)
    if isinstance(value, str):
        return "".join(rnd.choice("abcxyz019 é{}") for _ in range(rnd.randint(0, 12)))
    return value


def pad_arrays(value: Any, rnd: random.Random) -> Any:
    """Every array made longer by appending copies of its own elements."""
    if isinstance(value, dict):
        return {k: pad_arrays(v, rnd) for k, v in value.items()}
    if isinstance(value, list):
        out = [pad_arrays(v, rnd) for v in value]
        if out:
            out += [rnd.choice(out) for _ in range(rnd.randint(1, 5))]
        return out
    return value


def replace_scalars(value: Any, kind: type, new: Any) -> Any:
    if isinstance(value, dict):
        return {k: replace_scalars(v, kind, new) for k, v in value.items()}
    if isinstance(value, list):
        return [replace_scalars(v, kind, new) for v in value]
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return new
    if kind is str and isinstance(value, str):
        return new
    return value


# --------------------------------------------------------------------------------------------
# strategies

ID_KEYS = st.one_of(
    st.integers(min_value=0).map(str),
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.uuids().map(lambda u: u.hex),
    st.binary(min_size=4, max_size=16).map(bytes.hex),
    st.from_regex(r"[A-Za-z]{1,8}[-_:.][0-9]{1,8}[A-Za-z0-9]{0,3}", fullmatch=True),
    st.from_regex(r"[a-z0-9]{14}[a-z][0-9]", fullmatch=True),
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
    {
        "max_depth": st.integers(0, 6),
        "max_keys": st.integers(0, 10),
        "max_nodes": st.integers(0, 60),
    }
)
SLOW = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------------------------
# unit tests: tags and structure


def test_scalar_tags() -> None:
    assert [skeleton(v) for v in ("x", 1, 1.5, True, False, None)] == [
        "str",
        "num",
        "num",
        "bool",
        "bool",
        "null",
    ]


def test_objects_keep_keys_sorted() -> None:
    skel = skeleton({"b": 1, "a": {"d": "x", "c": None}})
    assert skel == {"a": {"c": "null", "d": "str"}, "b": "num"}
    assert list(skel) == ["a", "b"] and list(skel["a"]) == ["c", "d"]


def test_arrays_are_sets_of_element_shapes() -> None:
    assert skeleton([1, 2, 3]) == skeleton([5]) == ["[]", "num"]
    assert skeleton([]) == ["[]"]
    assert skeleton([]) != skeleton([None])
    assert skeleton(["a", 1, "b", 2.0]) == skeleton([3, "c"]) == ["[]", "num", "str"]
    assert skeleton([{"a": 1}, {"a": 2}, {"b": 1}]) == ["[]", {"a": "num"}, {"b": "num"}]
    assert skeleton([[], [1], [2, 3]]) == ["[]", ["[]", "num"], ["[]"]]


def test_array_elements_sorted_by_canonical_bytes() -> None:
    skel = skeleton([{"z": 1}, "s", [True], None, {"a": 1}])
    keys = [canonical(s) for s in skel[1:]]
    assert keys == sorted(keys)


def test_empty_object_is_not_a_map() -> None:
    assert skeleton({}) == {}
    assert skeleton({"x": {}}) == {"x": {}}


def test_id_keyed_object_is_a_map() -> None:
    a = {"123": {"qty": 1, "sku": "a"}, "456": {"sku": "b", "qty": 2.5}}
    b = {str(uuid.UUID(int=7)): {"qty": 9, "sku": "z"}}
    assert skeleton(a) == skeleton(b) == {MAP: ["|", {"qty": "num", "sku": "str"}]}


def test_map_value_set_is_a_union() -> None:
    skel = skeleton({"1": 1, "2": "x", "3": 2, "4": None})
    assert skel == {MAP: ["|", "null", "num", "str"]}


def test_map_of_maps() -> None:
    small = {"u-1": {"o:1": {"total": 1}}}
    big = {f"user-{i}": {f"ord:{j}": {"total": float(j)} for j in range(i + 1)} for i in range(5)}
    assert skeleton_hash(small) == skeleton_hash(big)


def test_one_id_key_among_names_is_not_a_map() -> None:
    skel = skeleton({"name": "x", "123": 1})
    assert skel == {"123": "num", "name": "str"}


def test_map_cannot_collide_with_a_real_map_key() -> None:
    assert skeleton_hash({"<map>": [1]}) != skeleton_hash({"1": 1})
    assert skeleton_hash({"<map>": ["[]", 1]}) != skeleton_hash({"1": 1})
    assert skeleton({"<map>": 1}) == {"<map>": "num"}


def test_too_many_keys_collapse_to_a_map() -> None:
    wide = {f"field{chr(97 + i % 26)}{chr(97 + i // 26)}": i for i in range(65)}
    assert skeleton(wide) == {MAP: ["|", "num"]}
    narrow = dict(list(wide.items())[:64])
    assert skeleton(narrow) == {k: "num" for k in sorted(narrow)}
    assert skeleton({"a": 1, "b": "x"}, max_keys=1) == {MAP: ["|", "num", "str"]}


# --------------------------------------------------------------------------------------------
# unit tests: id-like keys


@pytest.mark.parametrize(
    "key",
    [
        "0",
        "123",
        "-7",
        "2024-01-15",
        "10.0.0.1",
        "deadbeef",
        "deadbeef12",
        "DEADBEEF12",
        "123e4567-e89b-12d3-a456-426614174000",
        "123E4567-E89B-12D3-A456-426614174000",
        "123e4567e89b12d3a456426614174000",
        "sku_123",
        "sku_123a",
        "user-42",
        "ord:9001",
        "item.7",
        "x_1",
        "a1b2c3d4e5f6g7h8",
        "01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "cus_NffrFeUfNV2Hib",
        "V1StGXR8_Z5jdHi6B-myT",
        "ann.lee@example.com",
        "ben+tag@mail.globex.test",
        "https://example.com/a?b=1",
        "s3://bucket/key",
        "/etc/passwd",
        "./build",
        "../up",
        "~/notes.txt",
        "C:\\Users\\x",
        "src/main.py",
        "docs/a/b/README.md",
    ],
)
def test_id_like(key: str) -> None:
    assert is_id_like(key)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "name",
        "user_id",
        "items",
        "v2",
        "id",
        "sku",
        "sku_",
        "_123",
        "user_42_name",
        "item.7.name",
        "abc123",
        "deadbee",
        "address_line_2_city",
        "sha256_fingerprint",
        "SHA256_FINGERPRINT",
        "createdAt",
        "1.5e3",
        "١٢٣",
        "@type",
        "@id",
        "x@y",
        "a@b.c",
        "read/write",
        "a/b",
        "content-type",
        "http",
        "://x",
        "/",
        "my file.txt/x.py",
    ],
)
def test_not_id_like(key: str) -> None:
    assert not is_id_like(key)


@given(ID_KEYS)
def test_generated_id_keys_are_id_like(key: str) -> None:
    assert is_id_like(key)


@given(st.from_regex(r"[a-z]{1,7}(_[a-z]{1,7})?", fullmatch=True))
def test_snake_case_words_are_not_id_like(key: str) -> None:
    assert not is_id_like(key)


# --------------------------------------------------------------------------------------------
# unit tests: caps


def test_depth_cap() -> None:
    nested = {"a": {"b": {"c": {"d": 1}}}}
    assert skeleton(nested, max_depth=4) == {"a": {"b": {"c": {"d": "num"}}}}
    assert skeleton(nested, max_depth=3) == {"a": {"b": {"c": "deep"}}}
    assert skeleton(nested, max_depth=0) == "deep"
    assert skeleton([[1]], max_depth=1) == ["[]", "deep"]
    assert skeleton(1, max_depth=0) == "num"


def test_map_value_set_counts_as_a_level() -> None:
    assert skeleton({"1": {"a": 1}}, max_depth=3) == {MAP: ["|", {"a": "num"}]}
    assert skeleton({"1": {"a": 1}}, max_depth=2) == {MAP: ["|", "deep"]}
    assert skeleton({"1": {"a": 1}}, max_depth=1) == {MAP: "deep"}


def test_every_payload_the_gateway_accepts_is_seen_whole() -> None:
    """Dec 5 attack run: with a depth cap of 8, a key added nine levels down a known manifest
    (``privileged: true``) left the node unchanged and the call was allowed; with 512 nodes, a
    change past the budget did too. The default caps now reach past the gateway's own limits
    (depth 16, 10,000 values), maps included."""
    limits = Limits()
    assert MAX_DEPTH >= 2 * limits.max_payload_depth
    assert MAX_NODES > limits.max_payload_values + 1

    def nest(leaf: Any, depth: int, key: str = "k") -> Any:
        for _ in range(depth - 1):
            leaf = {key: leaf}
        return leaf

    deep = nest({"privileged": False}, limits.max_payload_depth)
    deeper = nest({"privileged": False, "hostPID": True}, limits.max_payload_depth)
    assert skeleton_hash(deep) != skeleton_hash(deeper)
    assert "deep" not in tags(skeleton(deep))
    # the same through id-keyed maps, whose value sets add a level each
    mapped = nest({"privileged": False}, limits.max_payload_depth, key="1234567890")
    mapped2 = nest({"privileged": False, "hostPID": True}, limits.max_payload_depth,
                   key="1234567890")
    assert skeleton_hash(mapped) != skeleton_hash(mapped2)
    # a wide payload: the last of 4,000 distinct rows still counts
    rows = [{f"f{i}": i} for i in range(4_000)]
    assert skeleton_hash({"rows": rows}) != skeleton_hash({"rows": [*rows[:-1], {"f3999": "x"}]})


def test_node_cap() -> None:
    assert skeleton({"a": 1, "b": 2, "c": 3}, max_nodes=3) == {
        "a": "num",
        "b": "num",
        "c": TRUNC,
    }
    assert skeleton([1], max_nodes=0) == TRUNC
    assert skeleton([1, "x"], max_nodes=2) == ["[]", "num", TRUNC]
    assert skeleton({"1": 1}, max_nodes=1) == {MAP: TRUNC}


def test_repeated_elements_cost_nothing_even_at_the_cap() -> None:
    record = {"a": 1, "b": "x", "c": [1, 2]}
    for cap in range(12):
        one = skeleton({"r": [record]}, max_nodes=cap)
        assert skeleton({"r": [record] * 7}, max_nodes=cap) == one, cap


def test_bad_caps_and_values() -> None:
    with pytest.raises(ValueError):
        skeleton({}, max_depth=-1)
    with pytest.raises(TypeError, match="decoded JSON"):
        skeleton({"a": {1, 2}})
    with pytest.raises(TypeError, match="decoded JSON"):
        skeleton(b"raw")


def test_json_look_alikes() -> None:
    assert skeleton(OrderedDict(b=1, a=(1, "x"))) == skeleton({"a": ["y", 2], "b": 0.5})


# --------------------------------------------------------------------------------------------
# unit tests: canonical bytes and hash


def test_canonical_bytes() -> None:
    assert canonical({"b": ["[]", "num"], "a": {MAP: ["|", "str"]}}) == (
        b'{"a":{"<map>":["|","str"]},"b":["[]","num"]}'
    )


def test_hash_is_xxh3_of_canonical_bytes() -> None:
    payload = {"b": [1, {"c": None}], "a": True}
    expected = xxhash.xxh3_64_hexdigest(canonical(skeleton(payload)))
    assert skeleton_hash(payload) == expected
    assert skeleton_hash({"a": 1}) == xxhash.xxh3_64_hexdigest(b'{"a":"num"}')
    assert skeleton_hash({"a": 1}) == "{:016x}".format(xxhash.xxh3_64_intdigest(b'{"a":"num"}'))


def test_hash_format() -> None:
    for payload in ({}, {"a": 1}, [1], "x", None):
        h = skeleton_hash(payload)
        assert len(h) == 16 and h == h.lower() and int(h, 16) >= 0


def test_hash_caps_are_passed_through() -> None:
    nested = {"a": {"b": {"c": 1}}}
    assert skeleton_hash(nested, max_depth=2) == skeleton_hash(
        {"a": {"b": {"x": "y"}}}, max_depth=2
    )
    assert skeleton_hash(nested) != skeleton_hash(nested, max_depth=2)


def test_doctests() -> None:
    result = doctest.testmod(skeleton_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_all_is_exported() -> None:
    for name in skeleton_module.__all__:
        assert hasattr(skeleton_module, name), name


# --------------------------------------------------------------------------------------------
# properties


@given(JSON, st.randoms(use_true_random=False))
def test_key_order_independence(value: Any, rnd: random.Random) -> None:
    assert skeleton_hash(shuffle_keys(value, rnd)) == skeleton_hash(value)


@SLOW
@given(HOSTILE, CAPS, st.randoms(use_true_random=False))
def test_key_order_independence_under_caps(
    value: Any, caps: dict[str, int], rnd: random.Random
) -> None:
    assert skeleton(shuffle_keys(value, rnd), **caps) == skeleton(value, **caps)


@given(JSON, st.randoms(use_true_random=False))
def test_value_independence(value: Any, rnd: random.Random) -> None:
    assert skeleton_hash(revalue(value, rnd)) == skeleton_hash(value)


@SLOW
@given(HOSTILE, CAPS, st.randoms(use_true_random=False))
def test_value_independence_under_caps(
    value: Any, caps: dict[str, int], rnd: random.Random
) -> None:
    assert skeleton(revalue(value, rnd), **caps) == skeleton(value, **caps)


@given(JSON, st.randoms(use_true_random=False))
def test_array_length_independence(value: Any, rnd: random.Random) -> None:
    assert skeleton_hash(pad_arrays(value, rnd)) == skeleton_hash(value)


@SLOW
@given(HOSTILE, CAPS, st.randoms(use_true_random=False))
def test_array_length_independence_under_caps(
    value: Any, caps: dict[str, int], rnd: random.Random
) -> None:
    assert skeleton(pad_arrays(value, rnd), **caps) == skeleton(value, **caps)


@given(JSON, st.randoms(use_true_random=False))
def test_array_order_independence(value: Any, rnd: random.Random) -> None:
    assert skeleton_hash(shuffle_arrays(value, rnd)) == skeleton_hash(value)


@given(
    JSON,
    st.lists(ID_KEYS, min_size=1, max_size=12, unique=True),
    st.lists(ID_KEYS, min_size=1, max_size=12, unique=True),
    st.randoms(use_true_random=False),
)
def test_map_collapse(
    template: Any, keys_a: list[str], keys_b: list[str], rnd: random.Random
) -> None:
    map_a = {k: revalue(template, rnd) for k in keys_a}
    map_b = {k: revalue(template, rnd) for k in keys_b}
    assert skeleton_hash(map_a) == skeleton_hash(map_b)
    skel = skeleton(map_a)
    assert set(skel) == {MAP} and skel[MAP][0] == "|" and len(skel[MAP]) == 2


@given(st.lists(NAME_KEYS, min_size=1, max_size=6, unique=True), ID_KEYS)
def test_names_with_one_id_key_are_not_a_map(names: list[str], id_key: str) -> None:
    skel = skeleton({**{n: 1 for n in names}, id_key: 1})
    assert MAP not in skel and set(skel) == {*names, id_key}


@SLOW
@given(HOSTILE, CAPS)
def test_caps_respected(value: Any, caps: dict[str, int]) -> None:
    skel = skeleton(value, **caps)
    depth, max_keys, max_nodes = caps["max_depth"], caps["max_keys"], caps["max_nodes"]
    assert json_depth(skel) <= depth
    real, trunc = count_nodes(skel)
    assert real <= max_nodes
    assert trunc <= (depth + 1) * (max_keys + 1)
    _assert_objects_narrow(skel, max_keys)
    assert skeleton(value, **caps) == skel  # determinism


def _assert_objects_narrow(skel: Any, max_keys: int) -> None:
    if isinstance(skel, dict):
        assert len(skel) <= max(max_keys, 1)
        for child in skel.values():
            _assert_objects_narrow(child, max_keys)
    elif isinstance(skel, list):
        for child in skel[1:]:
            _assert_objects_narrow(child, max_keys)


@SLOW
@given(HOSTILE)
def test_default_caps_respected(value: Any) -> None:
    skel = skeleton(value)
    assert json_depth(skel) <= MAX_DEPTH
    assert count_nodes(skel)[0] <= MAX_NODES


@given(JSON)
def test_determinism(value: Any) -> None:
    first = skeleton_hash(value)
    assert skeleton_hash(value) == first
    assert skeleton_hash(_copy(value)) == first
    assert canonical(skeleton(value)) == canonical(skeleton(_copy(value)))


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


@given(JSON)
def test_bool_and_num_differ(value: Any) -> None:
    skel = skeleton(value)
    assume("num" in tags(skel))
    as_bools = replace_scalars(value, float, True)
    assert skeleton_hash(as_bools) != skeleton_hash(value)
    assert "num" not in tags(skeleton(as_bools))


@given(JSON)
def test_str_and_num_differ(value: Any) -> None:
    skel = skeleton(value)
    assume("str" in tags(skel))
    as_nums = replace_scalars(value, str, 0)
    assert skeleton_hash(as_nums) != skeleton_hash(value)


@given(st.dictionaries(NAME_KEYS, SCALARS, min_size=1, max_size=8))
def test_scalar_type_changes_show(value: dict[str, Any]) -> None:
    key = min(value)
    for other in ("x", 1, True, None):
        changed = {**value, key: other}
        same_type = skeleton(other) == skeleton(value[key])
        assert (skeleton_hash(changed) == skeleton_hash(value)) == same_type


def test_objects_keyed_by_addresses_or_paths_are_maps() -> None:
    """A payload keyed by e-mail addresses or file paths has one shape, whichever addresses or
    paths it holds (each new one would otherwise be a new node, an anomaly)."""
    a = {"ann@example.com": {"role": "admin"}, "bo@globex.test": {"role": "viewer"}}
    b = {"cy@initech.test": {"role": "owner"}}
    assert skeleton(a) == skeleton(b) == {"<map>": ["|", {"role": "str"}]}
    assert skeleton_hash({"src/a.py": 3, "/etc/hosts": 1}) == skeleton_hash({"lib/b.rs": 9})
