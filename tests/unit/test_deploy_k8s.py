"""deploy/k8s, parsed with PyYAML (no cluster needed): probes point at real gateway routes, env
names are real settings, ports agree with the settings, selectors match, every container has
requests and limits, workers never outnumber partitions, and the PrometheusRule is rules.yaml.
Also: secrets are referenced, never created by the base (the example overlay generates them), the
engine TOML is mounted from a generated ConfigMap, no `replicas` fights an autoscaler, pods run
under a token-less ServiceAccount behind NetworkPolicies, and the Strimzi objects match settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.app import build_app
from models.params import load_params
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
EXAMPLE = K8S / "overlays" / "example"
Doc = dict[str, Any]
#: Deployments and the subcommand each runs.
DEPLOYMENTS = {"ratchet-gateway": "gateway", "ratchet-worker": "worker",
               "ratchet-webhooks": "webhooks"}


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


@pytest.fixture(scope="module")
def docs() -> list[Doc]:
    return [d for p in manifest_files() for d in load_yaml_docs(p)]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def example_secret_env() -> dict[str, str]:
    """The example overlay's ``ratchet-secrets`` (its env file)."""
    env: dict[str, str] = {}
    for line in (EXAMPLE / "secrets.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    return env


def settings_env(docs: list[Doc]) -> dict[str, str]:
    env = dict(one(docs, "ConfigMap", "ratchet-settings")["data"])
    env.update(example_secret_env())
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
        spec = load_yaml(kust)
        for res in spec["resources"] + spec.get("components", []):
            path = (kust.parent / res).resolve()
            if path.is_dir():  # a base or component: a kustomization of its own
                assert (path / "kustomization.yaml").is_file(), f"{kust}: {res} is no kustomization"
                continue
            assert path.is_file(), f"{kust}: {res} does not exist"
            listed.add(path)
        for gen in spec.get("configMapGenerator", []) + spec.get("secretGenerator", []):
            for f in gen.get("files", []) + gen.get("envs", []):
                assert (kust.parent / f).is_file(), f"{kust}: {f} does not exist"
    assert set(manifest_files()) == listed


def test_settings_objects_hold_only_real_settings_with_valid_values(docs: list[Doc]) -> None:
    env = settings_env(docs)
    unknown = sorted(set(env) - setting_env_names())
    assert not unknown, f"not fields of ratchet/config/settings.py: {unknown}"
    s = Settings.from_env(env)  # raises ConfigError on a bad value
    assert s.redis_url and s.kafka_bootstrap
    assert s.redis_cluster, "production runs Redis Cluster"
    assert s.gateway_host == "0.0.0.0"
    assert s.metrics_host == "0.0.0.0", "Prometheus scrapes worker and dispatcher pods"
    assert s.gateway_port == Settings().gateway_port
    assert s.worker_web_port == Settings().worker_web_port
    assert "RATCHET_WORKER_ID" in env, "all worker pods must share one consumer group id"


def test_containers_read_the_settings_and_run_real_subcommands(docs: list[Doc]) -> None:
    parser = build_parser()
    real = setting_env_names()
    for name, command in DEPLOYMENTS.items():
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
    scaled = one(docs, "ScaledObject", "ratchet-worker")
    assert scaled["spec"]["maxReplicaCount"] <= partitions
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
    for name in DEPLOYMENTS:
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
    for name in DEPLOYMENTS:
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
    for name in DEPLOYMENTS:
        sm = one(docs, "ServiceMonitor", name)
        svc = one(docs, "Service", name)
        assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
        (endpoint,) = sm["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
        if name != "ratchet-webhooks":  # TargetDown covers gateways and workers (rules.yaml)
            assert name in target_down  # job label = Service name


def test_topics_job_runs_ratchet_topics_create_with_the_shared_settings(docs: list[Doc]) -> None:
    job = one(docs, "Job", "ratchet-topics")
    spec = job["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    args = build_parser().parse_args(c["args"])
    assert (args.command, args.topics_command) == ("topics", "create")
    assert c["image"] == "ratchet"
    refs = {next(iter(e.values()))["name"] for e in c["envFrom"]}
    assert refs == {"ratchet-settings", "ratchet-secrets"}
    s = Settings.from_env(settings_env(docs))
    assert s.topic_replication_factor == 3 and s.topic_partitions >= 1


def test_prometheusrule_is_rules_yaml() -> None:
    path = K8S / "monitoring" / "prometheusrule.yaml"
    assert path.read_text() == prometheusrule_doc(), (
        "regenerate: python -m tests.unit.deploy_support prometheusrule > " + str(path)
    )


def pod_specs(docs: list[Doc]) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d["spec"]["template"]["spec"]
            for d in docs if d["kind"] in ("Deployment", "Job")}


def base_docs() -> list[Doc]:
    """The objects of the base kustomization alone (what `kubectl apply -k deploy/k8s` applies)."""
    spec = load_yaml(K8S / "kustomization.yaml")
    return [d for res in spec["resources"] for d in load_yaml_docs(K8S / res)]


def test_the_base_references_secrets_and_the_example_overlay_creates_them(
    docs: list[Doc],
) -> None:
    referenced: set[str] = set()
    for spec in pod_specs(base_docs()).values():
        for c in spec["containers"]:
            referenced |= {e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e}
        referenced |= {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
    assert referenced == {"ratchet-secrets", "ratchet-kafka-ca"}
    assert not [d for d in base_docs() if d["kind"] == "Secret"], "the base must not own secrets"
    overlay = load_yaml(EXAMPLE / "kustomization.yaml")
    assert overlay["resources"] == ["../.."]
    assert {g["name"] for g in overlay["secretGenerator"]} == referenced
    assert overlay["generatorOptions"]["disableNameSuffixHash"] is True
    env = example_secret_env()
    assert {"RATCHET_REDIS_URL", "RATCHET_KAFKA_SASL_PASSWORD"} <= env.keys()
    assert set(env) <= setting_env_names()


def test_kafka_security_settings_are_complete_and_the_ca_is_mounted(docs: list[Doc]) -> None:
    s = Settings.from_env(settings_env(docs))
    assert s.kafka_security_protocol == "SASL_SSL"
    assert s.kafka_sasl_mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")
    assert s.kafka_sasl_username and s.kafka_sasl_password
    assert s.kafka_ssl_cafile
    for name, spec in pod_specs(docs).items():
        (c,) = spec["containers"]
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "kafka-ca" in mounts, name
        assert volumes["kafka-ca"]["secret"]["secretName"] == "ratchet-kafka-ca"
        assert s.kafka_ssl_cafile == f"{mounts['kafka-ca']}/ca.crt", name


def test_the_engine_toml_is_mounted_from_a_generated_configmap(docs: list[Doc]) -> None:
    (gen,) = load_yaml(K8S / "kustomization.yaml")["configMapGenerator"]
    (file,) = gen["files"]
    load_params((K8S / file).read_text())  # raises ConfigError on an invalid engine file
    deploy = one(docs, "Deployment", "ratchet-worker")
    spec = deploy["spec"]["template"]["spec"]
    c = container(deploy)
    path = {e["name"]: e["value"] for e in c["env"]}["RATCHET_ENGINE_CONFIG"]
    volume = {v["name"]: v for v in spec["volumes"]}
    (mount,) = [m for m in c["volumeMounts"] if volume[m["name"]].get("configMap")]
    assert volume[mount["name"]]["configMap"]["name"] == gen["name"]
    assert path == f"{mount['mountPath']}/{file}"


def test_no_replicas_field_fights_an_autoscaler(docs: list[Doc]) -> None:
    for hpa in [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]:
        target = one(docs, "Deployment", hpa["spec"]["scaleTargetRef"]["name"])
        assert "replicas" not in target["spec"], target["metadata"]["name"]
    keda = load_yaml(K8S / "keda" / "kustomization.yaml")
    assert keda["kind"] == "Component"
    (patch,) = keda["patches"]
    assert patch["target"]["name"] == one(docs, "ScaledObject", "ratchet-worker")["spec"][
        "scaleTargetRef"]["name"]
    assert patch["target"]["kind"] == "Deployment"
    assert yaml.safe_load(patch["patch"]) == [{"op": "remove", "path": "/spec/replicas"}]


def test_pods_run_under_a_tokenless_service_account(docs: list[Doc]) -> None:
    sa = one(docs, "ServiceAccount", "ratchet")
    assert sa["automountServiceAccountToken"] is False
    for name, spec in pod_specs(base_docs()).items():
        assert spec["serviceAccountName"] == "ratchet", name
        assert spec["automountServiceAccountToken"] is False, name


def _selects(selector: Doc, labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In"
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def test_network_policies_allow_exactly_the_ports_in_use(docs: list[Doc]) -> None:
    s = Settings.from_env(settings_env(docs))
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
            for d in base_docs() if d["kind"] in ("Deployment", "Job")}

    def ingress_ports(labels: dict[str, str]) -> set[int]:
        return {p["port"] for pol in policies if _selects(pol["spec"]["podSelector"], labels)
                for rule in pol["spec"].get("ingress", []) for p in rule.get("ports", [])}

    def egress_ports(labels: dict[str, str]) -> set[int]:
        return {p["port"] for pol in policies if _selects(pol["spec"]["podSelector"], labels)
                for rule in pol["spec"].get("egress", []) for p in rule.get("ports", [])}

    deny = one(docs, "NetworkPolicy", "ratchet-default-deny")
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"} and "ingress" not in deny["spec"]
    for name, labels in pods.items():
        assert _selects(deny["spec"]["podSelector"], labels), f"{name} is not default-denied"
    assert ingress_ports(pods["ratchet-gateway"]) == {s.gateway_port}
    assert ingress_ports(pods["ratchet-worker"]) == {s.worker_web_port, s.webhook_metrics_port}
    assert ingress_ports(pods["ratchet-webhooks"]) == {s.worker_web_port, s.webhook_metrics_port}
    assert ingress_ports(pods["ratchet-topics"]) == set()
    assert s.kafka_bootstrap and s.redis_url
    needed = {53, int(s.kafka_bootstrap.rsplit(":", 1)[1]),
              int(s.redis_url.rsplit(":", 1)[1].split("/")[0])}
    for name, labels in pods.items():
        assert needed <= egress_ports(labels), name
    assert {443, 80} <= egress_ports(pods["ratchet-webhooks"])
    assert 443 not in egress_ports(pods["ratchet-worker"])


def test_strimzi_topics_and_user_match_the_settings(docs: list[Doc]) -> None:
    s = Settings.from_env(settings_env(docs))
    strimzi = [d for p in sorted((K8S / "strimzi").glob("*.yaml")) if p.name != "kustomization.yaml"
               for d in load_yaml_docs(p)]
    topics = {d["metadata"]["name"]: d["spec"] for d in strimzi if d["kind"] == "KafkaTopic"}
    names = {s.topic_ingest, s.topic_verdicts, s.topic_feedback, s.topic_audit}
    assert set(topics) == names
    for spec in topics.values():
        assert spec["partitions"] == s.topic_partitions
        assert spec["replicas"] == s.topic_replication_factor
    (user,) = [d for d in strimzi if d["kind"] == "KafkaUser"]
    assert user["metadata"]["name"] == s.kafka_sasl_username
    assert user["spec"]["authentication"]["type"] == s.kafka_sasl_mechanism.lower()
    acls = user["spec"]["authorization"]["acls"]

    def ops(kind: str, name: str) -> set[str]:
        found: set[str] = set()
        for a in acls:
            r = a["resource"]
            if r["type"] == kind and (name == r["name"] if r["patternType"] == "literal"
                                      else name.startswith(r["name"])):
                found |= set(a["operations"])
        return found

    for topic in (s.topic_ingest, s.topic_verdicts, s.topic_feedback):
        assert {"Read", "Write", "Describe"} <= ops("topic", topic), topic
    assert {"Write", "Describe"} <= ops("topic", s.topic_audit)
    # Faust's only internal topic (no tables): its assignor topic, created by the workers
    assert {"Create", "Write", "Read"} <= ops("topic", f"{s.worker_id}-__assignor-__leader")
    for group in (s.worker_id, s.webhook_group):
        assert {"Read", "Describe"} <= ops("group", group), group
    assert not ops("topic", "some-other-topic")
    cluster = load_yaml(K8S / "strimzi" / "kustomization.yaml")["labels"][0]["pairs"]
    assert "strimzi.io/cluster" in cluster
