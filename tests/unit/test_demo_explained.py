"""The demo summary explains one real paused/rejected verdict in words (``models.explain``)."""

from __future__ import annotations

from models.explain import explain
from models.labels import NodeLabel
from models.params import EngineParams
from models.verdict import Edge, Reason, Verdict
from ratchet.sandbox.demo_report import (
    DemoReport,
    SentEvent,
    _why,
    build_report,
    pick_to_explain,
)


def _v(eid: str, action: str, reasons: tuple[Reason, ...] = (), error: str | None = None,
       anomalous: bool = True) -> Verdict:
    return Verdict(eid, "support-1", "r1", "demo/support-1/crm", "locked", anomalous, 19.93,
                   12.0, Edge("n1", "n2", 0.0, 0.0, 40.0), action, reasons, 0.0,
                   project_id="demo", chain_tag="t1", error=error)


MARKOV = Reason("markov", "pause", {"p": 0.0, "new_node": True, "threshold_from": "floor"})
GUARD = Reason("guardrail", "reject", {"rule": "pattern.sql_drop", "paths": ["sql"]})


def test_pick_prefers_a_markov_detection_and_never_an_engine_error() -> None:
    err = _v("e0", "pause", error="internal error: KeyError", anomalous=False)
    guard = _v("e1", "reject", (GUARD,), anomalous=False)
    flag = _v("e2", "flag", (Reason("markov", "flag", {}),))
    markov = _v("e3", "pause", (MARKOV,))
    assert pick_to_explain([err, guard, flag, markov]) is markov
    assert pick_to_explain([err, flag, guard]) is guard
    # a run that paused nothing: a flagged verdict rather than none
    assert pick_to_explain([err, flag]) is flag
    assert pick_to_explain([err, _v("e4", "allow", anomalous=False)]) is None


def _report_with_explanation() -> DemoReport:
    paused = _v("e3", "pause", (MARKOV,))
    sent = [SentEvent("e1", "support-1", "r1", False, True),
            SentEvent("e3", "support-1", "r1", True, True)]
    verdicts = {"e1": [_v("e1", "allow", anomalous=False)], "e3": [paused]}
    rep = build_report(sent, verdicts, latencies_s=[], seconds=1.0)
    assert rep.to_explain is paused
    labels = {"n1": NodeLabel("crm", "contacts.search", ("query:str",), 1),
              "n2": NodeLabel("crm", "contacts.export", ("all:bool", "format:str"), 2),
              "n3": NodeLabel("crm", "contacts.read", ("format:str", "id:str"), 2)}
    rep.add_explanation(explain(paused, labels, {"n3": 30.0, "n2": 0.0}, EngineParams()))
    return rep


def test_summary_shows_the_explained_verdict() -> None:
    """With its own redis-server (stopped with the demo) no command is offered that cannot
    run afterwards."""
    rep = _report_with_explanation()
    text = rep.render()
    assert ("one verdict explained in words (as `ratchet explain` prints it; the demo's own "
            "Redis stopped with the demo, so to explain verdicts afterwards run it with "
            "RATCHET_REDIS_URL set):") in text
    assert "`ratchet explain e3" not in text and "RATCHET_KEY_PREFIX" not in text
    assert rep.as_dict()["key_prefix"] is None
    assert "  previous call: crm contacts.search {query:str}" in text
    assert "  key paths new in this call:  all:bool" in text
    assert "  key paths it lacks:          id:str" in text
    assert rep.as_dict()["explanation"]["nearest"]["node"] == "n3"


def test_summary_on_an_external_redis_names_the_prefix_to_export() -> None:
    """On RATCHET_REDIS_URL the demo's keys stay, under its own prefix: the summary and the
    JSON say which, and the explain command runs with it exported."""
    rep = _report_with_explanation()
    rep.key_prefix = "demo1a2b3c4d"
    lines = rep.render().splitlines()
    assert ("one verdict explained in words (`ratchet explain e3 --project demo`, see below):"
            in lines)
    at = lines.index("  export RATCHET_KEY_PREFIX=demo1a2b3c4d")
    assert "under the key prefix demo1a2b3c4d" in lines[at - 1]
    assert lines[at + 1:at + 3] == ["  ratchet explain e3 --project demo",
                                    "  ratchet baselines list --project demo"]
    assert rep.as_dict()["key_prefix"] == "demo1a2b3c4d"


def test_guardrail_reasons_are_written_in_words_not_as_python_dicts() -> None:
    v = Verdict("e", "a", "r", "c", "locked", True, 19.9, 12.0, Edge("x", "y", 0, 0, 0), "pause",
                (Reason("guardrail:order", "pause", {"rule": "order.unseen", "from": "(start)",
                                                     "note": "no run started with this call"}),
                 Reason("guardrail:pii", "flag", {"rule": "pii.email", "paths": ["to"]})), 1.0)
    assert _why(v) == ("guardrail:order: order.unseen — no run started with this call; "
                       "guardrail:pii: pii.email (paths=['to'])")
    assert "{" not in _why(v)
