"""Every Redis key name Ratchet uses is built here, and only here.

All keys of one chain share the hash tag ``{c:<chain tag>}`` so a chain's script runs on one
Redis Cluster slot; all keys of one project's control data share ``{p:<project>}``; rate-limit
buckets share ``{k:<key hash>}``; the event-id bindings of one agent share
``{e:<project>:<agent>}`` (registered agent ids contain no braces). The chain tag is a hash
(``models.nodes.ChainId.tag``), so agent ids containing braces cannot break the tagging.

>>> k = Keys("rt")
>>> k.chain_keys("ab12").edges
'rt:{c:ab12}:edges'
>>> k.run("ab12", "run-7")
'rt:{c:ab12}:run:run-7'
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Keys", "ChainKeys"]


@dataclass(frozen=True, slots=True)
class ChainKeys:
    """The fixed keys of one chain, in the order the engine scripts expect them."""

    meta: str
    edges: str
    rows: str
    nodes: str
    window: str
    snapshot: str

    def as_list(self) -> list[str]:
        return [self.meta, self.edges, self.rows, self.nodes, self.window, self.snapshot]


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "rt"

    # --- engine (one hash tag per chain) -------------------------------------------------
    def chain_keys(self, tag: str) -> ChainKeys:
        base = f"{self.prefix}:{{c:{tag}}}"
        return ChainKeys(
            meta=f"{base}:meta",
            edges=f"{base}:edges",
            rows=f"{base}:rows",
            nodes=f"{base}:nodes",
            window=f"{base}:win",
            snapshot=f"{base}:snap",
        )

    def run(self, tag: str, run_id: str) -> str:
        """Per-run state of a chain: last node, dedup answers, pending (held) edges."""
        return f"{self.prefix}:{{c:{tag}}}:run:{run_id}"

    def chain_index(self) -> str:
        """Set of known chain tags → labels (for `ratchet chains` and the demo summary)."""
        return f"{self.prefix}:chains"

    # --- verdicts and approvals (written by workers, read by the gateway) ----------------
    def verdict(self, project_id: str, event_id: str) -> str:
        return f"{self.prefix}:v:{project_id}:{event_id}"

    def paused(self, project_id: str) -> str:
        """Sorted set of paused event ids of a project (score = decided_at)."""
        return f"{self.prefix}:{{p:{project_id}}}:paused"

    def approval(self, project_id: str, event_id: str) -> str:
        """A human's decision on a paused event (shares the project tag with ``paused``)."""
        return f"{self.prefix}:{{p:{project_id}}}:approval:{event_id}"

    # --- replay protection (gateway) ---------------------------------------------------------
    def idempotency(self, project_id: str, key_sha256: str) -> str:
        """The first answer to an ``Idempotency-Key`` (its SHA-256) of a project."""
        return f"{self.prefix}:{{p:{project_id}}}:idem:{key_sha256}"

    def event_fingerprint(self, project_id: str, agent_id: str, event_id: str) -> str:
        """Fingerprint of the body an event id was first accepted with; one hash tag per agent,
        so one script call checks a batch of that agent's events."""
        return f"{self.prefix}:{{e:{project_id}:{agent_id}}}:eid:{event_id}"

    # --- control plane: projects, API keys, agents ----------------------------------------
    def project(self, project_id: str) -> str:
        return f"{self.prefix}:{{p:{project_id}}}:project"

    def projects(self) -> str:
        return f"{self.prefix}:projects"

    def api_key(self, key_sha256: str) -> str:
        """API key SHA-256 → project id."""
        return f"{self.prefix}:apikey:{key_sha256}"

    def agent(self, project_id: str, agent_id: str) -> str:
        return f"{self.prefix}:{{p:{project_id}}}:agent:{agent_id}"

    def agents(self, project_id: str) -> str:
        return f"{self.prefix}:{{p:{project_id}}}:agents"

    # --- guardrail state (one hash tag per agent) --------------------------------------------
    def guard_agent(self, project_id: str, agent_id: str) -> str:
        return f"{self.prefix}:{{g:{project_id}:{agent_id}}}:agent"

    def guard_run(self, project_id: str, agent_id: str, run_id: str) -> str:
        return f"{self.prefix}:{{g:{project_id}:{agent_id}}}:run:{run_id}"

    def policy(self, project_id: str) -> str:
        return f"{self.prefix}:{{p:{project_id}}}:policy"
