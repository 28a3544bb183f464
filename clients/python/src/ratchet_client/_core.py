"""What the sync and the async client share, without any I/O: building signed requests,
reading answers, and deciding whether and when to retry.

Retries: connection failures, ``429``, ``502``/``503``/``504`` and a ``409`` that carries
``Retry-After`` (an ``Idempotency-Key`` whose first request is still running) are retried, up to
``max_retries`` times, waiting ``Retry-After`` when the gateway sends one (refusing to wait longer
than ``max_retry_after_s``) and otherwise an exponential backoff with full jitter. Every retry
resends the *same* request under the *same* ``Idempotency-Key``, so the gateway answers a retry
of a request it already took with the first answer and publishes nothing twice.
"""

from __future__ import annotations

import inspect
import json
import math
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ratchet_client.errors import (
    RatchetError,
    UnavailableError,
    ValidationError,
    error_for,
    retry_after_s,
)
from ratchet_client.signing import canonical, sign_event
from ratchet_client.types import ACTIONS, Accepted, Verdict

__all__ = ["Body", "Config", "Core", "Request", "arguments_payload", "long_poll_ms"]

RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Largest answer the client reads (decoded): the gateway's largest, a page of 500 approvals,
#: is well under 1 MB. A longer answer is refused (:class:`UnavailableError`) while it streams.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
#: ``code`` of the :class:`UnavailableError` of a call that ran out of time.
TIMEOUT_CODE = "timeout"
#: Longest ``wait_ms`` one verdict request asks the gateway to hold (its ``RATCHET_MAX_WAIT_MS``).
MAX_WAIT_MS = 5000
#: Batch item error codes and the HTTP status they stand for.
_ITEM_STATUS = {"invalid_request": 400, "unauthorized": 401, "conflict": 409,
                "payload_too_large": 413, "unavailable": 503, "rate_limited": 429}
#: Item answers the batcher sends again in a later request (up to ``max_retries`` times): Kafka
#: did not take the event (503), or the batch's events together were over the gateway's value
#: budget from this one on (413).
_SEND_AGAIN = frozenset((413, 503))


@dataclass
class Config:
    base_url: str
    api_key: str
    agent_id: str
    agent_secret: str
    project_id: str | None = None
    #: ``run_id`` of events that do not set one (default: one fresh id per client).
    run_id: str | None = None
    timeout_s: float = 10.0
    max_retries: int = 4
    backoff_s: float = 0.2
    backoff_max_s: float = 5.0
    max_retry_after_s: float = 30.0
    #: Background batcher: most events per request, and how long the first one waits for more.
    batch_size: int = 100
    linger_ms: float = 50.0
    #: Largest batch body the batcher sends: the gateway's ``RATCHET_MAX_BODY_BYTES`` (4 MiB by
    #: default). Queued events that would not fit together go in several requests.
    max_batch_bytes: int = 4 * 1024 * 1024
    #: Pause between verdict polls when the gateway answers at once.
    poll_interval_s: float = 0.25
    #: Longest long poll asked of the gateway: its ``RATCHET_MAX_WAIT_MS`` (default 5000).
    max_wait_ms: int = MAX_WAIT_MS
    #: Largest answer read from the gateway, bytes (past it: :class:`UnavailableError`).
    max_response_bytes: int = MAX_RESPONSE_BYTES

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        if not 1 <= self.batch_size <= 1000:
            raise ValueError("batch_size must be 1 to 1000 (the gateway's batch limit)")
        if self.max_batch_bytes < 1024:
            raise ValueError("max_batch_bytes must be at least 1024 (the gateway's "
                             "RATCHET_MAX_BODY_BYTES; 4 MiB by default)")
        if self.run_id is None:
            self.run_id = f"run-{uuid.uuid4().hex[:12]}"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


def _unportable_field(value: Any, path: str = "") -> str:
    """Where in an event the first value without a portable JSON form sits (``payload.n``), as
    the gateway names fields; ``payload`` when it cannot tell."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53 - 1:
        return path
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return ""
    # RFC 8785 writes keys in UTF-16 order: the first value it refuses is the first found so
    items = (sorted(value.items(), key=lambda kv: str(kv[0]).encode("utf-16-be"))
             if isinstance(value, Mapping)
             else enumerate(value) if isinstance(value, (list, tuple)) else ())
    for key, item in items:
        inner = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))
        found = _unportable_field(item, inner)
        if found:
            return found
    return "" if path else "payload"


_BATCH_HEAD, _BATCH_TAIL = b'{"events":[', b"]}"
#: Bytes signing adds to an event in a batch: ``"signature":"v2=<64 hex>"``,
#: ``"timestamp":<10 digits>`` and their commas (a little more than they take).
_SIGNED_EXTRA = 112


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode("utf-8")


class Core:
    """Request building and answer reading for one agent's credentials."""

    def __init__(self, config: Config) -> None:
        self.config = config

    # --- events -------------------------------------------------------------------------------
    def complete(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The event with ``agent_id``, ``event_id`` (a fresh UUID) and ``run_id`` filled in."""
        if not isinstance(event, Mapping):
            raise ValidationError("an event must be a mapping", field=None)
        out = dict(event)
        out.setdefault("agent_id", self.config.agent_id)
        out.setdefault("event_id", str(uuid.uuid4()))
        out.setdefault("run_id", self.config.run_id)
        out.setdefault("payload", {})
        return out

    def unsignable(self, event: Mapping[str, Any]) -> ValidationError | None:
        """Why the event cannot be signed (checked before it is queued, so one bad event
        never fails a whole batch), or ``None``."""
        try:
            canonical(dict(event))
        except ValueError as exc:
            return ValidationError(str(exc), field=_unportable_field(event))
        return None

    def sign(self, event: Mapping[str, Any], timestamp: int) -> str:
        assert self.config.project_id, "project_id is resolved before signing"
        try:
            return sign_event(self.config.agent_secret, self.config.project_id, event, timestamp)
        except ValueError as exc:
            raise ValidationError(str(exc), field=_unportable_field(event)) from None

    def headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        out = {"Authorization": f"Bearer {self.config.api_key}",
               "Content-Type": "application/json"}
        if idempotency_key:
            out["Idempotency-Key"] = idempotency_key
        return out

    def single(self, event: Mapping[str, Any], wait_ms: int = 0) -> Request:
        """``POST /v1/events`` of a completed event, signed now, with its own idempotency key."""
        ts = int(time.time())
        headers = self.headers(f"ev-{uuid.uuid4().hex}")
        headers["X-Ratchet-Signature"] = self.sign(event, ts)
        headers["X-Ratchet-Timestamp"] = str(ts)
        params = {"wait_ms": str(int(wait_ms))} if wait_ms > 0 else {}
        return Request("POST", "/v1/events", headers, params, _json_bytes(dict(event)))

    def batch(self, events: Sequence[Mapping[str, Any]]) -> Request:
        """``POST /v1/events:batch`` of completed events, each signed in its item."""
        ts = int(time.time())
        return self._batch_request([
            _json_bytes({**ev, "signature": self.sign(ev, ts), "timestamp": ts}) for ev in events])

    def split(self, events: Sequence[Mapping[str, Any]]) -> list[int]:
        """How many of the events (in order) each batch request carries so that none is over
        ``max_batch_bytes``; an event too large alone still gets a request of its own (the
        gateway answers its 413). Sizes are measured before signing (a signature and its
        timestamp add a fixed :data:`_SIGNED_EXTRA` bytes): each request is signed only when
        it is sent, so a request waiting behind another's retries is not signed stale."""
        counts: list[int] = []
        n, size = 0, len(_BATCH_HEAD) + len(_BATCH_TAIL)
        for ev in events:
            part = len(_json_bytes(ev)) + _SIGNED_EXTRA + 1
            if n and size + part > self.config.max_batch_bytes:
                counts.append(n)
                n, size = 0, len(_BATCH_HEAD) + len(_BATCH_TAIL)
            n += 1
            size += part
        if n:
            counts.append(n)
        return counts

    def again(self, results: Sequence[tuple[Accepted | None, Any]],
              tries: Sequence[int]) -> list[int | None]:
        """Per item of one answered batch request: the try count to send it again with (its
        answer was 503 — the broker did not take it — or 413 — the batch's events together were
        over the gateway's value budget from this one on), or ``None``: its answer stands. A
        413 after the same request accepted others costs no try (the next request starts where
        this one's budget ran out, so it always gets further); otherwise each resend costs one,
        up to ``max_retries``."""
        progress = any(ok is not None for ok, _ in results)
        out: list[int | None] = []
        for (_, err), t in zip(results, tries):
            status = getattr(err, "status", 0) if err is not None else 0
            if status == 413 and progress:
                out.append(t)
            elif status in _SEND_AGAIN and t < self.config.max_retries:
                out.append(t + 1)
            else:
                out.append(None)
        return out

    def triage(self, part: Sequence[tuple[Any, Any, int]],
               results: Sequence[tuple[Accepted | None, Any]]
               ) -> tuple[list[tuple[Any, tuple[Accepted | None, Any]]], list[tuple[Any, Any, int]],
                          bool]:
        """One answered batch request's queued items ``(event, future, tries)``, sorted: those
        whose answer stands (each with it), those to send again at once (with their new try
        count, see :meth:`again`), and whether one of those the broker refused (503: wait a
        backoff first)."""
        again = self.again(results, [t for _, _, t in part])
        done = [(p, r) for p, r, t in zip(part, results, again) if t is None]
        retry = [(item, fut, t) for (item, fut, _), t in zip(part, again) if t is not None]
        broker = any(getattr(err, "status", 0) == 503
                     for (_, err), t in zip(results, again) if t is not None)
        return done, retry, broker

    @staticmethod
    def settle(fut: Any, answer: tuple[Accepted | None, Any]) -> None:
        """Give a queued event's future its answer (a future its caller cancelled is left)."""
        ok, err = answer
        if fut.done():
            return
        if err is not None:
            fut.set_exception(err)
        else:
            fut.set_result(ok)

    def _batch_request(self, parts: Sequence[bytes]) -> Request:
        return Request("POST", "/v1/events:batch", self.headers(f"batch-{uuid.uuid4().hex}"),
                       {}, _BATCH_HEAD + b",".join(parts) + _BATCH_TAIL)

    def verdict_request(self, event_id: str, wait_ms: int = 0) -> Request:
        wait = min(int(wait_ms), self.config.max_wait_ms)
        params = {"wait_ms": str(wait)} if wait > 0 else {}
        return Request("GET", f"/v1/verdicts/{_quote(event_id)}", self.headers(), params)

    def resolve_request(self, event_id: str, decision: str, reason: str) -> Request:
        """``POST /v1/approvals/{event_id}``: approve or reject a paused event."""
        return Request("POST", f"/v1/approvals/{_quote(event_id)}", self.headers(),
                       body=_json_bytes({"decision": decision, "reason": reason}))

    # --- deadlines and answers -------------------------------------------------------------------
    def deadline(self, request: Request | None = None, timeout_s: float | None = None) -> float:
        """When a call must be over (``time.monotonic()``): ``timeout_s`` (default: the
        client's ``timeout_s``) from now, plus the long poll's ``wait_ms`` of ``request``."""
        wait_s = int(request.params.get("wait_ms", "0") or 0) / 1000 if request else 0.0
        return time.monotonic() + (self.config.timeout_s if timeout_s is None else timeout_s) + wait_s

    @staticmethod
    def timed_out(method: str = "", path: str = "") -> UnavailableError:
        what = f" to {method} {path}" if method else ""
        return UnavailableError(f"no answer from the gateway{what} within the call's timeout",
                                code=TIMEOUT_CODE)

    def body(self, status: int, headers: Mapping[str, str], deadline: float) -> Body:
        """A collector of one answer's body: refuses more than ``max_response_bytes`` (at once
        if ``Content-Length`` says so) and a body still arriving after ``deadline``."""
        return Body(self, status, headers, deadline)

    @staticmethod
    def read(status: int, headers: Mapping[str, str], content: bytes,
             parse: Callable[[dict[str, Any]], Any] | None = None) -> Any:
        """The decoded body of a 2xx answer — a JSON object, given to ``parse`` if set — or the
        matching :class:`RatchetError`. A 2xx answer that is not a JSON object, or that
        ``parse`` refuses (``ValueError``, ``KeyError``, ``TypeError``, ``AttributeError``),
        is an :class:`UnavailableError` (code ``malformed_answer``) with the status and trace
        id: a gateway never sends one, so the answer came from something else."""
        if 200 <= status < 300:
            try:
                body: Any = json.loads(content)
            except ValueError:
                raise malformed(status, headers, "it is not JSON") from None
            if not isinstance(body, dict):
                raise malformed(status, headers, "it is not a JSON object")
            if parse is None:
                return body
            try:
                return parse(body)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise malformed(status, headers, str(exc)) from None
        try:
            body = json.loads(content) if content else None
        except ValueError:
            body = content.decode("utf-8", "replace")
        raise error_for(status, body, headers)

    @staticmethod
    def project_of(body: Mapping[str, Any]) -> str:
        project = body.get("project_id")
        if not isinstance(project, str) or not project:
            raise ValueError("whoami has no project_id")
        return project

    @staticmethod
    def accepted(body: Mapping[str, Any], trace_id: str = "") -> Accepted:
        event_id = body.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            raise ValueError("no event_id")
        return Accepted(event_id, str(body.get("trace_id") or trace_id))

    @staticmethod
    def checked(verdict: Any, event_id: str | None, approval: Any = None) -> Verdict:
        """A :class:`Verdict` of a well-formed answer, about ``event_id`` if given (a verdict
        of another event is refused: a guard must never act on it)."""
        if not isinstance(verdict, Mapping):
            raise TypeError("the verdict is not an object")
        if verdict.get("action") not in ACTIONS:
            raise ValueError(f"the verdict's action is not one of {', '.join(ACTIONS)}")
        got = verdict.get("event_id")
        if not isinstance(got, str) or not got:
            raise ValueError("the verdict has no event_id")
        if event_id is not None and got != event_id:
            raise ValueError(f"the verdict is of event {got[:100]!r}, not of {event_id[:100]!r}")
        if approval is not None and not (isinstance(approval, Mapping)
                                         and approval.get("decision") in ("approve", "reject")):
            raise ValueError("the approval is not {decision: approve|reject, ...}")
        return Verdict.from_dict(verdict, approval)

    def verdict_of(self, body: Mapping[str, Any], event_id: str | None = None) -> Verdict:
        return self.checked(body.get("verdict"), event_id, body.get("approval"))

    def decided(self, body: Mapping[str, Any], event_id: str) -> Verdict | None:
        """The verdict of a ``POST /v1/events?wait_ms`` answer, or ``None`` (not decided yet)."""
        if body.get("status") == "decided":
            return self.checked(body.get("verdict"), event_id)
        return None

    @staticmethod
    def pending_params(limit: int, agent_id: str | None) -> dict[str, str]:
        """The query of ``GET /v1/approvals``."""
        params = {"limit": str(limit)}
        if agent_id is not None:
            params["agent_id"] = agent_id
        return params

    def pending_of(self, body: Mapping[str, Any]) -> list[Verdict]:
        items = body.get("items")
        if items is None:
            return []
        if not isinstance(items, list):
            raise TypeError("items is not a list")
        return [self.checked(v, None) for v in items]

    @staticmethod
    def batch_results(body: Mapping[str, Any], count: int) -> list[tuple[Accepted | None,
                                                                        RatchetError | None]]:
        """Per item: ``(Accepted, None)`` or ``(None, error)``, in request order."""
        results: list[tuple[Accepted | None, RatchetError | None]] = [
            (None, RatchetError("no result for this item"))] * count
        trace_id = str(body.get("trace_id", ""))
        items = body.get("results")
        if not isinstance(items, list):
            raise TypeError("results is not a list")
        for r in items:
            if not isinstance(r, Mapping):
                raise TypeError("a result is not an object")
            i = r.get("index")
            if not isinstance(i, int) or isinstance(i, bool):
                raise TypeError("a result's index is not an integer")
            if not 0 <= i < count:
                continue
            if r.get("status") == "accepted":
                event_id = r.get("event_id")
                if not isinstance(event_id, str):
                    raise ValueError("an accepted result has no event_id")
                results[i] = (Accepted(event_id, trace_id), None)
            else:
                raw = r.get("error")
                err = dict(raw) if isinstance(raw, Mapping) else {}
                status = _ITEM_STATUS.get(str(err.get("error")), 400)
                # the gateway names the field in ITS batch (events[7].priority): a send's future
                # names it in the event, as post does (priority)
                field = err.get("field")
                if isinstance(field, str) and field.startswith(f"events[{i}]"):
                    err["field"] = field[len(f"events[{i}]"):].lstrip(".") or None
                results[i] = (None, error_for(status, err, {"x-trace-id": trace_id}))
        return results

    # --- retries ------------------------------------------------------------------------------
    def retry_delay(self, attempt: int, status: int | None,
                    headers: Mapping[str, str] | None,
                    deadline: float | None = None) -> float | None:
        """Seconds to wait before retry number ``attempt + 1``, or ``None``: do not retry.
        ``status`` is ``None`` for a connection failure. With a ``deadline``
        (``time.monotonic()``), a wait that would end at or past it is ``None`` too: the call
        gives up at once rather than sleep past its timeout."""
        delay = self._retry_delay(attempt, status, headers)
        if delay is not None and deadline is not None and time.monotonic() + delay >= deadline:
            return None
        return delay

    def _retry_delay(self, attempt: int, status: int | None,
                     headers: Mapping[str, str] | None) -> float | None:
        if attempt >= self.config.max_retries:
            return None
        after = retry_after_s(headers) if headers is not None else None
        if status is not None:
            if status == 409 and after is None:
                return None
            if status not in RETRY_STATUSES and status != 409:
                return None
        if after is not None:
            return after if after <= self.config.max_retry_after_s else None
        ceiling = min(self.config.backoff_max_s, self.config.backoff_s * (2 ** attempt))
        return random.uniform(0, ceiling)


def long_poll_ms(wait_ms: int, deadline: float) -> int:
    """``wait_ms`` shortened so that the gateway's answer can arrive before ``deadline``."""
    remaining_ms = (deadline - time.monotonic()) * 1000
    return max(0, min(int(wait_ms), int(remaining_ms - min(1000.0, remaining_ms / 5))))



def malformed(status: int, headers: Mapping[str, str], why: str) -> UnavailableError:
    return UnavailableError(f"the gateway's answer (HTTP {status}) is malformed: {why[:200]}",
                            status=status, code="malformed_answer",
                            trace_id=headers.get("x-trace-id", ""))


class Body:
    """One answer's body as it streams in (see :meth:`Core.body`)."""

    def __init__(self, core: Core, status: int, headers: Mapping[str, str],
                 deadline: float) -> None:
        self.status, self.headers, self.deadline = status, headers, deadline
        self.limit = core.config.max_response_bytes
        self.parts: list[bytes] = []
        self.size = 0
        try:
            declared = int(headers.get("content-length") or 0)
        except ValueError:
            declared = 0
        if declared > self.limit:
            raise self.too_large()

    def too_large(self) -> UnavailableError:
        return UnavailableError(
            f"the gateway's answer (HTTP {self.status}) is too large: over "
            f"{self.limit} bytes (a gateway answers far less; is base_url right?)",
            status=self.status, code="answer_too_large",
            trace_id=self.headers.get("x-trace-id", ""))

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise self.too_large()
        self.parts.append(chunk)
        if time.monotonic() > self.deadline:
            raise Core.timed_out()

    def content(self) -> bytes:
        return b"".join(self.parts)


def _quote(event_id: str) -> str:
    """``event_id`` as one path segment: every reserved character percent-encoded, and ``.``
    too (``.`` and ``..`` would otherwise be dot segments that URL normalisation removes)."""
    from urllib.parse import quote

    return quote(event_id, safe="").replace(".", "%2E")


def arguments_payload(fn: Callable[..., Any], args: Sequence[Any],
                      kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """A guarded function's arguments as a JSON payload: name → value for JSON values; other
    values are named by their type (``"<Session>"``) so nothing unserializable is sent."""
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return {"args": [_jsonable(a) for a in args],
                **{k: _jsonable(v) for k, v in kwargs.items()}}
    out: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        if name in ("self", "cls"):
            continue
        out[name] = _jsonable(value)
    return out


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return f"<{type(value).__name__}>"
