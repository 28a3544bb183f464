"""deploy/k8s, parsed with PyYAML (no cluster needed): probes point at real gateway routes, env
names are real settings, ports agree with the settings, selectors match, every container has
requests and limits, workers never outnumber partitions, and the PrometheusRule is rules.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.app import build_app
from ratchet.cli.main import build_parser
from ratchet.config.settings import Settings
from tests.unit.deploy_support import (
    DEPLOY,
    load_yaml,
    load_yaml_docs,
    prometheusrule_doc,
    rule_exprs,
    setting_env_names,
)

K8S = DEPLOY / "k8s"
Doc = dict[str, Any]


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


@pytest.fixture(scope="module")
def docs() -> list[Doc]:
    return [d for p in manifest_files() for d in load_yaml_docs(p)]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def settings_env(docs: list[Doc]) -> dict[str, str]:
    env = dict(one(docs, "ConfigMap", "ratchet-settings")["data"])
    env.update(one(docs, "Secret", "ratchet-secrets")["stringData"])
    return env


def container(deploy: Doc) -> Doc:
    (c,) = deploy["spec"]["template"]["spec"]["containers"]
    return dict(c)


def port_number(c: Doc, port: int | str) -> int:
    if isinstance(port, int):
        return port
    (found,) = [p["containerPort"] for p in c["ports"] if p["name"] == port]
    return int(found)


def gateway_routes() -> set[str]:
    app = build_app(Settings(redis_url="redis://unused:1/0", kafka_bootstrap="unused:1"))
    return {r.resource.canonical for r in app.router.routes() if r.resource is not None}


def test_every_manifest_is_a_named_object_listed_in_a_kustomization(docs: list[Doc]) -> None:
    assert docs
    for d in docs:
        assert d.get("apiVersion") and d.get("kind") and d["metadata"].get("name"), d
    listed: set[Path] = set()
    for kust in K8S.rglob("kustomization.yaml"):
        for res in load_yaml(kust)["resources"]:
            path = (kust.parent / res).resolve()
            assert path.is_file(), f"{kust}: {res} does not exist"
            listed.add(path)
    assert set(manifest_files()) == listed


def test_settings_objects_hold_only_real_settings_with_valid_values(docs: list[Doc]) -> None:
    env = settings_env(docs)
    unknown = sorted(set(env) - setting_env_names())
    assert not unknown, f"not fields of ratchet/config/settings.py: {unknown}"
    s = Settings.from_env(env)  # raises ConfigError on a bad value
    assert s.redis_url and s.kafka_bootstrap
    assert s.redis_cluster, "production runs Redis Cluster"
    assert s.gateway_host == "0.0.0.0"
    assert s.gateway_port == Settings().gateway_port
    assert s.worker_web_port == Settings().worker_web_port
    assert "RATCHET_WORKER_ID" in env, "all worker pods must share one consumer group id"


def test_containers_read_the_settings_and_run_real_subcommands(docs: list[Doc]) -> None:
    parser = build_parser()
    real = setting_env_names()
    for name, command in (("ratchet-gateway", "gateway"), ("ratchet-worker", "worker")):
        c = container(one(docs, "Deployment", name))
        assert parser.parse_args(c["args"]).command == command
        refs = {next(iter(e.values()))["name"] for e in c["envFrom"]}
        assert refs == {"ratchet-settings", "ratchet-secrets"}
        for e in c.get("env", []):
            assert not e["name"].startswith("RATCHET_") or e["name"] in real, e["name"]
        assert c["image"] == "ratchet"  # set by the kustomization's images: entry
    images = load_yaml(K8S / "kustomization.yaml")["images"]
    assert [(i["name"], bool(i["newTag"])) for i in images] == [("ratchet", True)]


def test_gateway_probes_hit_real_routes_on_the_settings_port(docs: list[Doc]) -> None:
    routes = gateway_routes()
    c = container(one(docs, "Deployment", "ratchet-gateway"))
    port = Settings.from_env(settings_env(docs)).gateway_port
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] in routes, f"{probe}: {get['path']} is not a gateway route"
        assert port_number(c, get["port"]) == port
    ann = one(docs, "Deployment", "ratchet-gateway")["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/path"] in routes
    assert int(ann["prometheus.io/port"]) == port


def test_worker_ports_and_liveness_use_the_metrics_port(docs: list[Doc]) -> None:
    deploy = one(docs, "Deployment", "ratchet-worker")
    c = container(deploy)
    port = Settings.from_env(settings_env(docs)).worker_web_port
    assert port_number(c, c["livenessProbe"]["tcpSocket"]["port"]) == port
    ann = deploy["spec"]["template"]["metadata"]["annotations"]
    assert int(ann["prometheus.io/port"]) == port


def test_workers_scale_by_partitions(docs: list[Doc]) -> None:
    partitions = Settings.from_env(settings_env(docs)).topic_partitions
    replicas = one(docs, "Deployment", "ratchet-worker")["spec"]["replicas"]
    assert 1 <= replicas <= partitions
    assert not [
        d for d in docs
        if d["kind"] == "HorizontalPodAutoscaler"
        and d["spec"]["scaleTargetRef"]["name"] == "ratchet-worker"
    ], "CPU autoscaling of workers past the partition count does nothing but rebalance"


def test_gateway_hpa_and_disruption_budgets(docs: list[Doc]) -> None:
    hpa = one(docs, "HorizontalPodAutoscaler", "ratchet-gateway")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "ratchet-gateway"
    }
    assert hpa["spec"]["minReplicas"] >= 2
    for name in ("ratchet-gateway", "ratchet-worker"):
        pdb = one(docs, "PodDisruptionBudget", name)
        labels = one(docs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_every_container_has_requests_and_limits(docs: list[Doc]) -> None:
    for d in docs:
        if d["kind"] not in ("Deployment", "Job"):
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            res = c["resources"]
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= res[part].keys(), f"{d['metadata']['name']}: {part}"
            assert ":" in c["image"] or c["image"] == "ratchet", c["image"]
            assert not c["image"].endswith(":latest")


def test_services_select_their_pods_and_target_named_ports(docs: list[Doc]) -> None:
    for name in ("ratchet-gateway", "ratchet-worker"):
        svc = one(docs, "Service", name)
        deploy = one(docs, "Deployment", name)
        labels = deploy["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= labels.items()
        assert deploy["spec"]["selector"]["matchLabels"].items() <= labels.items()
        c = container(deploy)
        for p in svc["spec"]["ports"]:
            port_number(c, p["targetPort"])  # the named port exists


def test_service_monitors_scrape_named_service_ports_and_jobs_match_the_alerts(
    docs: list[Doc],
) -> None:
    target_down = dict(rule_exprs())["RatchetTargetDown"]
    for name in ("ratchet-gateway", "ratchet-worker"):
        sm = one(docs, "ServiceMonitor", name)
        svc = one(docs, "Service", name)
        assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
        (endpoint,) = sm["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
        assert name in target_down  # job label = Service name


def test_topics_job_creates_every_topic_setting(docs: list[Doc]) -> None:
    job = one(docs, "Job", "ratchet-topics")
    c = job["spec"]["template"]["spec"]["containers"][0]
    script = " ".join(c["args"])
    for var in ("RATCHET_TOPIC_INGEST", "RATCHET_TOPIC_VERDICTS", "RATCHET_TOPIC_FEEDBACK",
                "RATCHET_TOPIC_AUDIT", "RATCHET_TOPIC_PARTITIONS", "RATCHET_KAFKA_BOOTSTRAP"):
        assert f"${var}" in script or f'"${var}"' in script, var
        assert var in settings_env(docs), var
    assert c["image"].startswith("apache/kafka:")


def test_prometheusrule_is_rules_yaml() -> None:
    path = K8S / "monitoring" / "prometheusrule.yaml"
    assert path.read_text() == prometheusrule_doc(), (
        "regenerate: python -m tests.unit.deploy_support prometheusrule > " + str(path)
    )
