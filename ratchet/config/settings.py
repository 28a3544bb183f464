"""The one settings object: every knob, read once from ``RATCHET_*`` environment variables.

Nothing else in the code base reads ``os.environ``. Each field documents its default; a value that
cannot be cast raises :class:`models.errors.ConfigError` naming the variable, and so does a
``RATCHET_*`` variable that is no setting (a misspelt name would otherwise leave the default in
force without a word), with the closest setting's name.

>>> s = Settings.from_env({"RATCHET_GATEWAY_PORT": "9000"})
>>> s.gateway_port
9000
>>> Settings.from_env({}).redis_url is None
True
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from models.errors import ConfigError
from models.guardrails.budget import (
    SCAN_SHARE,
    SCAN_SHARE_BURST_S,
    SCAN_STEPS_PER_BATCH,
    SCAN_STEPS_PER_EVENT,
)
from models.ratelimit import SPREAD_BURST_S

__all__ = [
    "PREFIX",
    "Secret",
    "Settings",
    "get_settings",
    "redacted_url",
    "setting_names",
    "unknown_variables",
    "variable_problems",
]

PREFIX = "RATCHET_"


class Secret(str):
    """A string whose ``repr`` never shows its value (keys and secrets in settings)."""

    def __repr__(self) -> str:
        return "Secret('**********')"


@dataclass(frozen=True, slots=True)
class Settings:
    # --- services -------------------------------------------------------------------------
    #: Redis URL (``redis://host:port/db``). Required by the gateway, the worker and the admin
    #: commands; unset → only ``demo``, ``replay`` and ``tune`` run (on a redis-server they start).
    redis_url: str | None = None
    #: Treat ``redis_url`` (and ``ratelimit_redis_url``) as a Redis Cluster seed node: every
    #: process and command then uses the cluster client.
    redis_cluster: bool = False
    #: Kafka bootstrap servers (``host:port[,host:port]``); unset → the demo starts Tansu.
    kafka_bootstrap: str | None = None
    #: Prefix of every Redis key Ratchet writes (a namespace; replay uses its own).
    key_prefix: str = "rt"
    #: Topic names.
    topic_ingest: str = "ingest"
    topic_verdicts: str = "verdicts"
    topic_feedback: str = "feedback"
    topic_audit: str = "audit"
    #: Partitions used when Ratchet creates its topics.
    topic_partitions: int = 8
    #: Replication factor of the topics Ratchet creates (3 on a production cluster; 1 fits a
    #: single broker such as the demo's).
    topic_replication_factor: int = 1

    # --- Kafka security (every producer, consumer and admin client; docs/deploy.md) ----------
    #: ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``.
    kafka_security_protocol: str = "PLAINTEXT"
    #: SASL mechanism with a ``SASL_*`` protocol: ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``.
    kafka_sasl_mechanism: str = "PLAIN"
    #: SASL user name and password (required with a ``SASL_*`` protocol).
    kafka_sasl_username: str | None = None
    kafka_sasl_password: Secret | None = None
    #: CA bundle (PEM) that signs the brokers' certificates (unset: the system's CAs).
    kafka_ssl_cafile: str | None = None
    #: Client certificate and key (PEM) for mutual TLS, and the key's password.
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    kafka_ssl_key_password: Secret | None = None
    #: Check that a broker's certificate names the host connected to (off only for tests).
    kafka_ssl_check_hostname: bool = True

    # --- engine state bounds ----------------------------------------------------------------
    #: Idle TTL of a run's state (last node, dedup answers), seconds.
    run_ttl_s: int = 86_400
    #: Idle TTL of a whole chain (counts, window, mode), seconds. Refreshed when a tenth of it
    #: (at most an hour) has passed since the last refresh, so a chain expires between that much
    #: before the TTL and the TTL after its last event.
    chain_ttl_s: int = 30 * 86_400
    #: Engine tuning file (TOML, ``[engine]`` table); overrides the built-in defaults.
    engine_config: str | None = None
    #: Node ids include service and coarse action (docs/design.md §3 rich Markov mode).
    rich_markov: bool = False

    # --- the `ratchet approvals` command (an HTTP client of the gateway) ---------------------
    #: Gateway that ``ratchet approvals`` talks to (``http(s)://host[:port]``).
    gateway_url: str = "http://127.0.0.1:8080"
    #: Admin API key ``ratchet approvals`` authenticates with; its decisions are audited under
    #: this key's name (``ratchet keys create --role admin`` prints one).
    admin_key: Secret | None = None

    # --- gateway ------------------------------------------------------------------------------
    #: Address and port the gateway listens on (``0.0.0.0`` in containers).
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    #: Run the gateway on uvloop (libuv) instead of asyncio's default loop: less CPU per request
    #: and per Redis/Kafka round trip (measured in docs/operations.md). Off: the standard loop.
    gateway_uvloop: bool = True
    #: Generation-0 threshold of the gateway's garbage collector after start-up (what start-up
    #: created is frozen first); CPython's default, 700, collects several times per bulk
    #: request. 0 leaves the collector as it is.
    gateway_gc_gen0: int = 50_000
    #: Longest ``wait_ms`` a caller may ask for on ``POST /v1/events``.
    max_wait_ms: int = 5_000
    #: How long verdicts stay available for ``GET /v1/verdicts/{id}``, approvals and explain,
    #: seconds (``allow`` verdicts: see ``verdict_allow_ttl_s``). Workers and gateways must agree.
    verdict_ttl_s: int = 86_400
    #: How long ``allow`` verdicts stay available for ``GET /v1/verdicts/{id}``, seconds (at most
    #: ``verdict_ttl_s``): the time a caller may still look one up. Nothing needs them after that
    #: (no approval), the ``verdicts`` topic keeps every verdict, and they are ~98 % of verdicts,
    #: so this sets most of Redis's memory per event. Workers and gateways must agree.
    verdict_allow_ttl_s: int = 3_600
    #: Largest accepted request body, bytes.
    max_body_bytes: int = 4 * 1024 * 1024
    #: Largest body of an administrative call (approvals, API keys, agents, webhooks, signup);
    #: larger is 413 before it is read. Their JSON is a few hundred bytes: the ingest body limit
    #: let a 3.8 MB approval be read and parsed before its size was charged (round 10).
    max_admin_body_bytes: int = 65_536
    #: A connection must send a complete request head within this long of opening, or of its
    #: previous answer, else it is closed: bounds idle keep-alive connections and heads sent a
    #: byte at a time (slowloris), seconds.
    gateway_head_timeout_s: float = 10.0
    #: Longest the gateway waits for a request body to arrive in full, seconds; a slower body is
    #: answered 408 and its connection closed (4 MB within 30 s is ~1.1 Mbit/s).
    gateway_body_timeout_s: float = 30.0
    #: Open connections one client address (IPv6: its /64) may hold on one gateway process;
    #: beyond it a new connection is answered 429 and closed. 0 = no cap (behind a load
    #: balancer every client has the balancer's address: cap clients there instead).
    gateway_max_connections_per_ip: int = 256
    #: Requests of one project a gateway process holds open at once: verdict long polls
    #: (``GET /v1/verdicts/{id}?wait_ms=``, which re-read Redis while they wait) and decision
    #: streams. Beyond it a long poll answers at once, without waiting, and a new decision
    #: stream is 429; so no tenant ties up the gateway's Redis reads and connections. 0 = no cap.
    max_held_requests_per_project: int = 64
    #: API calls (reads and configuration calls; not ingest, long polls or streams) of one
    #: project a gateway process serves at once; beyond it 429 with Retry-After 1, before any
    #: work. Their ``api`` tokens are charged by the size of the answer once it is built, so this
    #: bounds what a burst can start before the bucket is seen spent. 0 = no cap.
    max_api_calls_per_project: int = 16
    #: Chains (agent × service pairs, a critical-priority chain counted apart) one project may
    #: keep at once; an event that would start one more is 422 naming ``service``. A chain
    #: leaves the count when it expires (``chain_ttl_s`` idle). 0 = no cap.
    max_chains_per_project: int = 10_000
    #: Agents one project may register; beyond it ``POST /v1/agents`` (and ``ratchet agents
    #: create``) is 409. Agents are kept until deleted. 0 = no cap.
    max_agents_per_project: int = 10_000
    #: Allowed clock skew for signed events, seconds.
    signature_window_s: int = 300
    #: Deprecated v1 event signatures (seven fields signed) are accepted until 00:00 UTC of this
    #: date (YYYY-MM-DD); empty, the default: only v2 (every field signed) is accepted.
    signature_v1_until: str = ""
    #: Longest the gateway waits for Kafka to take a message before answering 503, seconds.
    kafka_send_timeout_s: float = 5.0
    #: Gateway producer ``linger_ms``: how long it lets messages gather into one request.
    kafka_linger_ms: int = 2
    #: Wire version of the ingest envelopes gateways write: 2, compact MessagePack (≈ half the
    #: bytes of 1, JSON). Workers of this release read both; set 1 while workers of an older
    #: release (JSON only) still consume the ingest topic, e.g. when gateways roll out first.
    ingest_wire_version: int = 2
    #: Redis connect and command timeout of every process, seconds (a down Redis fails fast: 503
    #: at the gateway, a retried batch at the worker, not a hang). On a single server a command
    #: fails once its connection made no progress (nothing sent, no reply read) for this long.
    redis_timeout_s: float = 5.0
    #: Most connections one process opens to one Redis server (to each node of a Redis
    #: Cluster). On a single server a command that finds them all in use waits for one (up to
    #: ``redis_timeout_s``) instead of failing; a cluster client cannot wait, so there the
    #: command fails (503 with Retry-After at the gateway). redis-py's own default, 100, was
    #: exhausted by one gateway at 200 single events/s on a loaded machine.
    redis_max_connections: int = 1000
    #: Most events accepted in one ``POST /v1/events:batch``.
    max_batch_events: int = 1000
    #: Largest guardrail policy accepted by ``PUT /v1/policy``, bytes.
    max_policy_bytes: int = 256 * 1024

    # --- guardrails ------------------------------------------------------------------------------
    #: How often an engine re-checks a project's stored policy version, seconds: a replaced
    #: policy applies to batches decided at most this long (+ one batch) after the PUT.
    policy_refresh_s: float = 1.0
    #: Run guardrails beside the Markov chain (off: the chain alone; for diagnosis only).
    guardrails: bool = True
    #: Most payload scanning (pattern rules, PII detectors) one event may cost, in steps: bytes
    #: scanned × a rule's RE2 program size, 50 per character for PII (~14 ns a step at worst).
    #: What the budget does not cover fails closed (reasons ``pattern.scan_limit``,
    #: ``pii.scan_limit`` with the strictest action skipped). ~0.25 s of work at worst.
    guard_scan_steps_per_event: int = SCAN_STEPS_PER_EVENT
    #: Most payload scanning one project's events may cost in one worker batch, steps: bounds how
    #: long one tenant holds the shared worker (its later events fail closed).
    guard_scan_steps_per_batch: int = SCAN_STEPS_PER_BATCH
    #: Seconds of payload scanning per second on one worker that the busy projects share while
    #: others are active on it, split among the busy ones (a share of a core, measured, in
    #: (0, 1]): a project past its part gets no scan budget until it refills, so its events'
    #: scans fail closed while other tenants' run on. A project alone is never held back.
    guard_scan_share: float = SCAN_SHARE
    #: Most scanning time one project may save up on one worker, seconds (in (0, 60]); a
    #: project that spent more than half of it is busy.
    guard_scan_share_burst_s: float = SCAN_SHARE_BURST_S

    # --- rate limits (docs/design.md §5; docs/security.md) -------------------------------------
    #: Tiers as ``name:ingest_per_min:register_per_min`` separated by commas. A bucket holds one
    #: minute's worth of tokens and refills continuously.
    rate_limit_tiers: str = "free:120:20,standard:6000:300,high_volume:100000:1000"
    #: Tier of projects that have none stored (and of self-serve signups).
    default_tier: str = "free"
    #: Seconds of a tier's ingest rate a project may spend at once on the envelopes of batches
    #: spread over many agents, in (0, 60]: each agent of a batch after the first takes 4
    #: tokens from the ingest bucket and from a *spread* bucket this many seconds deep (60: no
    #: tighter than the ingest bucket). See docs/security.md, "Rate limits".
    spread_burst_s: float = SPREAD_BURST_S
    #: Redis for rate-limit buckets (unset → ``redis_url``). Ingest limits fail open when it is
    #: unavailable; registration limits fail closed.
    ratelimit_redis_url: str | None = None
    #: How long a gateway caches a project's tier, seconds (tier changes apply within this).
    tier_cache_s: float = 10.0

    # --- self-serve signup ----------------------------------------------------------------------
    #: Kill switch: ``RATCHET_SIGNUP_DISABLED=1`` turns both signup endpoints off (503).
    signup_disabled: bool = False
    #: Signup tokens per client IP per sliding hour.
    signup_per_ip_hour: int = 5
    #: Signup tokens per client IP per sliding 24 h.
    signup_per_ip_day: int = 10
    #: Signup tokens issued per UTC day, all clients together.
    signup_daily_cap: int = 500
    #: How long an unredeemed signup token stays valid, seconds.
    signup_token_ttl_s: int = 3_600
    #: Comma-separated CIDRs of reverse proxies whose ``X-Forwarded-For`` is believed (empty: the
    #: client IP is always the socket peer, and ``X-Forwarded-For`` is ignored).
    trusted_proxies: str = ""

    # --- credential brute-force protection ---------------------------------------------------
    #: Failed authentications (wrong keys on any route, bad signup tokens) per client IP within
    #: the window before every route that takes a key answers that address 429.
    auth_failure_limit: int = 10
    #: The window of ``auth_failure_limit``, seconds (counted from the first failure).
    auth_failure_window_s: int = 900
    #: How long the first answer to an ``Idempotency-Key`` is kept for retries, seconds.
    idempotency_ttl_s: int = 86_400
    #: Lease of an unfinished request's ``Idempotency-Key``, seconds: renewed every third of it
    #: while the request runs, so a crashed gateway's reservation frees itself within this.
    idempotency_lease_s: int = 6
    #: How long an event id stays bound to the first body it was accepted with, seconds: at
    #: least this, less than this plus 4 h (bindings live in 4-hour buckets; ≈ 80 bytes of Redis
    #: per event; 0 turns the check off). Every gateway must run with the same window.
    event_id_window_s: int = 86_400
    #: Deepest nesting of an event's ``payload`` (objects and arrays; docs/security.md, "Input
    #: limits"); deeper is a 400 naming the field.
    max_payload_depth: int = 16
    #: Most keys in an event's ``payload``, counted at every depth.
    max_payload_keys: int = 5_000
    #: Most JSON values in an event's ``payload``, counting every member value and array element
    #: at every depth; more is a 400 before the signature is checked (docs/security.md, "Input
    #: limits"). Also the cap of an event's unknown fields together.
    max_payload_values: int = 10_000
    #: Most JSON values of all the events of one ``POST /v1/events:batch`` together; the event
    #: that overdraws it and the ones after it are rejected.
    max_batch_values: int = 200_000
    #: Largest ``metadata`` of an event, bytes of its JSON.
    max_metadata_bytes: int = 10 * 1024
    #: Most keys in an event's ``metadata``, counted at every depth.
    max_metadata_keys: int = 50
    #: Deepest nesting of an event's ``metadata``.
    max_metadata_depth: int = 3

    # --- workers --------------------------------------------------------------------------------
    #: Faust app id of the workers (= their Kafka consumer group).
    worker_id: str = "ratchet-worker"
    #: Port of a worker's ``/metrics`` (0 = off).
    worker_web_port: int = 6066
    #: Address the worker's and the webhook dispatcher's ``/metrics`` listen on (``0.0.0.0`` in
    #: containers, where Prometheus scrapes from another host).
    metrics_host: str = "127.0.0.1"
    #: Longest a worker's Kafka fetch waits for data, ms (Faust's fixed 1500 ms adds ~0.75 s per
    #: single event on Tansu; lower = lower latency, more idle polling). See docs/operations.md.
    worker_fetch_wait_ms: int = 10
    #: Batches of at most this many events run ``observe.lua`` dry beside the guardrail state,
    #: so a single event costs a worker two Redis round trips instead of three, for a second
    #: run of the script (0 = off). See docs/operations.md.
    worker_dry_observe_events: int = 16
    #: Batches one worker decides at once, each of its own agents (an agent's events always go
    #: through the same lane, in order): while one waits for Redis or Kafka another is decided,
    #: so the worker's Python overlaps Redis's scripts (1 = one batch at a time). See
    #: docs/operations.md.
    worker_lanes: int = 4
    #: Generation-0 threshold of a worker's garbage collector after start-up (which is frozen
    #: out of every collection); 0 = CPython's defaults. See docs/operations.md.
    worker_gc_gen0: int = 50_000
    #: Run the worker on uvloop (less CPU per Redis and Kafka round trip than asyncio's loop).
    worker_uvloop: bool = True
    #: Longest a worker may take to stop once SIGTERM or SIGINT arrived, seconds: it finishes its
    #: batch, commits and leaves its group in about a second, but with the brokers gone Faust
    #: waits 60 s on its consumer; past this it exits (code 3) and its uncommitted batches are
    #: redelivered to the next owner. 0 = wait as long as Faust does.
    worker_shutdown_timeout_s: float = 20.0
    #: Faust consumer-group timings (short values are for tests and the demo; see docs).
    broker_session_timeout_s: float = 60.0
    broker_heartbeat_interval_s: float = 3.0
    broker_rebalance_timeout_s: float = 60.0
    #: How often workers and webhook dispatchers measure their group's consumer lag (the
    #: ``ratchet_consumer_lag_messages`` gauge), seconds (0 = not measured).
    consumer_lag_interval_s: float = 15.0
    #: Opt-in per-project verdict counts (``ratchet_project_verdicts_total{project, action}``):
    #: at most this many projects get their own ``project`` label value — the busiest ones this
    #: worker has seen, chosen once a minute, never reassigned — and every other project counts
    #: as ``other``; so at most N + 1 values per worker. 0 = the metric is not exported.
    metrics_project_label_limit: int = 0

    # --- audit log (docs/security.md "Audit log") --------------------------------------------------
    #: Days audit entries are kept; older ones are pruned on append (0 = keep forever).
    audit_retention_days: int = 365
    #: Audit entries kept per project at most, the oldest pruned first on append (0 = no cap): a
    #: project changing its configuration in a loop cannot fill the shared Redis (≈ 0.8 KB an
    #: entry: 100,000 ≈ 80 MB).
    audit_max_entries: int = 100_000
    #: Attempts to publish an entry to the ``audit`` topic after Redis stored it.
    audit_publish_attempts: int = 3

    # --- webhooks (docs/security.md "Webhooks") ------------------------------------------------------
    #: Allow webhook URLs on loopback addresses. DEVELOPMENT/TESTS ONLY; off in production.
    webhooks_allow_loopback: bool = False
    #: Timeout of one delivery attempt (connect + response), seconds.
    webhook_timeout_s: float = 5.0
    #: Delivery attempts per event and webhook before the delivery is dropped (counted).
    webhook_max_attempts: int = 6
    #: First retry delay of a webhook delivery, seconds; doubles per attempt, with full jitter.
    webhook_backoff_base_s: float = 1.0
    #: Longest retry delay of a webhook delivery, seconds (the doubling's cap).
    webhook_backoff_max_s: float = 60.0
    #: Circuit breaker per destination (scheme://host:port): this many failures ...
    webhook_breaker_failures: int = 10
    #: ... within this many seconds open it ...
    webhook_breaker_window_s: float = 60.0
    #: ... for this long; then one half-open trial decides (success closes, failure reopens).
    webhook_breaker_open_s: float = 30.0
    #: Webhooks one project may register.
    webhooks_per_project: int = 10
    #: Deliveries in flight at once per dispatcher process.
    webhook_concurrency: int = 50
    #: ... of which one project may hold at most this many: its slow receivers wait on its own
    #: share, never on the others' (round 11 of the outside attack runs).
    webhook_concurrency_per_project: int = 10
    #: Deliveries one project may have waiting in a dispatcher (delivering or retrying); past
    #: it, its new deliveries are dropped and counted (``result="backlog_full"``) — a project
    #: whose receivers cannot keep up does not hold the others' deliveries back.
    webhook_backlog_per_project: int = 1000
    #: Kafka consumer group of the webhook dispatcher (its own: it reads ``verdicts`` again).
    webhook_group: str = "ratchet-webhooks"
    #: Port of the dispatcher's Prometheus ``/metrics`` (0 = not served).
    webhook_metrics_port: int = 6067

    # --- logging ----------------------------------------------------------------------------------
    #: Log level of every process (DEBUG, INFO, WARNING, ERROR); ``ratchet -v`` forces DEBUG.
    log_level: str = "INFO"
    #: Log line format: ``json`` (one JSON object per line), ``text`` (human) or ``auto`` (text
    #: when stderr is a terminal, else JSON). Fields: docs/operations.md "Logs".
    log_format: str = "auto"
    #: Kafka topic that also receives every decision-log line (non-allow verdicts and mode
    #: changes) as JSON, keyed by project; empty = logged only.
    topic_decisions: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default: the process environment)."""
        env = os.environ if environ is None else environ
        unknown = unknown_variables(env)
        if unknown:
            raise ConfigError("; ".join(unknown))
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = PREFIX + f.name.upper()
            if name in env:
                values[f.name] = _cast(name, env[name], f.type)
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


#: ``RATCHET_*`` variables that are not settings: the test suite's (``RATCHET_TEST_*``), the client
#: SDK tests' (``RATCHET_SDK_*``, ``RATCHET_PYTHON``) and the scripts' virtualenv path. Any other
#: unknown ``RATCHET_*`` name is refused (a typo would otherwise run silently on the default).
NOT_SETTINGS_PREFIX: tuple[str, ...] = ("RATCHET_TEST_", "RATCHET_SDK_")
NOT_SETTINGS: frozenset[str] = frozenset({"RATCHET_VENV", "RATCHET_PYTHON"})


def setting_names() -> dict[str, dataclasses.Field[Any]]:
    """``RATCHET_<FIELD>`` → its field, for every setting."""
    return {PREFIX + f.name.upper(): f for f in dataclasses.fields(Settings)}


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One message per ``RATCHET_*`` variable that is no setting, with the closest name.

    >>> for line in unknown_variables({"RATCHET_REDIS_ULR": "redis://x", "RATCHET_TEST_X": "1"}):
    ...     print(line)
    RATCHET_REDIS_ULR is not a Ratchet setting (did you mean 'RATCHET_REDIS_URL'?); fix or unset it
    """
    known = setting_names()
    out = []
    for name in sorted(environ):
        if (not name.startswith(PREFIX) or name in known or name in NOT_SETTINGS
                or name.startswith(NOT_SETTINGS_PREFIX)):
            continue
        # compared without the shared prefix, which would make every name look close
        close = difflib.get_close_matches(name[len(PREFIX):], [k[len(PREFIX):] for k in known], n=1)
        hint = f" (did you mean {PREFIX + close[0]!r}?)" if close else ""
        out.append(f"{name} is not a Ratchet setting{hint}; fix or unset it")
    return out


def variable_problems(environ: Mapping[str, str]) -> list[str]:
    """Every problem of the ``RATCHET_*`` variables: unknown names and values that do not cast."""
    problems = unknown_variables(environ)
    for name, f in setting_names().items():
        if name in environ:
            try:
                _cast(name, environ[name], f.type)
            except ConfigError as exc:
                problems.append(str(exc))
    return problems


def redacted_url(url: str) -> str:
    """``url`` without its user and password, for messages and logs.

    >>> redacted_url("redis://ops:hunter2@10.0.0.5:6379/0")
    'redis://…@10.0.0.5:6379/0'
    """
    return re.sub(r"//[^/@]*@", "//…@", url)


def _redis_url(raw: str) -> str | None:
    """Why ``raw`` is not a Redis URL redis-py can connect to, or None (a URL without a host,
    ``redis://``, is localhost to redis-py)."""
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        return f"is not a Redis URL ({exc})"
    if parts.scheme not in ("redis", "rediss", "unix"):
        return ("is not a Redis URL: it must start with redis:// (rediss:// for TLS, unix:// for "
                "a socket), e.g. redis://127.0.0.1:6379/0")
    if parts.scheme == "unix":
        return None if parts.path else "names no socket path (unix:///path/to/redis.sock)"
    if port == 0:
        return "has port 0"
    return None


def _host_ports(raw: str) -> str | None:
    """Why ``raw`` is not a ``host[:port][,host[:port]]`` list (port 9092 when left out, as
    Kafka clients read it), or None."""
    for item in (i.strip() for i in raw.split(",")):
        if "://" in item or "/" in item:
            return (f"is not a list of host:port: {item!r} has a scheme or path "
                    "(write kafka-0:9092,kafka-1:9092)")
        if item.startswith("["):  # [IPv6]:port or [IPv6]
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":") if rest else "9092"
        elif item.count(":") == 1:
            host, _, port = item.partition(":")
        else:  # a name, or a bare IPv6 address without a port
            host, port = item, "9092"
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            return (f"is not a list of host:port (e.g. kafka-0:9092,kafka-1:9092): "
                    f"{item!r} is not host:port")
    return None


def _http_url(raw: str) -> str | None:
    """Why ``raw`` is not an ``http(s)://host[:port]`` URL, or None."""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "is not an http(s)://host[:port] URL (e.g. http://127.0.0.1:8080)"
    return None


#: Settings whose text has a format, checked where they are read: what is wrong, or None.
_FORMATS: dict[str, Callable[[str], str | None]] = {
    PREFIX + "REDIS_URL": _redis_url,
    PREFIX + "RATELIMIT_REDIS_URL": _redis_url,
    PREFIX + "KAFKA_BOOTSTRAP": _host_ports,
    PREFIX + "GATEWAY_URL": _http_url,
}


def _cast(name: str, raw: str, annotation: object) -> object:
    check = _FORMATS.get(name)
    problem = check(raw) if check is not None and raw != "" else None
    if problem:
        raise ConfigError(f"{name}={redacted_url(raw)!r} {problem}; fix or unset it")
    text = str(annotation)
    try:
        if "bool" in text:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if text.startswith("int"):
            return int(raw)
        if text.startswith("float"):
            return float(raw)
        if "Secret" in text:
            return Secret(raw) if raw else None
        if "None" in text and raw == "":
            return None
        return raw
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {text}; fix or unset it") from None


_cached: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    global _cached
    if _cached is None:
        _cached = Settings.from_env()
    return _cached
