"""What the deploy/ tests share: file loading, the real settings and metric names, PromQL scanning.

The metric catalogue is read from the code's own collectors (gateway/metrics.py,
ratchet/telemetry/metrics.py), so renaming a metric in the code without updating deploy/ fails the tests.

``python -m tests.unit.deploy_support prometheusrule`` prints deploy/k8s/monitoring/prometheusrule.yaml.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from prometheus_client.metrics import MetricWrapperBase

import gateway.metrics
import ratchet.telemetry.metrics
from ratchet.config.settings import PREFIX, Settings

__all__ = [
    "DEPLOY",
    "ROOT",
    "MetricFamily",
    "dashboard_exprs",
    "load_yaml",
    "load_yaml_docs",
    "metric_families",
    "prometheusrule_doc",
    "rule_exprs",
    "scan_promql",
    "setting_env_names",
]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

#: Target labels every series carries: Prometheus's own, and the namespace the Kubernetes
#: ServiceMonitors (and the compose scrape config) attach.
SCRAPE_LABELS = frozenset({"job", "instance", "namespace"})


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def setting_env_names() -> frozenset[str]:
    """``RATCHET_*`` names of every field of :class:`Settings`."""
    return frozenset(
        PREFIX + f.name.upper() for f in dataclasses.fields(Settings)
    )


@dataclass(frozen=True)
class MetricFamily:
    name: str
    kind: str
    labels: frozenset[str]

    def sample_names(self) -> dict[str, frozenset[str]]:
        """Exposed sample names → the labels each may carry (besides job/instance)."""
        if self.kind == "counter":
            return {self.name + "_total": self.labels, self.name + "_created": self.labels}
        if self.kind == "histogram":
            return {
                self.name + "_bucket": self.labels | {"le"},
                self.name + "_sum": self.labels,
                self.name + "_count": self.labels,
                self.name + "_created": self.labels,
            }
        return {self.name: self.labels}


def _families(module: ModuleType) -> Iterator[MetricFamily]:
    for value in vars(module).values():
        if isinstance(value, MetricWrapperBase):
            (described,) = value.describe()
            labels = frozenset(value._labelnames)
            yield MetricFamily(described.name, described.type, labels)


def metric_families() -> dict[str, MetricFamily]:
    """Every metric family the gateway and the workers register, by family name."""
    found = [*_families(gateway.metrics), *_families(ratchet.telemetry.metrics)]
    return {f.name: f for f in found}


def known_samples() -> dict[str, frozenset[str]]:
    """Sample name → allowed labels, for every metric of the code plus Prometheus's ``up``."""
    out: dict[str, frozenset[str]] = {"up": frozenset()}
    for fam in metric_families().values():
        out.update(fam.sample_names())
    return out


# --- PromQL scanning ---------------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_RANGE = re.compile(r"\[[^\]]*\]")
_NAME = re.compile(r"(?<![\w:.$])[a-zA-Z_:][\w:]*(?![\w:])")
_SELECTOR = re.compile(r"(?<![\w:])([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*(\"(?:[^\"\\]|\\.)*\")")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")

#: PromQL words that look like names: functions, aggregations, keywords.
PROMQL_WORDS = frozenset(
    """
    sum min max avg count stddev stdvar topk bottomk quantile count_values group
    by without on ignoring group_left group_right bool and or unless offset
    rate irate increase delta idelta deriv predict_linear histogram_quantile absent absent_over_time
    abs ceil floor round clamp clamp_min clamp_max exp ln log2 log10 sqrt vector scalar time
    label_replace label_join sort sort_desc changes resets sum_over_time avg_over_time
    min_over_time max_over_time count_over_time last_over_time quantile_over_time
    """.split()  # noqa: SIM905  (a word list reads better as text)
)


@dataclass(frozen=True)
class PromqlRefs:
    """Names an expression reads: raw metrics, recorded series, and label matchers per name."""

    metrics: frozenset[str]
    recorded: frozenset[str]
    matchers: tuple[tuple[str, str, str, str], ...]  # (name, label, op, value)
    grouping: frozenset[str]


def scan_promql(expr: str) -> PromqlRefs:
    matchers: list[tuple[str, str, str, str]] = []
    for name, body in _SELECTOR.findall(expr):
        for label, op, value in _MATCHER.findall(body):
            matchers.append((name, label, op, json.loads(value)))
    grouping = {
        label.strip()
        for group in _GROUPING.findall(expr)
        for label in group.split(",")
        if label.strip()
    }
    bare = _RANGE.sub("", re.sub(r"\{[^}]*\}", "", _STRING.sub('""', expr)))
    bare = _GROUPING.sub("", bare)
    names = {n for n in _NAME.findall(bare) if n not in PROMQL_WORDS}
    # Grafana's $__rate_interval and friends were excluded by the look-behind on "$".
    names = {n for n in names if not re.fullmatch(r"\d+[smhdwy]", n)}
    return PromqlRefs(
        metrics=frozenset(n for n in names if ":" not in n),
        recorded=frozenset(n for n in names if ":" in n),
        matchers=tuple(matchers),
        grouping=frozenset(grouping),
    )


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = load_yaml(DEPLOY / "prometheus" / "rules.yaml")["groups"]
    return groups


def rule_exprs() -> list[tuple[str, str]]:
    """(rule name, expr) of every recording and alert rule."""
    return [
        (r.get("record") or r["alert"], str(r["expr"]))
        for g in rule_groups()
        for r in g["rules"]
    ]


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        p.name: json.loads(p.read_text())
        for p in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
    }


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))


def dashboard_panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return list(_panels(board["panels"]))


def dashboard_exprs() -> list[tuple[str, str]]:
    """(``file: panel title``, expr) of every query in every dashboard."""
    return [
        (f"{name}: {panel['title']}", t["expr"])
        for name, board in dashboards().items()
        for panel in dashboard_panels(board)
        for t in panel.get("targets", [])
    ]


def prometheusrule_doc() -> str:
    """deploy/k8s/monitoring/prometheusrule.yaml, generated from deploy/prometheus/rules.yaml."""
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "ratchet", "labels": {"app.kubernetes.io/part-of": "ratchet"}},
        "spec": {"groups": rule_groups()},
    }
    head = (
        "# Generated from deploy/prometheus/rules.yaml (same groups, wrapped for the Prometheus "
        "Operator).\n"
        "# Regenerate after editing the rules; tests/unit/test_deploy_k8s.py fails if they "
        "differ:\n"
        "#   python -m tests.unit.deploy_support prometheusrule > "
        "deploy/k8s/monitoring/prometheusrule.yaml\n"
    )
    body: str = yaml.safe_dump(doc, sort_keys=False, width=100)
    return head + body


if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1:] != ["prometheusrule"]:
        sys.exit("usage: python -m tests.unit.deploy_support prometheusrule")
    sys.stdout.write(prometheusrule_doc())


_VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}")


def interpolate(value: object) -> str:
    """Compose interpolation with an empty environment: ``${X:-d}`` → ``d``; ``$$`` → ``$``."""
    text = str(value)
    for name, default in _VAR.findall(text):
        assert default, f"${{{name}}} has no default: the stack must start without a .env file"
    return _VAR.sub(lambda m: m.group(2), text).replace("$$", "$")


def env_of(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    assert isinstance(raw, dict), "use the mapping form of environment"
    return {k: interpolate(v) for k, v in raw.items()}
