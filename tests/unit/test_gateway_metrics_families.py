"""A gateway's /metrics serves what gateways move, not the worker's and dispatcher's families
(UX audit 7: ``ratchet_worker_batch_duration_seconds_count 0`` on a gateway, beside the
worker's real one, when both are scraped)."""

from __future__ import annotations

from prometheus_client import generate_latest

import gateway.metrics  # noqa: F401  (registers the gateway's own families)
from gateway.routes_health import _FAMILIES
from ratchet.telemetry.metrics import (
    LUA_SECONDS,
    VERDICTS,
    WEBHOOK_DELIVERIES,
    WORKER_BATCH_SECONDS,
    not_on_gateways,
)


def test_the_gateway_serves_its_own_families_only() -> None:
    text = generate_latest(_FAMILIES).decode()  # type: ignore[arg-type]
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert "ratchet_http_requests_total" in families  # the gateway's own
    assert "ratchet_lua_call_duration_seconds" in families  # shared: its scripts
    assert "ratchet_policy_loads_total" in families
    for gone in ("ratchet_worker_batch_duration_seconds", "ratchet_verdicts_total",
                 "ratchet_webhook_deliveries_total", "ratchet_ingest_to_verdict_seconds"):
        assert gone not in families, gone
    skipped = not_on_gateways()
    assert {WORKER_BATCH_SECONDS._name, VERDICTS._name, WEBHOOK_DELIVERIES._name} <= skipped
    assert LUA_SECONDS._name not in skipped
