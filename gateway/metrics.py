"""Prometheus metrics of the gateway (docs/design.md §6 conventions).

Registered on prometheus-client's default registry, so ``/metrics`` also shows the process and
platform collectors (CPU, memory, open fds, GC) that SREs expect from every service. A gateway is
its own process, so its series never mix with a worker's. Labels are bounded: ``route`` is the
route *template* (``/v1/verdicts/{event_id}``, or ``unmatched``), never an id.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = [
    "GATEWAY_ERRORS",
    "HTTP_DURATION",
    "HTTP_REQUESTS",
    "IDEMPOTENCY_REQUESTS",
    "INGEST_EVENTS",
    "INGEST_TO_VERDICT",
    "KAFKA_SEND_SECONDS",
    "RATELIMIT_FAIL_OPEN",
    "RATELIMIT_REJECTED",
    "VERDICT_BYTES_READ",
    "WAITED_VERDICTS",
]

HTTP_REQUESTS = Counter(
    "ratchet_http_requests_total",
    "HTTP requests answered by the gateway, by route template, method and status code.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "ratchet_http_request_duration_seconds",
    "Time from request start to response, by route template (includes wait_ms waits).",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
INGEST_EVENTS = Counter(
    "ratchet_ingest_events_total",
    "Ingest events by outcome: accepted (published to Kafka), invalid, unauthorized, conflict "
    "(event id reused with another body), unavailable.",
    ["outcome"],
)
INGEST_TO_VERDICT = Histogram(
    "ratchet_gateway_verdict_wait_seconds",
    "Time from the gateway receiving an event to its verdict arriving back at the gateway "
    "(wait path only; the worker's ratchet_ingest_to_verdict_seconds ends at emission).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
GATEWAY_ERRORS = Counter(
    "ratchet_gateway_errors_total",
    "Gateway failures by kind: kafka_unavailable, redis_unavailable, bad_verdict_message, "
    "internal.",
    ["kind"],
)
KAFKA_SEND_SECONDS = Histogram(
    "ratchet_gateway_kafka_send_duration_seconds",
    "Time for Kafka to acknowledge the envelopes of one request.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
)
RATELIMIT_REJECTED = Counter(
    "ratchet_ratelimit_rejected_total",
    "Requests answered 429, by limit: ingest, register, api (token buckets; api: every other "
    "authenticated call), spread (a batch over many agents refused by the project's spread "
    "bucket alone), signup (per-IP and daily signup limits), auth_failures (too many "
    "failed authentications from one address).",
    ["limit"],
)
RATELIMIT_FAIL_OPEN = Counter(
    "ratchet_ratelimit_fail_open_total",
    "Ingest requests admitted without a rate-limit check because the rate-limit Redis was "
    "unavailable (ingest limits fail open).",
)
IDEMPOTENCY_REQUESTS = Counter(
    "ratchet_idempotency_requests_total",
    "Requests carrying an Idempotency-Key, by outcome: reserved (ran), replay (first answer "
    "returned), in_progress (409), mismatch (422), other_headers (422: other signature headers).",
    ["outcome"],
)
VERDICT_BYTES_READ = Counter(
    "ratchet_gateway_verdict_bytes_read_total",
    "Bytes of verdict messages this gateway read to answer callers waiting with wait_ms "
    "(message values as received; what grows with other gateways' traffic if routing breaks).",
)
WAITED_VERDICTS = Counter(
    "ratchet_gateway_waited_verdicts_total",
    "Verdicts handed to callers waiting on this gateway (POST /v1/events?wait_ms=).",
)
