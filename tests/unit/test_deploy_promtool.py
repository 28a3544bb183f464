"""promtool checks of deploy/prometheus: rules and config load, every alert's unit tests pass,
and those tests really assert (a rule set whose alerts never fire fails them).

promtool is required, not optional: `.ci/run` and `scripts/test` install it (Debian package
``prometheus``) the way they install redis-server.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy_support import DEPLOY, dashboard_exprs, load_yaml, rule_groups

PROM = DEPLOY / "prometheus"
#: Minute-scale alerts, and the 24 h one (evaluated every 15 min to stay fast).
TEST_FILES = ("rules_test.yaml", "rules_test_daily.yaml")


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: run `apt-get install -y --no-install-recommends "
            "prometheus` (or ./.ci/run, which installs it)"
        )
    return path


def run(promtool: str, *args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=240, check=False
    )


def alerts() -> list[str]:
    return [r["alert"] for g in rule_groups() for r in g["rules"] if "alert" in r]


def test_rules_load(promtool: str) -> None:
    res = run(promtool, "check", "rules", "rules.yaml")
    assert res.returncode == 0, res.stdout + res.stderr


def test_compose_prometheus_config_loads(promtool: str) -> None:
    res = run(promtool, "check", "config", "prometheus.yml")
    assert res.returncode == 0, res.stdout + res.stderr


def test_alert_unit_tests_pass(promtool: str) -> None:
    res = run(promtool, "test", "rules", *TEST_FILES)
    assert res.returncode == 0, res.stdout + res.stderr


def unit_cases(folder: Path = PROM) -> list[dict[str, Any]]:
    return [
        case
        for name in TEST_FILES
        for test in load_yaml(folder / name)["tests"]
        for case in test.get("alert_rule_test", [])
    ]


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases = unit_cases()
    for name in alerts():
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in mine), f"{name}: no test where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{name}: no test where it stays quiet"


def test_the_unit_tests_catch_alerts_that_never_fire(promtool: str, tmp_path: Path) -> None:
    rules = load_yaml(PROM / "rules.yaml")
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["expr"] = "vector(0) > 1"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    for name in TEST_FILES:
        shutil.copy(PROM / name, tmp_path / name)
    res = run(promtool, "test", "rules", *TEST_FILES, cwd=tmp_path)
    assert res.returncode != 0
    for name in alerts():
        assert f"alertname: {name}," in res.stdout + res.stderr, f"{name}: went unnoticed"


def test_dashboard_queries_parse(promtool: str, tmp_path: Path) -> None:
    # Grafana's interval variables are substituted, then every query is loaded as a recording rule.
    exprs = [e.replace("$__rate_interval", "5m").replace("$__interval", "1m")
             for _, e in dashboard_exprs()]
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query_{i}:check", "expr": e} for i, e in enumerate(exprs)
    ]}]}
    (tmp_path / "dashboards.yaml").write_text(yaml.safe_dump(rules))
    res = run(promtool, "check", "rules", "dashboards.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in res.stdout
