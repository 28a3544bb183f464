"""Consumer-lag deployment pieces: the alert (promtool), its PrometheusRule copy, the scrape
config, and the KEDA ScaledObject that scales workers on lag (parsed; no cluster needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ratchet.config.settings import Settings
from ratchet.telemetry.metrics import CONSUMER_LAG, CONSUMER_LAG_ERRORS
from tests.unit.deploy_support import DEPLOY, load_yaml, load_yaml_docs

PROM = DEPLOY / "prometheus"
K8S = DEPLOY / "k8s"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: apt-get install -y prometheus")
    return path


def run(promtool: str, *args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def test_lag_rules_load_and_their_unit_tests_pass(promtool: str) -> None:
    res = run(promtool, "check", "rules", "rules_kafka.yaml")
    assert res.returncode == 0, res.stdout + res.stderr
    res = run(promtool, "test", "rules", "rules_kafka_test.yaml")
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_unit_tests_notice_an_alert_that_never_fires(promtool: str, tmp_path: Path) -> None:
    rules = load_yaml(PROM / "rules_kafka.yaml")
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["expr"] = "vector(0) > 1"
    (tmp_path / "rules_kafka.yaml").write_text(yaml.safe_dump(rules))
    shutil.copy(PROM / "rules_kafka_test.yaml", tmp_path)
    res = run(promtool, "test", "rules", "rules_kafka_test.yaml", cwd=tmp_path)
    assert res.returncode != 0
    for name in alerts():
        assert f"alertname: {name}," in res.stdout + res.stderr, f"{name}: went unnoticed"


def alerts() -> list[str]:
    return [r["alert"] for g in load_yaml(PROM / "rules_kafka.yaml")["groups"]
            for r in g["rules"] if "alert" in r]


def test_every_lag_alert_has_a_firing_and_a_quiet_case() -> None:
    cases = [c for t in load_yaml(PROM / "rules_kafka_test.yaml")["tests"]
             for c in t.get("alert_rule_test", [])]
    assert alerts()
    for name in alerts():
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in mine), f"{name}: no test where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{name}: no test where it stays quiet"


def test_rules_read_the_exported_gauge_with_its_labels() -> None:
    text = (PROM / "rules_kafka.yaml").read_text()
    assert CONSUMER_LAG._name in text  # type: ignore[attr-defined]
    assert f"{CONSUMER_LAG_ERRORS._name}_total" in text  # type: ignore[attr-defined]
    assert list(CONSUMER_LAG_ERRORS._labelnames) == ["group"]  # type: ignore[attr-defined]
    assert set(CONSUMER_LAG._labelnames) == {"group", "topic", "partition"}  # type: ignore[attr-defined]
    assert "agent" not in " ".join(CONSUMER_LAG._labelnames)  # type: ignore[attr-defined]


def test_compose_prometheus_loads_the_lag_rules_and_scrapes_the_dispatcher() -> None:
    config = load_yaml(PROM / "prometheus.yml")
    assert "rules_kafka.yaml" in config["rule_files"]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    (sd,) = jobs["ratchet-webhooks"]["dns_sd_configs"]
    assert sd["port"] == Settings().webhook_metrics_port


def test_prometheusrule_carries_the_lag_groups_verbatim() -> None:
    (doc,) = load_yaml_docs(K8S / "monitoring" / "prometheusrule-kafka.yaml")
    assert doc["kind"] == "PrometheusRule"
    assert doc["spec"]["groups"] == load_yaml(PROM / "rules_kafka.yaml")["groups"]


def test_keda_scales_workers_on_their_group_lag_within_the_partitions() -> None:
    docs = load_yaml_docs(K8S / "keda" / "scaledobject.yaml")
    (so,) = [d for d in docs if d["kind"] == "ScaledObject"]
    settings = {}
    for d in load_yaml_docs(K8S / "settings.yaml"):
        if d["kind"] == "ConfigMap":
            settings = Settings.from_env(d["data"])
    assert so["spec"]["scaleTargetRef"]["name"] == "ratchet-worker"
    assert so["spec"]["maxReplicaCount"] <= settings.topic_partitions
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["consumerGroup"] == settings.worker_id
    assert meta["topic"] == settings.topic_ingest
    assert meta["bootstrapServers"] == settings.kafka_bootstrap
    assert meta["offsetResetPolicy"] == "earliest"  # as the workers' consumer_auto_offset_reset
    auth = [d for d in docs if d["kind"] == "TriggerAuthentication"]
    assert [a["metadata"]["name"] for a in auth] == [trigger["authenticationRef"]["name"]]
    # gateways keep their CPU HPA; nothing else autoscales the workers
    for path in K8S.glob("*.yaml"):
        for d in load_yaml_docs(path):
            if d["kind"] == "HorizontalPodAutoscaler":
                assert d["spec"]["scaleTargetRef"]["name"] == "ratchet-gateway"


def test_the_alert_has_a_runbook_section_and_compose_mounts_the_rules() -> None:
    rules = load_yaml(PROM / "rules_kafka.yaml")
    docs = (DEPLOY.parent / "docs" / "deploy.md").read_text()
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert f"### {rule['alert']}\n" in docs
                assert rule["annotations"]["runbook_url"].endswith(
                    f"/deploy.md#{rule['alert'].lower()}")
    prom = load_yaml(DEPLOY / "compose.yaml")["services"]["prometheus"]
    assert "./prometheus/rules_kafka.yaml:/etc/prometheus/rules_kafka.yaml:ro" in prom["volumes"]
