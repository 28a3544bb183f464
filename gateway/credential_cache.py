"""What this gateway last read of callers' credentials: API key hash → grant, agent → secret.

The entries are *predictions*, never trusted on their own: they let an ingest request verify its
signatures and name its project's keys before it talks to Redis, and the one admission round
trip (:mod:`gateway.admission`) reads the current grant and secrets alongside its writes. When
they differ from the prediction — a key rotated or revoked, a secret rotated, on this gateway or
any other — the entry is dropped and the request takes the full path, so rotation takes effect on
the very next request without any message between gateways. A miss costs the full path once.

Bounded: past ``max_entries`` of a kind the kind is cleared (a flood of made-up keys cannot grow
the process; it never enters the cache anyway, only keys that authenticated do).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CredentialCache"]


@dataclass
class CredentialCache:
    max_entries: int = 100_000
    _grants: dict[str, str] = field(default_factory=dict)
    _secrets: dict[tuple[str, str], str] = field(default_factory=dict)

    def grant(self, key_sha: str) -> str | None:
        """The grant last read for the API key with this SHA-256 (hex), if any."""
        return self._grants.get(key_sha)

    def put_grant(self, key_sha: str, grant: str) -> None:
        if len(self._grants) >= self.max_entries:
            self._grants.clear()
        self._grants[key_sha] = grant

    def drop_grant(self, key_sha: str) -> None:
        self._grants.pop(key_sha, None)

    def secret(self, project_id: str, agent_id: str) -> str | None:
        """The signing secret last read for the agent, if any."""
        return self._secrets.get((project_id, agent_id))

    def put_secrets(self, project_id: str, secrets: dict[str, str]) -> None:
        if len(self._secrets) + len(secrets) > self.max_entries:
            self._secrets.clear()
        for agent_id, secret in secrets.items():
            self._secrets[(project_id, agent_id)] = secret

    def drop_secret(self, project_id: str, agent_id: str) -> None:
        self._secrets.pop((project_id, agent_id), None)
