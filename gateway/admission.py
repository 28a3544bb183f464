"""Admitting ingest requests in one Redis round trip when the caller's credentials are known.

A request whose API key this gateway has read before (:class:`gateway.credential_cache.
CredentialCache`) is checked here without waiting for Redis: the key's role on the route, the
body against the schema, the agent binding of an ingest key and — when the agents' secrets are
remembered too — the signatures. Then one pipelined round trip
(:class:`ratchet.store.admission.AdmissionStore`) reads the address's failure counter, the key's
grant and the agents' secrets as stored *now*, takes the rate-limit tokens and claims the event
ids. The request is admitted only if the grant and the secrets read are the ones it was checked
with and the address is not locked out; otherwise the ids it bound are unbound again, the stale
entries dropped, and the request answered by the full path in :mod:`gateway.routes_events`
(authenticate, then each step in turn), which gives every refusal exactly as before.

An agent whose secret is not remembered yet (its first request through this gateway) costs a
second round trip: the first reads the secret (and confirms the key, takes the tokens), the
signatures are checked with it, and only then are the ids claimed — an id is never bound before
its event's signature is checked. A request without a remembered key (or with an
``Idempotency-Key``) takes the full path and teaches the gateway the key.

Whatever the fast path cannot decide on its own — a malformed body or query, a wrong signature
with a remembered secret, another agent's event on an agent-bound key — also takes the full
path, so its answer (status and message) comes from one place. Effects that stay when a stale
prediction is found: the tokens of that one request (the entry is dropped, so the next request
of a revoked key is refused before any write).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from gateway.access_log import note_project
from gateway.auth import MAX_KEY_CHARS, Caller, route_of, verify_event
from gateway.body import int_query, read_json
from gateway.ingest import (
    Checked,
    batch_charge,
    check_signatures,
    check_timestamp,
    ingest_limits,
    parse_batch,
    refuse_reused_ids,
    reused_id_error,
)
from gateway.limits import EMPTY, apply_decision
from gateway.metrics import INGEST_EVENTS
from gateway.state import GatewayState
from models.errors import AuthError, RateLimitedError, ValidationError
from models.events import IngestEvent
from models.idempotency import HEADER as IDEMPOTENCY_HEADER
from models.idempotency import event_fingerprint
from models.ingest_schema import decode_counted
from models.ratelimit import INGEST, PRECHARGE_BYTES, event_tokens, single_event_charge
from models.scopes import allows, parse_grant, roles_for
from ratchet.platform.grants import key_side, names_key
from ratchet.platform.provisioning import hash_api_key
from ratchet.store.admission import AdmissionReads

__all__ = ["admit_batch", "admit_single"]

SIGNATURE_HEADER = "X-Ratchet-Signature"
TIMESTAMP_HEADER = "X-Ratchet-Timestamp"


#: Bodies larger than this are refused unread while their project's ingest bucket is known to be
#: empty (:class:`gateway.limits.EmptyBuckets`); smaller ones cost no more to read than to refuse.
EMPTY_CHECK_BYTES = 8_192


def _known_caller(request: web.Request, state: GatewayState) -> tuple[Caller, str, str] | None:
    """(caller, key hash, grant) predicted from the cache, or ``None`` (take the full path)."""
    if IDEMPOTENCY_HEADER in request.headers:
        return None  # the idempotency record needs the project first: the full path
    size = request.content_length
    if size is None or size > PRECHARGE_BYTES:
        return None  # its size's tokens are taken before it is read: the full path
    headers = request.headers.getall("Authorization", [])
    if len(headers) != 1:
        return None
    scheme, _, token = headers[0].partition(" ")
    token = token.strip()
    if (scheme.lower() != "bearer" or not token or len(token) > MAX_KEY_CHARS
            or not (token.isascii() and token.isprintable())):
        return None
    sha = hash_api_key(token)
    grant_text = state.credentials.grant(sha)
    if grant_text is None:
        return None
    grant = parse_grant(grant_text)
    method, route = route_of(request)
    if not allows(roles_for(method, route), grant.role):
        return None
    if size > EMPTY_CHECK_BYTES:  # a project whose bucket was just seen empty: 429 before
        request.app[EMPTY].refuse_if_empty(grant.project_id)  # its body is read
    return Caller(grant.project_id, sha[:12], grant.role, grant.agent_id, grant.primary), sha, \
        grant_text


def _confirmed(reads: AdmissionReads, sha: str, grant: str, secrets: Mapping[str, str],
               state: GatewayState) -> bool:
    """Whether the round trip's reads match the predictions (the key's record AND its project's
    side name the key: :mod:`ratchet.platform.grants`)."""
    return (reads.grant == grant and names_key(reads.key_side, sha, parse_grant(grant))
            and all(reads.secrets.get(a) == s for a, s in secrets.items()))


async def _round_trip(
    request: web.Request, state: GatewayState, caller: Caller, sha: str, grant: str,
    agents: Sequence[str], predicted: Mapping[str, str], cost: int,
    claims: Sequence[tuple[str, str]], *, single: bool = False, spread: int = 0,
) -> AdmissionReads | None:
    """The admission round trip (reads ``agents``' secrets; confirms ``predicted``, the ones
    the request was checked with); ``None`` (nothing left bound) if a prediction was stale."""
    tier = await state.tiers.tier_of(state.redis, state.keys, caller.project_id)
    if single:  # one event sent alone: a full bucket at most (models/ratelimit.py)
        cost = single_event_charge(cost, tier.per_minute(INGEST))
    reads = await state.admission.round_trip(
        failures_key=None, key_sha=sha,  # a right key is not refused by an address lockout
        project_id=caller.project_id, key_side=key_side(state.keys, sha, parse_grant(grant)),
        agents=agents,
        rate=state.limiter.call(caller.project_id, tier, INGEST, cost, int(time.time() * 1000),
                                spread=spread),
        claims=claims,
    )
    if len(reads.claims) != len(claims):
        raise ValueError(f"{len(reads.claims)} claim answers for {len(claims)} claims")

    def bound() -> list[tuple[str, str]]:  # only a refusal needs them (unbinds them)
        return [c for c, answer in zip(claims, reads.claims, strict=True) if answer == 1]

    if not _confirmed(reads, sha, grant, predicted, state):
        await state.admission.release(caller.project_id, bound())
        if reads.grant != grant or not names_key(reads.key_side, sha, parse_grant(grant)):
            state.credentials.drop_grant(sha)
        for agent_id, secret in predicted.items():
            if reads.secrets.get(agent_id) != secret:
                state.credentials.drop_secret(caller.project_id, agent_id)
        return None
    note_project(request, caller.project_id)
    rate = reads.rate if reads.rate is not None else RuntimeError("no rate answer")
    try:
        apply_decision(request, tier, INGEST, cost,
                       rate if isinstance(rate, BaseException) else
                       state.limiter.decision(tier, INGEST, rate), caller.project_id,
                       spread=spread)
    except RateLimitedError:
        await state.admission.release(caller.project_id, bound())
        raise
    fresh = {a: v for a, v in reads.secrets.items() if v is not None and a not in predicted}
    if fresh:
        state.credentials.put_secrets(caller.project_id, fresh)
    return reads


def _secrets_read(reads: AdmissionReads) -> dict[str, str]:
    return {a: v for a, v in reads.secrets.items() if v is not None}


async def admit_single(
    request: web.Request, state: GatewayState
) -> tuple[Caller, IngestEvent, int | None] | None:
    """``(caller, event, wait_ms)`` of an admitted ``POST /v1/events`` (its id claimed), a
    refusal raised (429, 409, 401 for a signature checked with a secret read just now), or
    ``None``: answer it by the full path.

    One round trip when the agent's secret is known; otherwise the round trip reads it and the
    claim follows in a second one (the signature must be checked before an id is bound)."""
    known = _known_caller(request, state)
    if known is None:
        return None
    caller, sha, grant = known
    try:
        wait_ms = int_query(request, "wait_ms", 0, state.settings.max_wait_ms, None)
        body = await read_json(request, state.settings.max_body_bytes)
        event, _, size = decode_counted(body, caller.project_id, ingest_limits(state.settings),
                                        signed=False)
        if caller.agent_id is not None and event.agent_id != caller.agent_id:
            return None
        check_timestamp(request.headers.get(TIMESTAMP_HEADER), TIMESTAMP_HEADER)
        secret = state.credentials.secret(caller.project_id, event.agent_id)
        if secret is not None:
            _verify(request, state, event, body, {event.agent_id: secret})
    except (ValidationError, AuthError):
        return None  # the full path answers it, after authenticating the key
    claim = (event.event_id, event_fingerprint(event))
    predicted = {event.agent_id: secret} if secret is not None else {}
    reads = await _round_trip(request, state, caller, sha, grant, [event.agent_id], predicted,
                              event_tokens(*size), [claim] if secret is not None else [],
                              single=True)
    if reads is None:
        return None
    if secret is None:  # the secret was read just now: check, then claim
        try:
            _verify(request, state, event, body, _secrets_read(reads))
        except AuthError:
            INGEST_EVENTS.labels("unauthorized").inc()
            raise
        fresh = (await state.event_ids.claim([event]))[0]
    else:
        fresh = reads.claims[0] != 0
    if not fresh:
        INGEST_EVENTS.labels("conflict").inc()
        raise reused_id_error("event_id")
    return caller, event, wait_ms


def _verify(request: web.Request, state: GatewayState, event: IngestEvent, body: Any,
            secrets: Mapping[str, str]) -> None:
    verify_event(
        event, body, secrets, request.headers.get(SIGNATURE_HEADER),
        request.headers.get(TIMESTAMP_HEADER), now=time.time(),
        window_s=state.settings.signature_window_s, v1_until=state.settings.signature_v1_until,
    )


async def admit_batch(
    request: web.Request, state: GatewayState
) -> tuple[Caller, list[Checked]] | None:
    """``(caller, items)`` of an admitted ``POST /v1/events:batch`` (items refused in place, the
    others' ids claimed), a refusal raised (429), or ``None``: answer it by the full path.

    One round trip when every agent's secret is known; otherwise the round trip reads them and
    the claims follow in a second one."""
    known = _known_caller(request, state)
    if known is None:
        return None
    caller, sha, grant = known
    try:
        body = await read_json(request, state.settings.max_body_bytes)
        items = parse_batch(body, caller.project_id, state.settings.max_batch_events,
                            ingest_limits(state.settings))
    except ValidationError:
        return None
    agents: dict[str, None] = {}
    for it in items:
        if it.event is None or it.error is not None:
            continue
        if caller.agent_id is not None and it.event.agent_id != caller.agent_id:
            return None  # refused by the full path, which names the key's agent
        agents[it.event.agent_id] = None
    predicted = {a: s for a in agents
                 if (s := state.credentials.secret(caller.project_id, a)) is not None}
    all_known = len(predicted) == len(agents)
    claims: list[tuple[str, str]] = []
    if all_known:
        _check(items, predicted, state)
        if any(isinstance(it.error, AuthError) for it in items):
            return None  # a remembered secret may be stale: the full path reads it again
        claims = [(ev.event_id, event_fingerprint(ev)) for ev in _signed(items)]
    tokens, spread = batch_charge(items)
    reads = await _round_trip(request, state, caller, sha, grant, list(agents), predicted,
                              tokens, claims, spread=spread)
    if reads is None:
        return None
    if all_known:
        refuse_reused_ids(items, [answer != 0 for answer in reads.claims])
    else:  # the secrets were read just now: check, then claim
        _check(items, _secrets_read(reads), state)
        refuse_reused_ids(items, await state.event_ids.claim(_signed(items)))
    return caller, items


def _check(items: list[Checked], secrets: Mapping[str, str], state: GatewayState) -> None:
    check_signatures(items, secrets, now=time.time(), window_s=state.settings.signature_window_s,
                     v1_until=state.settings.signature_v1_until)


def _signed(items: list[Checked]) -> list[IngestEvent]:
    return [it.event for it in items if it.error is None and it.event is not None]
