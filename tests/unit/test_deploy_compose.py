"""deploy/compose.yaml and deploy/Dockerfile, checked without a Docker daemon: pinned images, only
real RATCHET_* settings (and values they accept), ports and names that agree with the settings,
the Prometheus scrape config and the Grafana provisioning.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest

from models.params import load_params
from ratchet.cli.main import build_parser
from ratchet.config.settings import Settings
from tests.unit.deploy_support import (
    DEPLOY,
    ROOT,
    env_of,
    interpolate,
    load_yaml,
    setting_env_names,
)

COMPOSE = DEPLOY / "compose.yaml"
RATCHET_SERVICES = ("gateway", "worker", "webhooks")
#: Every service running the ratchet image, and its subcommand.
COMMANDS = {"gateway": "gateway", "worker": "worker", "webhooks": "webhooks",
            "kafka-topics": "topics"}
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = load_yaml(COMPOSE)
    return doc


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    svcs: dict[str, dict[str, Any]] = compose["services"]
    return svcs


def settings_of(service: dict[str, Any]) -> Settings:
    return Settings.from_env(env_of(service))


def image_is_pinned(image: str) -> bool:
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def test_image_pin_rule() -> None:
    assert image_is_pinned("apache/kafka:3.9.0")
    assert image_is_pinned("localhost:5000/ratchet:0.1.0")
    assert not image_is_pinned("redis")
    assert not image_is_pinned("redis:latest")
    assert not image_is_pinned("localhost:5000/ratchet")


def test_every_image_is_pinned_by_tag(compose: dict[str, Any]) -> None:
    for name, svc in services(compose).items():
        assert "image" in svc, f"{name}: no image"
        assert image_is_pinned(svc["image"]), f"{name}: {svc['image']} is not pinned by tag"
        if "build" in svc:
            context = (COMPOSE.parent / svc["build"]["context"]).resolve()
            assert (context / svc["build"]["dockerfile"]).is_file(), name


def test_kafka_runs_in_kraft_mode_from_the_official_image(compose: dict[str, Any]) -> None:
    kafka = services(compose)["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = env_of(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "zookeeper" not in str(kafka).lower()
    assert services(compose)["redis"]["image"].startswith("redis:7")


def test_ratchet_env_names_are_real_settings(compose: dict[str, Any]) -> None:
    real = setting_env_names()
    for name, svc in services(compose).items():
        for var in env_of(svc):
            if var.startswith("RATCHET_"):
                assert var in real, f"{name}: {var} is not a field of ratchet/config/settings.py"


def test_ratchet_services_get_valid_settings(compose: dict[str, Any]) -> None:
    svcs = services(compose)
    for name in RATCHET_SERVICES:
        s = settings_of(svcs[name])  # raises ConfigError on a value the settings cannot cast
        assert s.redis_url and s.kafka_bootstrap, name
        redis_host = re.match(r"redis://([^:/]+):(\d+)", s.redis_url)
        assert redis_host and redis_host.group(1) in svcs, f"{name}: {s.redis_url}"
        kafka_advertised = env_of(svcs["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
        assert f"//{s.kafka_bootstrap}" in kafka_advertised, name
    gw = settings_of(svcs["gateway"])
    assert gw.gateway_host == "0.0.0.0"
    assert gw.gateway_port == Settings().gateway_port
    published = [str(p) for p in svcs["gateway"]["ports"]]
    assert any(interpolate(p).endswith(f":{gw.gateway_port}") for p in published)


def test_commands_are_ratchet_subcommands(compose: dict[str, Any]) -> None:
    parser = build_parser()
    for name, command in COMMANDS.items():
        args = parser.parse_args(services(compose)[name]["command"])
        assert args.command == command, name


def test_topic_job_creates_every_topic_with_the_settings_partitions(compose: dict[str, Any]) -> None:
    svcs = services(compose)
    job = svcs["kafka-topics"]
    args = build_parser().parse_args(job["command"])
    assert (args.command, args.topics_command) == ("topics", "create")
    topics = settings_of(job)
    for name in RATCHET_SERVICES:
        s = settings_of(svcs[name])
        assert (s.topic_partitions, s.topic_replication_factor, s.kafka_bootstrap) == (
            topics.topic_partitions, topics.topic_replication_factor, topics.kafka_bootstrap)
        deps = svcs[name]["depends_on"]
        assert deps["kafka-topics"]["condition"] == "service_completed_successfully"
    assert svcs["kafka-topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"

def test_depends_on_and_mounts_exist(compose: dict[str, Any]) -> None:
    svcs = services(compose)
    for name, svc in svcs.items():
        for dep in svc.get("depends_on", []):
            assert dep in svcs, f"{name} depends on unknown {dep}"
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source} missing"
            else:
                assert source in compose["volumes"], f"{name}: volume {source} not declared"


def test_workers_share_one_consumer_group(compose: dict[str, Any]) -> None:
    worker = services(compose)["worker"]
    assert "RATCHET_WORKER_ID" in env_of(worker)
    assert "container_name" not in worker  # replicas need generated names


def test_prometheus_scrapes_gateways_and_workers_on_their_settings_ports(
    compose: dict[str, Any],
) -> None:
    svcs = services(compose)
    prom = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    expected = {
        "ratchet-gateway": ("gateway", settings_of(svcs["gateway"]).gateway_port),
        "ratchet-worker": ("worker", settings_of(svcs["worker"]).worker_web_port),
        "ratchet-webhooks": ("webhooks", settings_of(svcs["webhooks"]).webhook_metrics_port),
    }
    for job, (service, port) in expected.items():
        (sd,) = jobs[job]["dns_sd_configs"]
        assert sd["names"] == [service] and sd["port"] == port, job
        assert jobs[job]["metrics_path"] == "/metrics"
    assert prom["rule_files"] == ["rules.yaml", "rules_kafka.yaml"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in svcs["prometheus"]["volumes"]}
    for rules in prom["rule_files"]:
        assert mounts[f"/etc/prometheus/{rules}"] == f"./prometheus/{rules}"
    assert mounts["/etc/prometheus/prometheus.yml"] == "./prometheus/prometheus.yml"


def test_grafana_provisioning_matches_the_mounts(compose: dict[str, Any]) -> None:
    grafana = services(compose)["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "ratchet.yaml")
    assert provider["providers"][0]["options"]["path"] == mounts["./grafana/dashboards"]
    ds = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml")
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"


def test_dockerfile_builds_every_package_and_runs_the_ratchet_command() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    images = re.findall(r"^ARG PYTHON_IMAGE=(\S+)", text, re.MULTILINE)
    assert images and all(image_is_pinned(i) for i in images)
    assert re.findall(r"^FROM (\S+)", text, re.MULTILINE) == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    copied = set(re.findall(r"^COPY (?!--)(\S+)", text, re.MULTILINE))
    for path in copied:
        assert (ROOT / path).exists(), f"COPY {path}: no such path"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.split(".")[0] for p in include}
    assert "benchmarks" not in packages, "the image and the wheel do not ship benchmarks/"
    assert packages <= copied, f"packages not copied into the image: {packages - copied}"
    assert pyproject["project"]["readme"] in " ".join(re.findall(r"^COPY (.*)$", text, re.MULTILINE))
    assert 'ENTRYPOINT ["ratchet"]' in text
    assert pyproject["project"]["scripts"]["ratchet"] == "ratchet.cli.main:main"
    assert re.search(r"^USER \d+$", text, re.MULTILINE), "run as a numeric non-root user"
    assert f"EXPOSE {Settings().gateway_port} {Settings().worker_web_port}" in text


def test_the_webhook_dispatcher_runs_with_its_own_group_and_reachable_metrics(
    compose: dict[str, Any],
) -> None:
    svcs = services(compose)
    hooks = settings_of(svcs["webhooks"])
    assert hooks.webhook_group != settings_of(svcs["worker"]).worker_id
    assert hooks.metrics_host == "0.0.0.0"  # the dispatcher's metrics server binds this address
    assert settings_of(svcs["worker"]).metrics_host == "0.0.0.0"  # and the worker's
    assert svcs["webhooks"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "webhooks" in svcs["prometheus"]["depends_on"]


def test_redis_runs_with_aof(compose: dict[str, Any]) -> None:
    command = services(compose)["redis"]["command"]
    flags = dict(zip(command[1::2], command[2::2], strict=False))
    assert flags["--appendonly"] == "yes"
    assert flags["--appendfsync"] in ("always", "everysec")
    assert flags["--maxmemory-policy"] == "noeviction"
    assert any(v.endswith(":/data") for v in services(compose)["redis"]["volumes"])


def test_workers_mount_the_engine_config_they_are_pointed_at(compose: dict[str, Any]) -> None:
    worker = services(compose)["worker"]
    path = settings_of(worker).engine_config
    assert path
    mounts = {v.split(":")[1]: v.split(":")[0] for v in worker["volumes"]}
    source = COMPOSE.parent / mounts[path]
    load_params(source.read_text())  # raises ConfigError on an invalid engine file
