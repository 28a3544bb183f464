"""The guardrails' shortcuts for the usual event, against the full rules they skip.

Each rule with a shortcut keeps it in one predicate (``_quiet`` in loop, velocity and cost,
``_plain`` in media): switched off, the rule runs in full — the reference. On generated inputs,
edge configurations included (bounds of 0, a NaN cost, history shorter than the cycles), the
rule answers exactly the same with the shortcut as without it. The PII selection's date/UUID
pre-check is tested against the regex it guards.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.guardrails import cost, loop, media, pii, velocity
from models.guardrails.budget import ScanBudget
from models.guardrails.cost import CostConfig, check_cost
from models.guardrails.loop import LoopConfig, check_loop
from models.guardrails.media import MediaConfig, check_media
from models.guardrails.paths import walk
from models.guardrails.pii import PiiConfig, select_pii
from models.guardrails.velocity import VelocityConfig, Window, check_velocity
from models.verdict import Reason

PROPS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def without(module: Any, name: str) -> Iterator[None]:
    """The rule with its shortcut switched off: the full evaluation, the reference."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module, name, lambda *_a, **_k: False)
        yield


def both(module: Any, name: str, fn: Callable[[], list[Reason]]) -> tuple[Any, Any]:
    fast = fn()
    with without(module, name):
        full = fn()
    return fast, full


# --- loop ------------------------------------------------------------------------------------

LOOP_CFG = st.builds(
    LoopConfig,
    history=st.integers(0, 12),
    max_repeats=st.integers(0, 6),
    max_cycle_len=st.integers(1, 4),
    max_cycle_repeats=st.integers(0, 5),
    max_occurrences=st.integers(0, 6),
)
NODES = st.sampled_from(["a", "b", "c"])


@PROPS
@given(LOOP_CFG, st.lists(NODES, max_size=30), NODES)
def test_loop_shortcut_answers_as_the_full_rule(
    cfg: LoopConfig, history: list[str], node: str
) -> None:
    fast, full = both(loop, "_quiet", lambda: check_loop(cfg, tuple(history), node))
    assert fast == full


@PROPS
@given(st.integers(1, 4), st.integers(1, 8), st.lists(NODES, max_size=4), NODES)
def test_loop_repeated_blocks_are_not_skipped(
    k: int, times: int, block: list[str], node: str
) -> None:
    """Histories built to end in repeats (what random lists rarely reach)."""
    cfg = LoopConfig(history=64, max_repeats=3, max_cycle_len=4, max_cycle_repeats=2)
    history = (block or ["a"]) * times
    fast, full = both(loop, "_quiet", lambda: check_loop(cfg, history, node))
    assert fast == full
    fast, full = both(loop, "_quiet", lambda: check_loop(cfg, history[:-1], history[-1]))
    assert fast == full


@pytest.mark.parametrize("cfg", [
    LoopConfig(history=0, max_repeats=1),  # history[-0:] is the whole history
    LoopConfig(history=1, max_repeats=1, max_cycle_len=4, max_cycle_repeats=1),
    LoopConfig(history=2, max_repeats=0),
    LoopConfig(history=8, max_cycle_repeats=0),
    LoopConfig(history=8, max_occurrences=2),
])
@pytest.mark.parametrize("history", [("a", "a"), ("a", "b", "a", "b", "a"), ("b", "a", "c")])
def test_loop_edge_configurations(cfg: LoopConfig, history: tuple[str, ...]) -> None:
    for node in "abc":
        fast, full = both(loop, "_quiet", lambda: check_loop(cfg, history, node))  # noqa: B023
        assert fast == full


def test_loop_shortcut_really_is_taken_and_really_can_fire() -> None:
    cfg = LoopConfig()
    assert loop._quiet(cfg, ("a", "b", "c"), "d")
    assert not loop._quiet(cfg, ("a", "b"), "b")  # same node as the last
    assert not loop._quiet(cfg, ("a", "b", "c"), "b")  # a 2-cycle could be repeating
    assert [r.detail["rule"] for r in check_loop(cfg, ["a"] * 20, "a")] == ["loop.same_node"]


# --- velocity and cost -----------------------------------------------------------------------

COUNTS = st.one_of(st.none(), st.integers(-2, 12))


@PROPS
@given(st.integers(-1, 10), st.integers(-1, 10), COUNTS, COUNTS)
def test_velocity_shortcut_answers_as_the_full_rule(
    agent_limit: int, run_limit: int, agent: int | None, run: int | None
) -> None:
    cfg = VelocityConfig(per_agent=Window(60, agent_limit), per_run=Window(10, run_limit))
    fast, full = both(velocity, "_quiet", lambda: check_velocity(
        cfg, agent_events=agent, run_events=run))
    assert fast == full


MONEY = st.one_of(st.none(), st.floats(-5, 30, allow_nan=False), st.just(math.nan),
                  st.sampled_from([25.0, 25.0 + 1e-10, 25.0 + 1e-8, 250.0]))
LIMITS = st.one_of(st.floats(-1, 30, allow_nan=False), st.just(math.nan), st.just(0.0),
                   st.just(25.0))


@PROPS
@given(LIMITS, LIMITS, LIMITS, MONEY, MONEY, MONEY)
def test_cost_shortcut_answers_as_the_full_rule(
    pe: float, pr: float, pa: float, ev: float | None, run: float | None, day: float | None
) -> None:
    cfg = CostConfig(per_event_limit=pe, per_run_limit=pr, per_agent_daily_limit=pa)
    fast, full = both(cost, "_quiet", lambda: check_cost(
        cfg, event_cost=ev, run_cost=run, agent_daily_cost=day))
    # NaN details (a NaN total rounds to NaN) compare unequal: compare their text
    assert repr(fast) == repr(full)


# --- media -----------------------------------------------------------------------------------

EXE = base64.b64encode(b"MZ\x90\x00" + bytes(40)).decode()
PNG = base64.urlsafe_b64encode(b"\x89PNG\r\n\x1a\n" + bytes(40)).decode()
TEXTS = st.one_of(
    st.text(max_size=40),
    st.sampled_from([
        "data:image/png;base64," + PNG, "DATA:application/x-msdownload;base64," + EXE,
        "data:text/plain,hello world", EXE, PNG, "d" * 300, "D" * 300, "A" * 300,
        "\x00\x01\x02" * 100, "application/x-msdownload", "image/png; charset=x",
    ]),
    st.builds(lambda a, b: a + b, st.sampled_from([EXE[:8], PNG[:8], "data:", "Data:"]),
              st.text(max_size=30)),
)
FIELDS = st.sampled_from(["note", "mime_type", "Content-Type", "body", "mimetype", ""])


@PROPS
@given(st.lists(st.tuples(FIELDS, TEXTS), max_size=6), st.sampled_from([64, 128, 4096]),
       st.booleans())
def test_media_shortcut_answers_as_the_full_rule(
    items: list[tuple[str, str]], most: int, sniff: bool
) -> None:
    cfg = MediaConfig(max_blob_bytes=most, sniff=sniff)
    payload = {"items": [{name or "x": text} for name, text in items]}
    leaves = walk(payload)
    fast, full = both(media, "_plain", lambda: check_media(cfg, leaves))
    assert fast == full


def test_media_shortcut_skips_plain_text_only() -> None:
    assert media._plain("billing migration report", 4096, True)
    assert not media._plain("data:image/png;base64,AAAA", 4096, True)
    assert not media._plain(EXE, 4096, True)
    assert media._plain(EXE, 4096, False)  # nothing to sniff when sniffing is off
    assert not media._plain("x" * 5000, 4096, True)


# --- PII selection ---------------------------------------------------------------------------

INERT = st.from_regex(pii._INERT, fullmatch=True)


@PROPS
@given(st.one_of(INERT, st.text(min_size=6, max_size=44),
                 st.builds(lambda a, b: a + b, INERT, st.text(max_size=3))))
def test_inert_precheck_never_skips_a_date_or_uuid(value: str) -> None:
    """Every value the regex calls inert has the "-" the pre-check looks for."""
    if pii._INERT.fullmatch(value):
        assert value[4] == "-" or value[8:9] == "-"


@PROPS
@given(st.lists(st.one_of(INERT, st.text(max_size=44), st.integers(), st.floats()), max_size=8))
def test_select_pii_skips_exactly_the_inert_values(values: list[Any]) -> None:
    leaves = walk({"v": values})
    texts, _owners, _hits, _ = select_pii(PiiConfig(), leaves, ScanBudget(10**9))
    # integers of nine digits or more are read as their digits (pii._READ_DIGITS)
    read = [str(v) if type(v) is int and abs(v) >= 10**8 else v
            for v in (leaf.value for leaf in leaves)]
    expected = [
        v for v in read
        if isinstance(v, str) and len(v) >= 6 and not (len(v) <= 40 and pii._INERT.fullmatch(v))
    ]
    assert texts == expected


# --- PII digit windows gated by one alternation ----------------------------------------------

PII_SAMPLES = [
    "4111 1111 1111 1111", "4012888888881881", "5555-5555-5555-4444", "378282246310005",
    "4111 1111 1111 1111 12/26", "+44 20 7946 0958", "(415) 555-2671", "415.555.2671",
    "020 7946 0958", "536-22-8726", "AB 12 34 56 C", "AB123456C", "12345678Z", "X1234567L",
    "GB82 WEST 1234 5698 7654 32", "DE89370400440532013000", "cus_908835", "msg_311600",
    "2024-01-15T10:30:00Z", "123e4567-e89b-12d3-a456-426614174000", "4155552671", "1 800 555 0199",
]
DIGITISH = st.text(alphabet=st.sampled_from("0123456789 -./()+XYZABCDGBW_"), max_size=40)
PII_TEXTS = st.one_of(
    st.sampled_from(PII_SAMPLES),
    DIGITISH,
    st.builds(lambda a, b, c: f"{a}{b}{c}", DIGITISH, st.sampled_from(PII_SAMPLES), DIGITISH),
    st.text(max_size=20),
)
ALL_DETECTORS = ("email", "card", "phone", "us_ssn", "uk_nino", "es_dni", "iban", "secret",
                 "entropy")
DETECTOR_SETS = st.sampled_from([
    ALL_DETECTORS, pii.DEFAULT_DETECTORS, ("card",), ("phone", "iban"), ("us_ssn", "es_dni"),
    ("uk_nino",), ("email", "secret"),
])


@PROPS
@given(st.lists(st.lists(PII_TEXTS.map(lambda t: t.replace("\x00", "")), max_size=4),
                min_size=1, max_size=5),
       DETECTOR_SETS)
def test_gated_digit_windows_find_what_every_window_finds(
    events: list[list[str]], detectors: tuple[str, ...]
) -> None:
    """A batch of events' texts (``groups``), every detector set: the same findings with the
    gate as with every digit window scanned by every detector."""
    from models.guardrails import pii_scan

    texts = [t for ev in events for t in ev]
    names = ["note"] * len(texts)
    groups = [len(ev) for ev in events]

    def scan() -> list[tuple[int, Any]]:
        return pii_scan.scan_texts(texts, names, detectors=detectors, groups=groups)

    fast = scan()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pii_scan, "candidate_windows", lambda _text, windows, _dets: windows)
        full = scan()
    assert fast == full


def test_gate_drops_windows_of_bare_ids_and_keeps_candidates() -> None:
    from models.guardrails.pii_detectors import candidate_windows, digit_windows

    values = ["cus_908835", "msg_311600", "call 020 7946 0958 now", "AB 12 34 56 C"]
    text = "\x00".join(values)
    bounds, at = [], 0
    for v in values:
        bounds.append((at, at + len(v)))
        at += len(v) + 1
    windows = digit_windows(text, bounds)
    kept = candidate_windows(text, windows, ALL_DETECTORS)
    assert len(windows) == 4
    assert [text[a:b].strip("\x00") for a, b in kept] == ["call 020 7946 0958 now",
                                                          "AB 12 34 56 C"]
    assert candidate_windows(text, windows, ("email", "secret")) == windows  # nothing to gate
