"""Markov nodes and chain identity (models/nodes.py)."""

from __future__ import annotations

import dataclasses
import doctest
import re

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

import models.nodes as nodes_module
from models.events import PRIORITIES
from models.nodes import END, OVERFLOW, START, ChainId, chain_for, coarse_action, node_id
from models.skeleton import skeleton_hash

HEX16 = re.compile(r"[0-9a-f]{16}")
# Validated ids: no control characters (models.events); no surrogates (not valid JSON text).
IDS = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0xD7FF), min_size=1, max_size=20
)


@pytest.mark.parametrize(
    ("action", "coarse"),
    [
        ("contacts.read", "contacts"),
        ("db:query", "db"),
        ("files/upload", "files"),
        ("send", "send"),
        ("a.b:c/d", "a"),
        ("a/b.c", "a"),
        ("db:users.read", "db"),
        (".hidden", ""),
        ("", ""),
        ("mail-send_now", "mail-send_now"),
    ],
)
def test_coarse_action(action: str, coarse: str) -> None:
    assert coarse_action(action) == coarse


@given(st.text())
def test_coarse_action_is_a_separator_free_prefix(action: str) -> None:
    coarse = coarse_action(action)
    assert action.startswith(coarse)
    assert not set(coarse) & set(".:/")
    assert coarse == action or action[len(coarse)] in ".:/"


def test_special_nodes() -> None:
    assert (START, END, OVERFLOW) == ("^", "$", "~")
    assert len({START, END, OVERFLOW}) == 3


def test_standard_node_is_the_skeleton_hash() -> None:
    h = skeleton_hash({"q": "x"})
    assert node_id(h, service="crm", action="contacts.read", rich=False) == h


def test_rich_node_hashes_service_coarse_action_and_skeleton() -> None:
    h = skeleton_hash({"q": "x"})
    rich = node_id(h, service="crm", action="contacts.read", rich=True)
    assert rich == xxhash.xxh3_64_hexdigest(f"crm\x1fcontacts\x1f{h}".encode())
    assert HEX16.fullmatch(rich) and rich != h
    assert rich == node_id(h, service="crm", action="contacts:write", rich=True)
    assert rich != node_id(h, service="crm", action="deals.read", rich=True)
    assert rich != node_id(h, service="erp", action="contacts.read", rich=True)
    other = skeleton_hash({"q": 1})
    assert rich != node_id(other, service="crm", action="contacts.read", rich=True)


@given(IDS, IDS, st.booleans())
def test_nodes_never_look_like_special_nodes(service: str, action: str, rich: bool) -> None:
    n = node_id(skeleton_hash({"a": 1}), service=service, action=action, rich=rich)
    assert HEX16.fullmatch(n) and n not in (START, END, OVERFLOW)


def test_chain_tag_is_a_hash_of_the_fields() -> None:
    chain = ChainId("proj", "agent", "crm", critical=False)
    assert chain.tag == xxhash.xxh3_64_hexdigest(b"proj\x1fagent\x1fcrm")
    crit = ChainId("proj", "agent", "crm", critical=True)
    assert crit.tag == xxhash.xxh3_64_hexdigest(b"proj\x1fagent\x1fcrm\x1fcrit")
    assert chain.tag != crit.tag


def test_chain_tag_is_safe_for_cluster_hash_tags() -> None:
    chain = ChainId("p", "agent{x}", "s}{", critical=False)
    assert HEX16.fullmatch(chain.tag)
    assert "{" not in chain.tag and "}" not in chain.tag


@given(IDS, IDS, IDS, IDS, IDS, IDS)
def test_chain_tags_differ_when_fields_differ(
    p1: str, a1: str, s1: str, p2: str, a2: str, s2: str
) -> None:
    one, two = ChainId(p1, a1, s1), ChainId(p2, a2, s2)
    assert (one.tag == two.tag) == ((p1, a1, s1) == (p2, a2, s2))


def test_chain_label() -> None:
    assert ChainId("p", "a", "s").label == "p/a/s"
    assert ChainId("p", "a", "s", critical=True).label == "p/a/s!critical"


def test_chain_id_is_frozen_and_hashable() -> None:
    chain = ChainId("p", "a", "s", critical=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        chain.agent_id = "b"  # type: ignore[misc]
    assert {chain, ChainId("p", "a", "s")} == {chain}


@pytest.mark.parametrize("priority", PRIORITIES)
def test_chain_for_splits_critical_only(priority: str) -> None:
    chain = chain_for("p", "a", "s", priority)
    assert (chain.project_id, chain.agent_id, chain.service) == ("p", "a", "s")
    assert chain.critical is (priority == "critical")
    main = chain_for("p", "a", "s", "normal")
    assert (chain == main) is (priority != "critical")


def test_chain_for_rejects_unknown_priority() -> None:
    with pytest.raises(ValueError, match="priority must be one of"):
        chain_for("p", "a", "s", "Critical")


def test_doctests() -> None:
    result = doctest.testmod(nodes_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_all_is_exported() -> None:
    for name in nodes_module.__all__:
        assert hasattr(nodes_module, name), name
