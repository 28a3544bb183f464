"""The image's entrypoints with the compose settings, against the real Redis and broker fixtures:
``ratchet gateway`` answers the probes the manifests use, and both processes serve, on the ports
the scrape configs use, every metric family the alert rules and dashboards read.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid

from prometheus_client.parser import text_string_to_metric_families

import gateway.metrics
import ratchet.telemetry.metrics
from ratchet.sandbox.process import FAST_GROUP_ENV, ChildProcess, worker_env
from ratchet.sandbox.servers import free_port
from tests.unit.deploy_support import (
    DEPLOY,
    dashboard_exprs,
    env_of,
    load_yaml,
    metric_families,
    rule_exprs,
    scan_promql,
)

FAMILY_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def wait_for(url: str, proc: ChildProcess, timeout_s: float = 60.0) -> bytes:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status, body = http_get(url)
            if status == 200:
                return body
        except OSError:
            pass
        assert proc.running, f"{proc.name} exited:\n{proc.log()[-3000:]}"
        assert time.monotonic() < deadline, f"{url} not ready:\n{proc.log()[-3000:]}"
        time.sleep(0.2)


def families_read_by_deploy() -> set[str]:
    names: set[str] = set()
    for _, expr in rule_exprs() + dashboard_exprs():
        for sample in scan_promql(expr).metrics - {"up"}:
            for suffix in FAMILY_SUFFIXES:
                if sample.endswith(suffix):
                    sample = sample.removesuffix(suffix)
                    break
            names.add(sample)
    return names


def exposed(body: bytes) -> set[str]:
    return {f.name for f in text_string_to_metric_families(body.decode())}


def module_families(module: object) -> set[str]:
    return {
        m.describe()[0].name for m in vars(module).values()
        if hasattr(m, "describe") and m.__class__.__module__.startswith("prometheus_client")
    }


def test_entrypoints_with_compose_settings_serve_probes_and_metrics(
    redis_url: str, kafka_bootstrap: str, key_prefix: str
) -> None:
    services = load_yaml(DEPLOY / "compose.yaml")["services"]
    suffix = uuid.uuid4().hex[:8]
    gw_port, wk_port = free_port(), free_port()
    # The compose environment, with the fixtures' servers, free ports and fresh topic names.
    local = worker_env(
        redis_url=redis_url, kafka_bootstrap=kafka_bootstrap, key_prefix=key_prefix,
        topic_ingest=f"ingest-{suffix}", topic_verdicts=f"verdicts-{suffix}",
        topic_feedback=f"feedback-{suffix}", topic_partitions=2,
    )
    local.update(FAST_GROUP_ENV)
    ours = {k: v for k, v in local.items() if k.startswith("RATCHET_")}
    gw_env = {**local, **env_of(services["gateway"]), **ours}
    gw_env.update(RATCHET_GATEWAY_HOST="127.0.0.1", RATCHET_GATEWAY_PORT=str(gw_port))
    wk_env = {**local, **env_of(services["worker"]), **ours}
    wk_env.update(RATCHET_WORKER_WEB_PORT=str(wk_port), RATCHET_WORKER_ID=f"deploy-{suffix}")
    # the compose volumes, as host paths: the engine TOML the worker is given
    for volume in services["worker"].get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if target == wk_env.get("RATCHET_ENGINE_CONFIG"):
            wk_env["RATCHET_ENGINE_CONFIG"] = str(DEPLOY / source)

    gw_cmd = tuple(services["gateway"]["command"])
    wk_cmd = tuple(services["worker"]["command"])
    gw_proc = ChildProcess(gw_env, name="gateway", argv=("-m", "ratchet", *gw_cmd)).start()
    wk_proc = ChildProcess(wk_env, name="worker", argv=("-m", "ratchet", *wk_cmd)).start()
    try:
        base = f"http://127.0.0.1:{gw_port}"
        wait_for(base + "/readyz", gw_proc)
        assert http_get(base + "/healthz")[0] == 200
        gw_metrics = exposed(http_get(base + "/metrics")[1])
        wk_metrics = exposed(wait_for(f"http://127.0.0.1:{wk_port}/metrics", wk_proc))
    finally:
        wk_proc.stop()
        gw_proc.stop()
    assert not wk_proc.running and not gw_proc.running

    wanted = families_read_by_deploy()
    assert wanted <= set(metric_families())
    gw_wanted = wanted & module_families(gateway.metrics)
    wk_wanted = wanted & module_families(ratchet.telemetry.metrics)
    assert gw_wanted and wk_wanted
    assert gw_wanted <= gw_metrics, f"gateway /metrics lacks {sorted(gw_wanted - gw_metrics)}"
    assert wk_wanted <= wk_metrics, f"worker /metrics lacks {sorted(wk_wanted - wk_metrics)}"
