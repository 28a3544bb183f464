"""Every Kafka client Ratchet builds gets the same TLS/SASL settings (ratchet.kafka.security).

The clients are constructed, never started: aiokafka keeps its connection settings on the
client object, and Faust builds its clients from ``broker_credentials`` with
``credentials_to_aiokafka_auth``, which is compared here too.
"""

from __future__ import annotations

import ast
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from redis.asyncio import Redis

from gateway.publisher import Publisher
from models.errors import ConfigError
from ratchet.config.settings import Settings
from ratchet.kafka.audit_sink import make_producer
from ratchet.kafka.lag import LagMonitor
from ratchet.kafka.security import client_kwargs
from ratchet.kafka.topics import make_admin
from ratchet.sandbox.harness import EnvelopeProducer, VerdictCollector
from ratchet.webhooks.dispatch import WebhookDispatcher
from streams.app import create_app

BOOT = "broker-1.example.com:9096,broker-2.example.com:9096"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A self-signed CA and a client key pair (PEM), made by openssl for these tests."""
    d = tmp_path_factory.mktemp("pki")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=ratchet-test-ca", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem")],
        check=True, capture_output=True,
    )
    return {"ca": str(d / "ca.pem"), "cert": str(d / "ca.pem"), "key": str(d / "ca.key")}


def _settings(**kw: Any) -> Settings:
    return Settings(kafka_bootstrap=BOOT, **kw)


def _tls(ctx: ssl.SSLContext | None) -> tuple[bool, ssl.VerifyMode, int, str] | None:
    """Hostname check, verify mode, and how many / which CA certificates are trusted."""
    if ctx is None:
        return None
    serials = sorted(c["serialNumber"] for c in ctx.get_ca_certs())
    return ctx.check_hostname, ctx.verify_mode, len(serials), ",".join(serials)[:60]


def _fingerprint(client: Any) -> dict[str, Any]:
    """What an aiokafka client will use to connect (its AIOKafkaClient's settings)."""
    ctx: ssl.SSLContext | None = client._ssl_context
    return {
        "protocol": client._security_protocol,
        "mechanism": client._sasl_mechanism if client._security_protocol.startswith("SASL") else None,
        "user": client._sasl_plain_username,
        "password": client._sasl_plain_password,
        "tls": _tls(ctx),
    }


def _faust_fingerprint(settings: Settings) -> dict[str, Any]:
    app, _ = create_app(settings)
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    ctx = auth.get("ssl_context")
    return {
        "protocol": auth["security_protocol"],
        "mechanism": auth.get("sasl_mechanism"),
        "user": auth.get("sasl_plain_username"),
        "password": auth.get("sasl_plain_password"),
        "tls": _tls(ctx),
    }


async def _all_clients(settings: Settings) -> dict[str, dict[str, Any]]:
    """Fingerprint of every client, built the way the product builds it."""
    sec = client_kwargs(settings)
    assert settings.kafka_bootstrap
    publisher = Publisher(settings.kafka_bootstrap, linger_ms=2, send_timeout_s=5.0, security=sec)
    redis = Redis.from_url("redis://127.0.0.1:9/0")  # constructed only: never connects
    dispatcher = WebhookDispatcher(settings, redis)
    consumer = dispatcher.make_consumer()
    audit = make_producer(settings.kafka_bootstrap, sec)
    admin = make_admin(settings.kafka_bootstrap, sec)
    lag = LagMonitor(settings.kafka_bootstrap, "g", ["ingest"], reset="earliest", security=sec)
    demo_producer = EnvelopeProducer(settings.kafka_bootstrap, "ingest", security=sec)
    demo_collector = VerdictCollector(settings.kafka_bootstrap, "verdicts",
                                      security=sec).make_consumer()
    try:
        return {
            "gateway publisher": _fingerprint(publisher.producer.client),
            "webhook dispatcher": _fingerprint(consumer._client),
            "audit sink": _fingerprint(audit.client),
            "topic admin": _fingerprint(admin._client),
            "lag monitor admin": _fingerprint(lag.admin._client),
            "lag monitor consumer": _fingerprint(lag.consumer._client),
            "demo/harness producer": _fingerprint(demo_producer._producer.client),
            "demo verdict collector": _fingerprint(demo_collector._client),
            "faust workers": _faust_fingerprint(settings),
        }
    finally:
        await admin.close()
        await lag.admin.close()
        await redis.aclose()


CASES = {
    "plaintext": {},
    "tls": {"kafka_security_protocol": "SSL"},
    "sasl plain over tls": {"kafka_security_protocol": "SASL_SSL",
                            "kafka_sasl_username": "ratchet", "kafka_sasl_password": "pw-1"},
    "scram-sha-256 plaintext": {"kafka_security_protocol": "SASL_PLAINTEXT",
                                "kafka_sasl_mechanism": "SCRAM-SHA-256",
                                "kafka_sasl_username": "u", "kafka_sasl_password": "pw-2"},
    "scram-sha-512 over tls": {"kafka_security_protocol": "sasl_ssl",
                               "kafka_sasl_mechanism": "scram-sha-512",
                               "kafka_sasl_username": "msk", "kafka_sasl_password": "pw-3"},
}


@pytest.mark.parametrize("case", list(CASES))
async def test_every_client_gets_the_same_security(case: str) -> None:
    settings = _settings(**CASES[case])
    prints = await _all_clients(settings)
    first = next(iter(prints.values()))
    for name, got in prints.items():
        assert got == first, f"{name} connects differently: {got} vs {first}"
    expected_protocol = CASES[case].get("kafka_security_protocol", "PLAINTEXT").upper()
    assert first["protocol"] == expected_protocol
    if "SASL" in expected_protocol:
        assert first["mechanism"] == CASES[case].get("kafka_sasl_mechanism", "PLAIN").upper()
        assert first["password"] == CASES[case]["kafka_sasl_password"]
    assert (first["tls"] is not None) == expected_protocol.endswith("SSL")


async def test_custom_ca_and_client_certificate_reach_every_client(pki: dict[str, str]) -> None:
    settings = _settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                         kafka_sasl_username="u", kafka_sasl_password="p",
                         kafka_ssl_cafile=pki["ca"], kafka_ssl_certfile=pki["cert"],
                         kafka_ssl_keyfile=pki["key"])
    prints = await _all_clients(settings)
    for name, got in prints.items():
        check_hostname, verify_mode, n_cas, _ = got["tls"]
        assert check_hostname is True and verify_mode == ssl.CERT_REQUIRED, name
        assert n_cas == 1, f"{name} does not trust exactly the configured CA ({n_cas})"


def test_check_hostname_can_be_turned_off(pki: dict[str, str]) -> None:
    ctx = client_kwargs(_settings(kafka_security_protocol="SSL", kafka_ssl_cafile=pki["ca"],
                                  kafka_ssl_check_hostname=False))["ssl_context"]
    assert ctx.check_hostname is False and ctx.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"kafka_security_protocol": "SASL_TLS"}, "RATCHET_KAFKA_SECURITY_PROTOCOL"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "GSSAPI",
          "kafka_sasl_username": "u", "kafka_sasl_password": "p"}, "RATCHET_KAFKA_SASL_MECHANISM"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "u"},
         "RATCHET_KAFKA_SASL_PASSWORD"),
        ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_password": "p"},
         "RATCHET_KAFKA_SASL_USERNAME"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_certfile": "/c.pem"},
         "RATCHET_KAFKA_SSL_KEYFILE"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/nonexistent/ca.pem"},
         "RATCHET_KAFKA_SSL_CAFILE"),
    ],
)
def test_incomplete_settings_name_what_is_wrong(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        client_kwargs(_settings(**changes))


def test_password_is_a_secret_in_settings_repr() -> None:
    s = Settings.from_env({"RATCHET_KAFKA_SASL_PASSWORD": "hunter2-kafka"})
    assert s.kafka_sasl_password == "hunter2-kafka"
    assert "hunter2-kafka" not in repr(s)


def test_topic_replication_reaches_faust() -> None:
    app, _ = create_app(_settings(topic_replication_factor=3, topic_partitions=12))
    assert app.conf.topic_replication_factor == 3
    assert app.conf.topic_partitions == 12


def test_secret_files_are_paths(tmp_path: Path) -> None:
    """A CA path that exists but is not PEM is reported, not swallowed."""
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="RATCHET_KAFKA_SSL_CAFILE"):
        client_kwargs(_settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(bad)))


def test_no_product_module_builds_a_kafka_client_without_the_security_kwargs() -> None:
    """A new client constructed without ``**security`` would silently talk plaintext."""
    root = Path(__file__).resolve().parents[2]
    kinds = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}
    found: list[str] = []
    for package in ("ratchet", "gateway", "streams"):
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name in kinds:
                    where = f"{path.relative_to(root)}:{node.lineno}"
                    found.append(where)
                    assert any(k.arg is None for k in node.keywords), (
                        f"{where}: {name}(...) without **security kwargs")
    assert len(found) >= 7, found  # publisher, dispatcher, audit, admin, lag x2, harness
