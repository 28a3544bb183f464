"""Prometheus metrics of the engine and workers (docs/design.md §6 conventions).

``ratchet_`` prefix, base units (seconds, bits), ``_total`` counters, bounded labels only: never
an agent id, event id or chain as a label. The gateway's HTTP metrics live in gateway/metrics.py.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "AUDIT_ENTRIES",
    "AUDIT_PUBLISH_FAILURES",
    "BATCH_EVENTS",
    "CHECKPOINT_STOPS",
    "CONSUMER_LAG",
    "CONSUMER_LAG_ERRORS",
    "EDGE_SCORE_BITS",
    "ENGINE_ERRORS",
    "EVENTS",
    "FEEDBACK",
    "FLOOR_ROUNDS",
    "GUARDRAIL_REASONS",
    "GUARDRAIL_SHARE_SPENT",
    "INGEST_TO_VERDICT_SECONDS",
    "LUA_SECONDS",
    "MODE_TRANSITIONS",
    "POLICY_LOADS",
    "PROJECT_VERDICTS",
    "SPECULATED",
    "UNLEARNABLE_EVENTS",
    "VERDICTS",
    "WEBHOOK_ATTEMPTS",
    "WEBHOOK_BREAKER_TRANSITIONS",
    "WEBHOOK_DELIVERIES",
    "WEBHOOK_DELIVERY_SECONDS",
    "WORKER_BATCH_SECONDS",
    "WORKER_MESSAGES",
    "WORKER_REPLIES",
    "WORKER_RETRIES",
    "not_on_gateways",
]

LUA_SECONDS = Histogram(
    "ratchet_lua_call_duration_seconds",
    "Duration of one engine Lua call (or one pipelined batch of calls).",
    ["script"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
EVENTS = Counter(
    "ratchet_events_processed_total",
    "Events decided by the engine, by chain mode and whether the detector found them anomalous.",
    ["mode", "anomalous"],
)
VERDICTS = Counter(
    "ratchet_verdicts_total",
    "Verdicts by action, by the kind of source that decided the action — a reason whose action "
    "is the verdict's; weaker reasons decide nothing — (markov; guardrail: any guardrail, also "
    "tied with markov; per guardrail see ratchet_guardrail_reasons_total; or none) and by chain "
    "mode.",
    ["action", "source", "mode"],
)
MODE_TRANSITIONS = Counter(
    "ratchet_mode_transitions_total",
    "Chains promoted to a stricter mode (forced = promoted by the soft-lock timeout).",
    ["to", "forced"],
)
CHECKPOINT_STOPS = Counter(
    "ratchet_engine_checkpoint_stops_total",
    "Observe calls sent again with the rest of a chain's batch because the call before had done "
    "its checkpoint work (lua/observe.lua ARGV[42]): a batch of many short runs of a big chain, "
    "split so that no single call holds Redis for long.",
)
FLOOR_ROUNDS = Counter(
    "ratchet_engine_floor_rounds_total",
    "Extra observe round trips of a batch: a chain of a service new to its agent waited for the "
    "agent's other chains in the batch, so that each of its events is floored by their mode as "
    "of that event (round 2: after the chains past shadow; 3: after those leaving it).",
    ["round"],
)

SPECULATED = Counter(
    "ratchet_engine_speculative_batches_total",
    "Small learning batches observed beside the guardrail state (one Redis round trip "
    "less): direct = no guardrail of the policy can hold an event back and every chain was past "
    "shadow, so each learned in that round trip; sent = dry answers stood and their learning "
    "calls went with the save; declined = a guardrail held an event, a mode floor changed or a "
    "checkpoint fell (those chains were observed step by step); redone = the learning calls "
    "answered otherwise (another writer of the chain), so the batch was decided again.",
    ["result"],
)
UNLEARNABLE_EVENTS = Counter(
    "ratchet_unlearnable_events_total",
    "Events decided on an unlearnable chain (rate of new transitions above the limit: it never "
    "locks and only new call shapes are anomalous on it).",
)
EDGE_SCORE_BITS = Histogram(
    "ratchet_edge_score_bits",
    "Surprise of scored transitions, in bits (-log2(p + eps)).",
    buckets=(0.5, 1, 2, 3, 4, 6, 8, 10, 12, 15, 20),
)
ENGINE_ERRORS = Counter(
    "ratchet_engine_errors_total",
    "Engine failures by kind (e.g. redis_unavailable); a guard error is never a detection.",
    ["kind"],
)
ERROR_VERDICTS = Counter(
    "ratchet_error_verdicts_total",
    "Events answered without a judgement because the engine failed, by the action the project's "
    "on_error policy gave them (allow, flag, pause); the verdict carries error.",
    ["action"],
)
BATCH_EVENTS = Histogram(
    "ratchet_engine_batch_events",
    "Events per engine call (batching efficiency).",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)

GUARDRAIL_REASONS = Counter(
    "ratchet_guardrail_reasons_total",
    "Guardrail matches (reasons added to verdicts), by guardrail and its action.",
    ["guardrail", "action"],
)
GUARDRAIL_SHARE_SPENT = Counter(
    "ratchet_guardrail_share_spent_total",
    "Project batches given no payload-scan budget because the project's scanning share on "
    "this worker was spent (RATCHET_GUARD_SCAN_SHARE): their scans fail closed.",
)
POLICY_LOADS = Counter(
    "ratchet_policy_loads_total",
    "Guardrail policies (re)loaded by engines after a version change (result: ok, invalid).",
    ["result"],
)

# --- workers (streams/) ----------------------------------------------------------------------
WORKER_MESSAGES = Counter(
    "ratchet_worker_messages_total",
    "Kafka messages handled by workers, by topic and result (ok, invalid, error).",
    ["topic", "result"],
)
WORKER_RETRIES = Counter(
    "ratchet_worker_retries_total",
    "Batches retried by workers because a dependency was down (messages stay uncommitted).",
    ["reason"],
)
WORKER_BATCH_SECONDS = Histogram(
    "ratchet_worker_batch_duration_seconds",
    "Time to decide, save and emit one worker batch (retries included).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
)
INGEST_TO_VERDICT_SECONDS = Histogram(
    "ratchet_ingest_to_verdict_seconds",
    "From the gateway receiving an envelope to its verdicts being emitted by a worker.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)
WORKER_REPLIES = Counter(
    "ratchet_worker_replies_total",
    "Verdict envelopes published to the reply route of the gateway a caller waits on, by result: "
    "delivered, no_listener (that gateway is gone; the caller looks the verdict up), failed.",
    ["result"],
)
FEEDBACK = Counter(
    "ratchet_feedback_total",
    "Human decisions applied by workers (result: applied, not_pending, unknown_event).",
    ["decision", "result"],
)

# --- audit log and webhooks (used by gateway, CLI and the webhook dispatcher) ----------------
AUDIT_ENTRIES = Counter(
    "ratchet_audit_entries_total",
    "Audit entries appended, by action (a fixed set: models.audit.ACTIONS).",
    ["action"],
)
AUDIT_PUBLISH_FAILURES = Counter(
    "ratchet_audit_publish_failures_total",
    "Audit entries stored in Redis but not published to the audit topic after every attempt.",
)
WEBHOOK_ATTEMPTS = Counter(
    "ratchet_webhook_delivery_attempts_total",
    "Webhook delivery attempts by result: delivered, http_error, timeout, connect_error, "
    "refused (address not allowed), breaker_open.",
    ["result"],
)
WEBHOOK_DELIVERIES = Counter(
    "ratchet_webhook_deliveries_total",
    "Webhook deliveries by final result: delivered, dropped (retries exhausted), "
    "refused (destination address not allowed), backlog_full (the project had "
    "RATCHET_WEBHOOK_BACKLOG_PER_PROJECT deliveries waiting).",
    ["result"],
)
WEBHOOK_BREAKER_TRANSITIONS = Counter(
    "ratchet_webhook_breaker_transitions_total",
    "Circuit-breaker state changes of webhook destinations, by new state "
    "(open, half_open, closed).",
    ["state"],
)
WEBHOOK_DELIVERY_SECONDS = Histogram(
    "ratchet_webhook_delivery_duration_seconds",
    "Duration of one webhook delivery attempt that reached the destination.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
CONSUMER_LAG = Gauge(
    "ratchet_consumer_lag_messages",
    "Messages a consumer group still has to process (end offset - committed offset), per topic "
    "and partition, measured from the broker by every worker and dispatcher process.",
    ["group", "topic", "partition"],
)
CONSUMER_LAG_ERRORS = Counter(
    "ratchet_consumer_lag_errors_total",
    "Failed consumer-lag measurements (the broker did not answer), by consumer group.",
    ["group"],
)
PROJECT_VERDICTS = Counter(
    "ratchet_project_verdicts_total",
    "Verdicts by project and action, for the busiest projects only (opt-in: "
    "RATCHET_METRICS_PROJECT_LABEL_LIMIT; at most that many project values, the rest 'other').",
    ["project", "action"],
)


def not_on_gateways() -> frozenset[str]:
    """Names of the families above that only workers and the webhook dispatcher move: a
    gateway imports this module (its Redis scripts, policy loads and audit log are counted
    here too) and would otherwise export the rest as series that stay 0 (a UX audit read
    ``ratchet_worker_batch_duration_seconds_count 0`` on a gateway)."""
    shared = (LUA_SECONDS, POLICY_LOADS, AUDIT_ENTRIES, AUDIT_PUBLISH_FAILURES)
    kept = {m._name for m in shared}
    return frozenset(m._name for m in globals().values()
                     if isinstance(m, (Counter, Gauge, Histogram)) and m._name not in kept)
