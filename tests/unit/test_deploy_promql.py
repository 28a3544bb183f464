"""Every PromQL expression in deploy/ (alert and recording rules, Grafana dashboards) reads only
metrics, labels and label values the code really exports, and only recorded series that exist.
"""

from __future__ import annotations

import re

import pytest

from models.modes import MODE_NAMES
from models.verdict import ACTIONS
from tests.unit.deploy_support import (
    DEPLOY,
    SCRAPE_LABELS,
    dashboard_exprs,
    dashboard_panels,
    dashboards,
    known_samples,
    rule_exprs,
    rule_groups,
    scan_promql,
)

ALL_EXPRS = rule_exprs() + dashboard_exprs()

#: Label values the code emits, for labels whose values are a closed set in the code.
CLOSED_VALUES: dict[str, frozenset[str]] = {
    "mode": frozenset(MODE_NAMES),
    "to": frozenset(MODE_NAMES),
    "action": frozenset(ACTIONS),
    "anomalous": frozenset({"true", "false"}),
    "forced": frozenset({"true", "false"}),
}


def recorded_labels() -> dict[str, frozenset[str]]:
    """Recorded series → the labels it keeps (its ``by (...)`` clause)."""
    return {
        r["record"]: scan_promql(str(r["expr"])).grouping
        for g in rule_groups()
        for r in g["rules"]
        if "record" in r
    }


def test_scanner_sees_metrics_recordings_matchers_and_grouping() -> None:
    refs = scan_promql(
        'sum by (kind) (rate(ratchet_engine_errors_total{kind="redis_unavailable"}[5m]))'
        " / on () a:b:c offset 5m > 0 and $__rate_interval"
    )
    assert refs.metrics == {"ratchet_engine_errors_total"}
    assert refs.recorded == {"a:b:c"}
    assert refs.matchers == (("ratchet_engine_errors_total", "kind", "=", "redis_unavailable"),)
    assert refs.grouping == {"kind"}


def test_the_catalogue_has_every_suffix() -> None:
    samples = known_samples()
    assert "ratchet_http_requests_total" in samples
    assert "ratchet_http_requests" not in samples
    for suffix in ("_bucket", "_sum", "_count"):
        assert "ratchet_ingest_to_verdict_seconds" + suffix in samples
    assert "le" in samples["ratchet_lua_call_duration_seconds_bucket"]
    assert "le" not in samples["ratchet_lua_call_duration_seconds_sum"]


def test_there_is_something_to_check() -> None:
    assert len(rule_exprs()) >= 20
    assert len(dashboard_exprs()) >= 30


@pytest.mark.parametrize("where,expr", ALL_EXPRS, ids=[w for w, _ in ALL_EXPRS])
def test_expression_reads_real_metrics(where: str, expr: str) -> None:
    refs = scan_promql(expr)
    samples = known_samples()
    recorded = recorded_labels()
    assert refs.metrics or refs.recorded, f"{where}: no metric found in {expr!r}"
    unknown = sorted(refs.metrics - samples.keys())
    assert not unknown, f"{where}: {unknown} are not metrics of gateway/ or ratchet/telemetry/metrics.py"
    undefined = sorted(refs.recorded - recorded.keys())
    assert not undefined, f"{where}: {undefined} are not recorded in deploy/prometheus/rules.yaml"


@pytest.mark.parametrize("where,expr", ALL_EXPRS, ids=[w for w, _ in ALL_EXPRS])
def test_expression_uses_real_labels_and_values(where: str, expr: str) -> None:
    refs = scan_promql(expr)
    labels_of = {**known_samples(), **recorded_labels()}
    for name, label, op, value in refs.matchers:
        allowed = labels_of.get(name, frozenset()) | SCRAPE_LABELS
        assert label in allowed, f"{where}: {name} has no label {label!r} (has {sorted(allowed)})"
        if label in CLOSED_VALUES and op in ("=", "=~"):
            wanted = set(value.split("|")) if op == "=~" else {value}
            bad = sorted(wanted - CLOSED_VALUES[label])
            assert not bad, f"{where}: {label}={bad} is never emitted (values {CLOSED_VALUES[label]})"
    in_scope = set(SCRAPE_LABELS)
    for name in refs.metrics | refs.recorded:
        in_scope |= labels_of.get(name, frozenset())
    assert refs.grouping <= in_scope, (
        f"{where}: groups by {sorted(refs.grouping - in_scope)}, not a label of its series"
    )


def test_recorded_series_are_used() -> None:
    used = set().union(*(scan_promql(e).recorded for _, e in ALL_EXPRS))
    unused = sorted(recorded_labels().keys() - used)
    assert not unused, f"recording rules nobody reads: {unused}"


def test_dashboard_legends_name_labels_the_query_returns() -> None:
    recorded = recorded_labels()
    samples = known_samples()
    for name, board in dashboards().items():
        for panel in dashboard_panels(board):
            for target in panel.get("targets", []):
                refs = scan_promql(target["expr"])
                if refs.grouping:
                    out = set(refs.grouping)
                else:
                    labels_of = {**samples, **recorded}
                    out = set().union(
                        *(labels_of.get(n, frozenset()) for n in refs.metrics | refs.recorded)
                    )
                out -= {"le"} if "histogram_quantile" in target["expr"] else set()
                if target.get("format") == "heatmap":
                    out |= {"le"}
                legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
                assert legend <= out, (
                    f"{name}: {panel['title']}: legend uses {sorted(legend - out)}, "
                    f"the query returns {sorted(out)}"
                )


#: What every dashboard selector filters on (the dashboards' template variables).
VARIABLE_MATCHERS = (("namespace", "=~", "$namespace"), ("instance", "=~", "$instance"))


def test_dashboards_choose_datasource_namespace_and_instance_by_variables() -> None:
    boards = dashboards()
    assert {"overview.json", "gateway.json"} <= boards.keys()
    assert len({b["uid"] for b in boards.values()}) == len(boards)
    for name, board in boards.items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for var in ("namespace", "instance"):
            assert variables[var]["type"] == "query" and variables[var]["includeAll"]
            assert variables[var]["allValue"] == ".*"
            assert f", {var})" in variables[var]["definition"]
        ids = [p["id"] for p in dashboard_panels(board)]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in dashboard_panels(board):
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == "${datasource}", f"{name}: {panel['title']}"
            assert panel.get("targets"), f"{name}: {panel['title']} has no query"
            for t in panel["targets"]:
                assert t["datasource"]["uid"] == "${datasource}"
                refs = scan_promql(t["expr"])
                assert not refs.recorded, f"{name}: {panel['title']} reads a recording"
                selectors = {n for n, *_ in refs.matchers}
                assert selectors == refs.metrics, (
                    f"{name}: {panel['title']}: {sorted(refs.metrics - selectors)} unfiltered")
                for metric in refs.metrics:
                    have = {(lb, op, v) for n, lb, op, v in refs.matchers if n == metric}
                    assert set(VARIABLE_MATCHERS) <= have, f"{name}: {panel['title']}: {metric}"


def test_dashboards_cover_the_briefed_panels() -> None:
    boards = dashboards()
    for board, needles in (
        ("overview.json", (
            "ratchet_events_processed", "ratchet_verdicts", "ratchet_ingest_to_verdict_seconds",
            "ratchet_lua_call_duration_seconds", "ratchet_engine_errors_total",
            "ratchet_mode_transitions", "ratchet_edge_score_bits",
            "sum by (action, mode) (rate(ratchet_verdicts_total",
            "ratchet_guardrail_reasons_total", "ratchet_policy_loads_total",
            "ratchet_webhook_delivery_attempts_total", "ratchet_webhook_deliveries_total",
            "ratchet_webhook_breaker_transitions_total", "ratchet_audit_entries_total",
            "ratchet_consumer_lag_messages", "ratchet_project_verdicts_total",
        )),
        ("gateway.json", (
            "ratchet_ratelimit_rejected_total", "ratchet_ratelimit_fail_open_total",
            "ratchet_idempotency_requests_total", "ratchet_http_requests_total",
        )),
    ):
        exprs = " ".join(t["expr"] for p in dashboard_panels(boards[board])
                         for t in p.get("targets", []))
        for needle in needles:
            assert needle in exprs, f"{board} has no panel on {needle}"


def test_every_alert_links_to_its_runbook_section() -> None:
    doc = (DEPLOY.parent / "docs" / "deploy.md").read_text()
    headings = {h.strip().lower() for h in re.findall(r"^### (.+)$", doc, re.MULTILINE)}
    for group in rule_groups():
        for rule in group["rules"]:
            if "alert" in rule:
                assert "runbook" not in rule["annotations"] and "runbook" not in rule["labels"]
                url = rule["annotations"]["runbook_url"]
                assert url == (
                    '{{ or $externalLabels.docs_url "docs" }}/deploy.md#' + rule["alert"].lower()
                ), url
                assert rule["alert"].lower() in headings, f"no runbook section for {rule['alert']}"
