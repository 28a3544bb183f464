"""Who a request comes from once its API key is checked (:func:`gateway.auth.authenticate`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Caller"]


@dataclass(frozen=True, slots=True)
class Caller:
    project_id: str
    #: First 12 hex digits of the key's SHA-256: names the key in audit trails, reveals nothing.
    key_id: str
    #: ``admin`` or ``ingest`` (:mod:`models.scopes`).
    role: str
    #: An ingest key bound to one agent: the only agent whose events it may send and read.
    agent_id: str | None
    #: The project's own key (an admin key made with the project), not one made with /v1/keys.
    primary: bool

    @property
    def actor(self) -> str:
        """How audit entries name this caller."""
        return f"apikey:{self.key_id}"
