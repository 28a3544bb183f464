"""A small async client of the gateway, used by the demo, the benchmarks and the tests
(agents use the SDKs in ``clients/``). Usage (needs a running gateway)::

    async with RatchetClient(url, api_key, "agent-1", secret) as client:
        answer = await client.send({"event_id": str(uuid.uuid4()), "run_id": "r1",
                                    "service": "crm", "action": "read", "payload": {}},
                                   wait_ms=500)

Events are signed with :mod:`models.signing`; ``agent_id`` defaults to the client's agent. One
``aiohttp.ClientSession`` (keep-alive connection pool) serves every call.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import aiohttp

from models.errors import ValidationError
from models.signing import SCHEME, sign

__all__ = ["Answer", "RatchetClient"]


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer: status, decoded JSON body and the trace id header."""

    status: int
    body: Any
    trace_id: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


class RatchetClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        agent_id: str,
        agent_secret: str,
        *,
        project_id: str | None = None,
        timeout_s: float = 30.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        """``project_id`` is part of every signature; if omitted, the first call asks the
        gateway which project the API key belongs to (``GET /v1/whoami``)."""
        self.base_url = base_url.rstrip("/")
        self.agent_id = agent_id
        self.project_id = project_id or ""
        self._api_key = api_key
        self._secret = agent_secret
        self._own_session = session is None
        self._session = session or aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=30),
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session:
            await self._session.close()

    # --- signing -----------------------------------------------------------------------------
    def complete(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The event with this client's ``agent_id`` filled in when missing."""
        out = dict(event)
        out.setdefault("agent_id", self.agent_id)
        return out

    def signature(self, event: Mapping[str, Any], timestamp: int | None = None) -> tuple[str, int]:
        """``(signature, timestamp)`` of an event exactly as it will be sent (every field is
        signed; signed now unless ``timestamp`` is given)."""
        ts = int(time.time()) if timestamp is None else timestamp
        try:
            return sign(self._secret, self.project_id, event, ts), ts
        except ValidationError:
            # no portable form (an integer beyond 2**53): send it unsigned-looking and let the
            # gateway answer, as tests of its input limits need (its shape check comes first)
            return f"{SCHEME}={'0' * 64}", ts

    def signed(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """A batch item: the event with its ``signature`` and ``timestamp`` fields."""
        out = self.complete(event)
        out["signature"], out["timestamp"] = self.signature(out)
        return out

    # --- calls ---------------------------------------------------------------------------------
    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._api_key}"}
        headers.update(extra or {})
        return headers

    @staticmethod
    def _idempotency(key: str | None) -> dict[str, str]:
        return {"Idempotency-Key": key} if key else {}

    async def _call(
        self, method: str, path: str, *, json: Any = None, params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        async with self._session.request(
            method, self.base_url + path, json=json, params=params, headers=self._headers(headers)
        ) as resp:
            try:
                body: Any = await resp.json(content_type=None)
            except ValueError:
                body = await resp.text()
            return Answer(resp.status, body, resp.headers.get("X-Trace-Id", ""), dict(resp.headers))

    async def whoami(self) -> Answer:
        """``GET /v1/whoami``: the project of the API key (also fills in ``project_id``)."""
        answer = await self._call("GET", "/v1/whoami")
        if answer.status == 200 and isinstance(answer.body, dict):
            self.project_id = str(answer.body.get("project_id", ""))
        return answer

    async def _ensure_project(self) -> None:
        if not self.project_id:
            await self.whoami()

    async def send(
        self, event: Mapping[str, Any], wait_ms: int | None = None, *,
        idempotency_key: str | None = None,
    ) -> Answer:
        """``POST /v1/events``: 202 accepted, or 200 with the verdict if it came within wait_ms.

        With ``idempotency_key``, a retry of the same request gets the first answer back (see
        docs/security.md). The event is signed anew on every call and the signature headers are
        part of the request, so a call in another second under the same key is 422: to retry,
        resend the first request as it was.
        """
        await self._ensure_project()
        body = self.complete(event)
        sig, ts = self.signature(body)
        params = {"wait_ms": str(wait_ms)} if wait_ms else None
        return await self._call(
            "POST", "/v1/events", json=body, params=params,
            headers={"X-Ratchet-Signature": sig, "X-Ratchet-Timestamp": str(ts),
                     **self._idempotency(idempotency_key)},
        )

    async def send_batch(
        self, events: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> Answer:
        """``POST /v1/events:batch``: per-event results. Signatures are in the body, so a
        retry under the same ``idempotency_key`` must resend the same signed items
        (:meth:`post_signed`)."""
        await self._ensure_project()
        return await self.post_signed([self.signed(e) for e in events],
                                      idempotency_key=idempotency_key)

    async def post_signed(
        self, items: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> Answer:
        """``POST /v1/events:batch`` of items already signed with :meth:`signed`."""
        return await self._call("POST", "/v1/events:batch", json={"events": list(items)},
                                headers=self._idempotency(idempotency_key))

    async def policy(self) -> Answer:
        """The project's guardrail policy: TOML text, validated form, version and hash."""
        return await self._call("GET", "/v1/policy", headers={"Accept": "application/json"})

    async def put_policy(self, toml_text: str) -> Answer:
        """Replace the project's guardrail policy (400 naming the bad field if invalid)."""
        return await self._call("PUT", "/v1/policy", json={"toml": toml_text})

    async def engine_override(self) -> Answer:
        """The project's engine override (``GET /v1/policy/engine``)."""
        return await self._call("GET", "/v1/policy/engine")

    async def put_engine_override(self, values: Mapping[str, Any]) -> Answer:
        """Replace the project's engine override (400 naming the bad key if invalid)."""
        return await self._call("PUT", "/v1/policy/engine", json={"engine": dict(values)})

    async def delete_engine_override(self) -> Answer:
        return await self._call("DELETE", "/v1/policy/engine")

    async def verdict(self, event_id: str) -> Answer:
        return await self._call("GET", f"/v1/verdicts/{quote(event_id, safe='')}")

    async def approvals(self, limit: int = 100, cursor: str | None = None) -> Answer:
        params = {"limit": str(limit)}
        if cursor:
            params["cursor"] = cursor
        return await self._call("GET", "/v1/approvals", params=params)

    async def decide(
        self, event_id: str, decision: str, reason: str = "", *,
        idempotency_key: str | None = None,
    ) -> Answer:
        return await self._call(
            "POST", f"/v1/approvals/{quote(event_id, safe='')}", json={"decision": decision, "reason": reason},
            headers=self._idempotency(idempotency_key),
        )
