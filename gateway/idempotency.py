"""``Idempotency-Key`` on state-changing routes: a retry gets the first answer, nothing runs twice.

Handlers wrap their work in :func:`idempotent` after authenticating. A record belongs to the
project *and the API key* that sent the key (another key's use of the same value is another
record: it never sees this one's answer, its 409 or its 422), and a stored answer is replayed
only to the request that got it — the same method, path, query and body bytes and, on routes
that authorise with more than the API key (``POST /v1/events``: ``X-Ratchet-Signature`` and
``X-Ratchet-Timestamp``), the same values of those headers. A retry resends the request as it
was: replaying the answer of a signed request to one with other signature headers would hand a
verdict to a caller who never proved the agent's signature (attack run, F6: an ingest key bound
to another agent, ``X-Ratchet-Signature: v2=00``, got a bot's verdict back).

- no header → the work runs as usual;
- first request with a key → it runs; a 2xx answer is kept for ``idempotency_ttl_s`` (24 h),
  any other answer releases the key (nothing took effect, so a retry runs again);
- same key, same request, finished → the stored status and body, with ``Idempotent-Replayed:
  true``; nothing is published again;
- same key while the first request still runs → ``409`` with ``Retry-After: 1`` (the loser does
  not wait: the first request may itself wait seconds for a verdict); the reservation's lease is
  short and renewed while the request runs, so a gateway killed mid-request frees its keys within
  one lease (``idempotency_lease_s``);
- same key, different method/path/query/body → ``422``;
- same key, same method/path/query/body, other signature headers → ``422`` naming them (told
  before "in progress" and "finished": such a request learns nothing of the first one's state).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from gateway.body import read_bytes
from gateway.caller import Caller
from gateway.ingest import error_body
from gateway.metrics import IDEMPOTENCY_REQUESTS
from gateway.state import GatewayState
from models.errors import ConflictError, RatchetError, UnprocessableError
from models.idempotency import (
    HEADER,
    REPLAYED_HEADER,
    StoredAnswer,
    headers_digest,
    key_digest,
    request_fingerprint,
    validate_key,
)
from ratchet.store.idempotency import BeginCode

__all__ = ["idempotent"]

log = logging.getLogger(__name__)

Work = Callable[[], Awaitable[web.Response]]


async def idempotent(
    request: web.Request, state: GatewayState, caller: Caller, work: Work,
    max_bytes: int | None = None, *, signed_by: Sequence[str] = (),
) -> web.Response:
    """Run ``work`` at most once per ``Idempotency-Key`` of ``caller``'s API key (the body, read
    to fingerprint the request, at most ``max_bytes``: default the ingest body limit);
    ``signed_by``: the headers that authorise the request beside the key, which a replay must
    repeat."""
    raw_key = request.headers.get(HEADER)
    if raw_key is None:
        return await work()
    key = validate_key(raw_key)
    body = await read_bytes(request, state.settings.max_body_bytes if max_bytes is None
                            else max_bytes)
    fingerprint = request_fingerprint(request.method, request.path, request.query_string, body)
    headers = headers_digest([request.headers.get(name) for name in signed_by])
    begin = await state.idempotency.begin(caller.project_id, caller.key_id, key_digest(key),
                                          fingerprint, headers)
    IDEMPOTENCY_REQUESTS.labels(begin.code.name.lower()).inc()
    if begin.code is BeginCode.OTHER_HEADERS:
        raise UnprocessableError(
            f"this {HEADER} was already used for this request with other {' and '.join(signed_by)}"
            " headers; a retry must resend the request exactly as first sent, headers included "
            "(a re-signed request needs a new key)", HEADER)
    if begin.code is BeginCode.REPLAY and begin.answer is not None:
        return web.Response(body=begin.answer.body, status=begin.answer.status,
                            content_type="application/json", headers={REPLAYED_HEADER: "true"})
    if begin.code is BeginCode.IN_PROGRESS:
        busy = ConflictError(f"a request with this {HEADER} is still in progress; retry shortly "
                             "to get its answer", HEADER)
        return web.json_response(error_body(busy), status=409, headers={"Retry-After": "1"})
    if begin.code is BeginCode.MISMATCH or begin.reservation is None:
        raise UnprocessableError(
            f"this {HEADER} was already used for a different request (method, path, query or "
            "body differ); use a new key for a new request", HEADER)
    reservation = begin.reservation
    try:
        async with state.idempotency.holding(reservation):
            resp = await work()
    except BaseException:
        with contextlib.suppress(Exception):  # the lease frees the key if Redis is down too
            await state.idempotency.release(reservation)
        raise
    try:
        if 200 <= resp.status < 300 and isinstance(resp.body, bytes):
            await state.idempotency.finish(reservation, StoredAnswer(resp.status, resp.body))
        else:
            await state.idempotency.release(reservation)
    except RatchetError as exc:  # the work is done: answer it; the lease frees the key later
        log.warning("could not record the idempotent answer: %s", type(exc).__name__)
    return resp
