"""Key-path syntax and the payload walk shared by pattern, PII and media guardrails."""

from __future__ import annotations

import pytest

from models.errors import ValidationError
from models.guardrails.paths import MAX_DEPTH, PathSet, walk

PAYLOAD = {
    "a": {"b": "ab", "x": {"c": "axc"}, "c": "ac"},
    "items": [{"sku": "s1", "tags": ["t1", "t2"]}, {"sku": "s2"}],
    "grid": [[1, 2], [3]],
    "n": 7,
    "flag": True,
    "none": None,
}


def selected(*paths: str) -> list[str]:
    sel = PathSet.compile(list(paths), "paths")
    return [leaf.path for leaf in walk(PAYLOAD) if sel.matches(leaf.key)]


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["a.b"], ["a.b"]),
        (["a.*"], ["a.b", "a.c"]),
        (["a.*.c"], ["a.x.c"]),
        (["**.c"], ["a.x.c", "a.c"]),
        (["a.**"], ["a.b", "a.x.c", "a.c"]),
        (["items[].sku"], ["items[0].sku", "items[1].sku"]),
        (["items.sku"], []),  # arrays are explicit
        (["items[].tags[]"], ["items[0].tags[0]", "items[0].tags[1]"]),
        (["grid[][]"], ["grid[0][0]", "grid[0][1]", "grid[1][0]"]),
        (["n", "a.b"], ["a.b", "n"]),
        (["flag", "none"], []),  # booleans and nulls carry no content
        (["nope"], []),
    ],
)
def test_path_selection(paths: list[str], expected: list[str]) -> None:
    assert selected(*paths) == expected


def test_double_star_selects_every_leaf() -> None:
    assert len(selected("**")) == len(walk(PAYLOAD)) == 11


@pytest.mark.parametrize("bad", ["", "a..b", ".a", "a.", "a[", "a]b", "**[]", "a.b*", "x" * 300])
def test_bad_paths_are_rejected_with_the_field(bad: str) -> None:
    with pytest.raises(ValidationError) as info:
        PathSet.compile([bad], "guardrails.pii.exclude_paths")
    assert info.value.field == "guardrails.pii.exclude_paths[0]"


def test_keys_with_markers_or_odd_characters_do_not_confuse_matching() -> None:
    payload = {"a\x00b": {"c": "v"}, "a": {"b": {"c": "w"}}, "has.dot": "z"}
    sel = PathSet.compile(["a.b.c"], "p")
    assert [leaf.value for leaf in walk(payload) if sel.matches(leaf.key)] == ["w"]
    star = PathSet.compile(["*"], "p")
    assert [leaf.value for leaf in walk(payload) if star.matches(leaf.key)] == ["z"]


def test_leaf_names_and_redacted_paths() -> None:
    leaves = walk({"contacts": [{"phone": "1"}], "by_mail": {"ann@example.com": "x"}})
    assert [(leaf.name, leaf.path) for leaf in leaves] == [
        ("phone", "contacts[0].phone"),
        ("ann@example.com", "by_mail.*"),
    ]


def test_walk_is_bounded() -> None:
    deep: dict[str, object] = {"v": "bottom"}
    for _ in range(MAX_DEPTH + 10):
        deep = {"d": deep}
    assert walk(deep) == ()
    wide = {f"k{i}": "v" for i in range(50)}
    assert len(walk(wide, max_leaves=10)) == 10


@pytest.mark.parametrize(("payload", "expected"), [
    ({"sql": ["DROP TABLE users"]}, ["sql[0]"]),
    ({"sql": [["DROP"]]}, ["sql[0][0]"]),
    ({"SQL": "x"}, ["SQL"]),
    ({"Sql": "x", "sql": "y"}, ["Sql", "sql"]),
    ({"\u017fql": "x"}, ["*"]),  # long s: a key shown redacted, selected all the same
    ({"q": {"SQL": ["x"]}}, ["q.SQL[0]"]),
    ({"sqlx": "x", "items": [{"sql": 1}]}, []),
])
def test_a_path_selects_its_arrays_elements_and_every_case_of_its_keys(
    payload: dict[str, object], expected: list[str]
) -> None:
    """Round 11 of the outside attack runs: with ``paths = ["sql", "q.sql"]`` a list under the
    key, or the key spelled ``SQL``/``Sql``/``ſql`` (which many JSON readers bind to ``sql``),
    was not scanned."""
    sel = PathSet.compile(["sql", "q.sql"], "paths")
    assert [leaf.path for leaf in walk(payload) if sel.matches(leaf.key)] == expected


def test_an_excluding_set_matches_the_exact_case_only() -> None:
    ex = PathSet.compile(["trace.**"], "exclude_paths", exact_case=True)
    assert [leaf.path for leaf in walk({"trace": {"a": 1}, "Trace": {"a": 2}})
            if ex.matches(leaf.key)] == ["trace.a"]
