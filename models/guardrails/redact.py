"""Redacted hints: what a reason may say about a matched value — never the value itself.

A hint is at most a *public, well-known* prefix (``sk-``, ``AKIA``, ``ghp_``) plus a length, so
an operator can tell "a Stripe key" from "an AWS key" without the secret entering verdicts, logs,
webhooks or the audit trail.

>>> hint("sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKL", "sk-")
'sk-…(51 chars)'
>>> hint("alice@example.com")
'…(17 chars)'
>>> hint("short", "shortprefix")
'…(5 chars)'
"""

from __future__ import annotations

__all__ = ["MAX_EXAMPLES", "hint"]

#: How many example paths/hints a reason lists at most (the count is always exact).
MAX_EXAMPLES = 5


def hint(value: str, public_prefix: str = "") -> str:
    """``public_prefix`` is shown only when it is a strict prefix of at most 12 characters."""
    shown = (
        public_prefix
        if public_prefix
        and len(public_prefix) <= 12
        and len(public_prefix) < len(value)
        and value.startswith(public_prefix)
        else ""
    )
    return f"{shown}…({len(value)} chars)"
