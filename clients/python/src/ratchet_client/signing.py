"""Event signatures, v2: HMAC-SHA256 over the RFC 8785 (JCS) form of the whole event.

The signed object is the event exactly as it is sent, without ``signature``, with ``project_id``
set to the API key's project and ``timestamp`` set to the integer signing time (Unix seconds).
The gateway's docs (docs/api.md, "Event signatures") state the rule; docs/signature-vectors.json
holds vectors that these functions are tested against.

>>> ev = {"event_id": "e-1", "agent_id": "billing-bot", "run_id": "r1", "service": "stripe",
...       "action": "refunds.create", "payload": {"amount": 12.5}}
>>> sign_event("as_example-secret", "prj_example", ev, 1700000000)[:3]
'v2='
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import rfc8785

__all__ = ["SCHEME", "canonical", "sign_event", "signed_object"]

SCHEME = "v2"


def canonical(value: Any) -> bytes:
    """RFC 8785 bytes of a JSON value; ``ValueError`` if it has none (NaN, infinities,
    integers beyond ±(2**53 − 1), lone surrogates)."""
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        raise ValueError(f"the event has no portable canonical form: {exc}") from None


def signed_object(event: Mapping[str, Any], project_id: str, timestamp: int) -> dict[str, Any]:
    """What is signed: the event less ``signature``, with ``project_id`` and ``timestamp``."""
    out = {k: v for k, v in event.items() if k != "signature"}
    out["project_id"] = project_id
    out["timestamp"] = int(timestamp)
    return out


def sign_event(secret: str, project_id: str, event: Mapping[str, Any], timestamp: int) -> str:
    """``v2=<hex HMAC-SHA256>`` of the event under the agent's secret."""
    message = canonical(signed_object(event, project_id, timestamp))
    return f"{SCHEME}=" + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
