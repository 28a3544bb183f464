"""Ratchet client SDK: sign events (v2, RFC 8785), send them in batches with retries, get
verdicts, and block a tool call until a person approves it.

Depends only on ``rfc8785`` and ``httpx``; nothing of the Ratchet server.
"""

from ratchet_client.aio import AsyncClient
from ratchet_client.client import Client
from ratchet_client.errors import (
    ActionRejected,
    ApprovalTimeout,
    AuthError,
    ConflictError,
    DecisionTimeout,
    NotFoundError,
    RatchetError,
    RateLimitedError,
    UnavailableError,
    ValidationError,
)
from ratchet_client.signing import canonical, sign_event
from ratchet_client.types import Accepted, Approval, Reason, Verdict

__all__ = [
    "Accepted",
    "ActionRejected",
    "Approval",
    "ApprovalTimeout",
    "AsyncClient",
    "AuthError",
    "Client",
    "ConflictError",
    "DecisionTimeout",
    "NotFoundError",
    "RatchetError",
    "RateLimitedError",
    "Reason",
    "UnavailableError",
    "ValidationError",
    "Verdict",
    "canonical",
    "sign_event",
]
__version__ = "0.1.0"
