"""Every Redis key name Ratchet uses is built here, and only here.

Every part of a key that comes from a caller (run id, agent id, event id, client address…) goes
through :func:`part`, which percent-encodes ``%``, ``:``, ``{`` and ``}``: an encoded part
contains no ``:``, so a caller's id can never reach into the structure of another key (run
``pr-X:nodes`` cannot name run ``pr-X``'s ``:nodes`` key), and no ``{``/``}``, so it can never
open a hash tag. The encoding is one-to-one (``%`` itself is encoded), so distinct ids stay
distinct keys. Ids without those four characters are unchanged.

All keys of one chain share the hash tag ``{c:<chain tag>}`` so a chain's script runs on one
Redis Cluster slot; all keys of one project's control data share ``{p:<project>}``; rate-limit
buckets are ONE key each (``{rl:<project>}``); signup state shares ``{signup}``; one agent's
guardrail state shares ``{g:<agent tag>}``; the event-id bindings of one project share
``{e:<project>}``; a project's verdict buckets share ``{v:<project>}``. Chain and agent tags are
hashes
(``models.nodes.ChainId.tag``, :meth:`Keys.guard_tag`), so ids containing braces cannot break the
tagging.

>>> k = Keys("rt")
>>> k.chain_keys("ab12").edges
'rt:{c:ab12}:edges'
>>> k.run("ab12", "run-7")
'rt:{c:ab12}:run:run-7'
>>> k.guard_run_keys("9f", "r1").nodes
'rt:{g:9f}:run:r1:nb'
>>> k.guard_run_keys("9f", "r1:nodes").state
'rt:{g:9f}:run:r1%3Anodes'
>>> k.event_fingerprint("prj_1", "{x}")
'rt:{e:prj_1}:eid:%7Bx%7D'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import xxhash

__all__ = ["ChainKeys", "GuardAgentKeys", "GuardRunKeys", "Keys", "event_field", "part"]

_ESCAPE = str.maketrans({"%": "%25", ":": "%3A", "{": "%7B", "}": "%7D"})


#: Any character :func:`part` escapes (a search is ≈ 10x cheaper than ``str.translate``).
_NEEDS_ESCAPE = re.compile("[%:{}]")


def part(text: str) -> str:
    """A caller-supplied string made safe as one segment of a key (see the module docstring)."""
    return text.translate(_ESCAPE) if _NEEDS_ESCAPE.search(text) else text


#: Fields of the event ids seen lately: each is needed twice per event (the guardrail and the
#: chain script in a worker; the claim's digest and its argument in a gateway). Bounded.
_FIELDS: dict[str, bytes] = {}
_FIELDS_MAX = 16_384


def event_field(event_id: str) -> bytes:
    """:func:`_event_field`, remembered per event id (the second call is a lookup)."""
    got = _FIELDS.get(event_id)
    if got is None:
        got = _event_field(event_id)
        if len(_FIELDS) >= _FIELDS_MAX:
            _FIELDS.clear()
        _FIELDS[event_id] = got
    return got


def _event_field(event_id: str) -> bytes:
    """The run-hash field under which the engine scripts keep an event's first answer (dedup):
    ``u`` + the 16 bytes of a canonical (lowercase) UUID, ``e:`` + the id otherwise.

    Every event leaves one in the chain's run hash and one in the agent's guardrail run hash
    for a day; a UUID as text is 36 bytes, as bytes 16 (measured: ~40 bytes per event less in
    Redis). The two forms start differently, so they never collide; the run hashes' other fields
    (``last``, ``n``, ``h…``) start with neither.

    >>> event_field("2b63178a-08d0-4bdd-b89b-e270ec0c47ba").hex()
    '752b63178a08d04bddb89be270ec0c47ba'
    >>> event_field("ev-7"), event_field("2B63178A-08D0-4BDD-B89B-E270EC0C47BA")[:3]
    (b'e:ev-7', b'e:2')
    """
    # Per event on the hot path, twice (guardrail and chain scripts): the dashes where a UUID
    # has them, then its 32 digits decoded and re-encoded — equal to the text only for a
    # canonical lowercase UUID (what a full match of ``[0-9a-f]{8}-…-[0-9a-f]{12}`` +
    # ``uuid.UUID(...).bytes`` decide at ~5x the cost; tests/unit/test_event_field.py).
    if len(event_id) == 36 and event_id[8] == event_id[13] == event_id[18] == event_id[23] == "-":
        digits = event_id.replace("-", "")
        try:
            raw = bytes.fromhex(digits)
        except ValueError:
            pass
        else:
            if len(raw) == 16 and raw.hex() == digits:
                return b"u" + raw
    return b"e:" + event_id.encode()


@dataclass(frozen=True, slots=True)
class ChainKeys:
    """The fixed keys of one chain, in the order the engine scripts expect them."""

    meta: str
    edges: str
    rows: str
    nodes: str
    window: str
    #: The distribution at the last checkpoint: one MessagePack string (lua/observe.lua KEYS[6]).
    snapshot: str
    #: The action-level back-off model's counts (lua/observe.lua KEYS[7]).
    coarse: str
    #: The snapshot as releases before kept it (a hash, another name: a worker of the previous
    #: release still running during an upgrade keeps reading its own); read when ``snapshot``
    #: is absent, deleted at the checkpoint that writes ``snapshot`` (lua/observe.lua KEYS[8]).
    snapshot_hash: str

    def as_list(self) -> list[str]:
        return [self.meta, self.edges, self.rows, self.nodes, self.window, self.snapshot,
                self.coarse, self.snapshot_hash]


@dataclass(frozen=True, slots=True)
class GuardAgentKeys:
    """Per-agent guardrail state (``lua/guardrails.lua`` KEYS[1..4])."""

    #: hash: velocity slot → events, plus ``w`` = window length (ms) the slots were cut for.
    window: str
    #: hash: UTC day number → sum of ``cost`` of the agent that day.
    cost: str
    #: hash: the agent's step order (runs, step pairs learned; lua/guardrails.lua).
    order: str
    #: hash: the values the agent's calls carried (slot → range or set; lua/guardrails.lua).
    values: str


@dataclass(frozen=True, slots=True)
class GuardRunKeys:
    """Per-run guardrail state (four KEYS per run in ``lua/guardrails.lua``)."""

    #: hash: ``n`` events, ``cost`` sum, ``o`` last step, ``e:<event id>`` → the state answered
    #: for that event.
    state: str
    #: hash: velocity slot → events of the run (as ``GuardAgentKeys.window``).
    window: str
    #: string: the run's most recent nodes, oldest first, each behind its length (one byte).
    nodes: str
    #: list: the same, as the previous release kept it; read until it expires.
    node_list: str

    def as_list(self) -> list[str]:
        return [self.state, self.window, self.nodes, self.node_list]


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
            snapshot=f"{base}:snap2",
            coarse=f"{base}:coarse",
            snapshot_hash=f"{base}:snap",
        )

    def chain_labels(self, tag: str) -> str:
        """Hash of a chain's node labels: node id → label JSON (``lua/label_nodes.lua``)."""
        return f"{self.prefix}:{{c:{tag}}}:labels"

    def run(self, tag: str, run_id: str) -> str:
        """Per-run state of a chain: last node, dedup answers, pending (held) edges."""
        return f"{self.prefix}:{{c:{tag}}}:run:{part(run_id)}"

    # --- verdicts and approvals (written by workers, read by the gateway) ----------------
    def verdict(self, project_id: str, event_id: str) -> str:
        """A verdict's own key: the layout before verdict buckets (:meth:`verdict_bucket`),
        still read so verdicts stored by an older release are found until they expire."""
        return f"{self.prefix}:v:{part(project_id)}:{part(event_id)}"

    def verdict_bucket(self, project_id: str, kind: str, index: int) -> str:
        """Hash of a project's verdicts decided in one time bucket (event id → verdict JSON);
        ``kind`` ``a`` = allow, ``n`` = the rest (ratchet.store.verdicts). One hash tag per
        project, ``{v:<project>}``, so one script call saves a batch and one looks an id up.

        >>> Keys("rt").verdict_bucket("p1", "a", 2940123)
        'rt:{v:p1}:vb:a:2940123'
        """
        return f"{self.prefix}:{{v:{part(project_id)}}}:vb:{part(kind)}:{part(str(index))}"

    def paused(self, project_id: str) -> str:
        """Sorted set of paused event ids of a project (score = decided_at)."""
        return f"{self.prefix}:{{p:{part(project_id)}}}:paused"

    def paused_by_agent(self, project_id: str, agent_id: str) -> str:
        """Sorted set of one agent's paused event ids (score = decided_at), beside ``paused``
        (same project tag): ``GET /v1/approvals?agent_id=``."""
        return f"{self.prefix}:{{p:{part(project_id)}}}:pausedby:{part(agent_id)}"

    def decisions(self, project_id: str) -> str:
        """Stream of a project's decisions (non-allow verdicts, approvals), newest last, capped
        (shares the project tag with ``paused``: an approval and its entry are one transaction)."""
        return f"{self.prefix}:{{p:{part(project_id)}}}:decisions"

    def approval(self, project_id: str, event_id: str) -> str:
        """A human's decision on a paused event (shares the project tag with ``paused``)."""
        return f"{self.prefix}:{{p:{part(project_id)}}}:approval:{part(event_id)}"

    # --- replay protection (gateway) ---------------------------------------------------------
    def idempotency(self, project_id: str, key_id: str, key_sha256: str) -> str:
        """The first answer to an ``Idempotency-Key`` (its SHA-256) sent with one API key (its
        key id) of a project: another API key's use of the same value is another record."""
        return f"{self.prefix}:{{p:{part(project_id)}}}:idem:{part(key_id)}:{part(key_sha256)}"

    def project_chains(self, project_id: str) -> str:
        """Sorted set of a project's chains (tag → when a gateway last saw it, ms): the per-
        project cap on chains (``lua/chains_admit.lua``)."""
        return f"{self.prefix}:{{p:{part(project_id)}}}:chains"

    def event_fingerprint(self, project_id: str, event_id: str) -> str:
        """Fingerprint of the body (agent included) an event id was first accepted with: the
        layout before :meth:`event_id_bucket` (one key per id), still read until it expires.
        Event ids are bound per PROJECT, like verdicts, so no agent can take over another
        agent's id; one hash tag per project, so one script call checks a batch."""
        return f"{self.prefix}:{{e:{part(project_id)}}}:eid:{part(event_id)}"

    def event_id_bucket(self, project_id: str, index: int) -> str:
        """Hash of a project's event-id bindings claimed in one time bucket (compact id →
        compact fingerprint): the layout before :meth:`event_ids`, still read until it expires.

        >>> Keys("rt").event_id_bucket("p1", 122)
        'rt:{e:p1}:eb:122'
        """
        return f"{self.prefix}:{{e:{part(project_id)}}}:eb:{index}"

    def event_ids(self, project_id: str) -> str:
        """Hash of a project's event-id bindings: 24-byte records packed into slot fields that
        split as the project's rate grows (ratchet.store.event_id_buckets). Shares
        ``{e:<project>}`` with :meth:`event_id_bucket` and :meth:`event_fingerprint`, the
        layouts before, still read until they expire.

        >>> Keys("rt").event_ids("p1")
        'rt:{e:p1}:ids'
        """
        return f"{self.prefix}:{{e:{part(project_id)}}}:ids"

    # --- control plane: projects, API keys, agents ----------------------------------------
    def project(self, project_id: str) -> str:
        return f"{self.prefix}:{{p:{part(project_id)}}}:project"

    def projects(self) -> str:
        return f"{self.prefix}:projects"

    def api_key(self, key_sha256: str) -> str:
        """API key SHA-256 → its grant: the project id (the project's own key), or
        ``"<project> <role>[ <agent>]"`` for a role-scoped key (models/scopes.py)."""
        return f"{self.prefix}:apikey:{part(key_sha256)}"

    def project_keys(self, project_id: str) -> str:
        """Hash of a project's role-scoped keys: key id (12 hex) → JSON (role, agent_id,
        created_at, sha256). The key itself is never stored."""
        return f"{self.prefix}:{{p:{part(project_id)}}}:keys"

    def agent(self, project_id: str, agent_id: str) -> str:
        return f"{self.prefix}:{{p:{part(project_id)}}}:agent:{part(agent_id)}"

    def agents(self, project_id: str) -> str:
        return f"{self.prefix}:{{p:{part(project_id)}}}:agents"

    # --- guardrail state (one hash tag per agent) --------------------------------------------
    def guard_tag(self, project_id: str, agent_id: str) -> str:
        """The hash tag of one agent's guardrail state: xxh3_64 hex of (project, agent), so
        ids containing braces cannot break the tagging (like :attr:`models.nodes.ChainId.tag`)."""
        return xxhash.xxh3_64_hexdigest(f"{project_id}\x1f{agent_id}".encode())

    def agent_services(self, project_id: str, agent_id: str) -> str:
        """Hash of the agent's chains: service (``\x1fcritical`` for critical chains) →
        ``"mode:runs"`` — how the engine tells a service new to an established agent."""
        return f"{self.prefix}:{{g:{self.guard_tag(project_id, agent_id)}}}:svc"

    def guard_agent_keys(self, tag: str) -> GuardAgentKeys:
        base = f"{self.prefix}:{{g:{tag}}}"
        return GuardAgentKeys(window=f"{base}:win", cost=f"{base}:cost", order=f"{base}:ord",
                              values=f"{base}:val")

    def guard_run_keys(self, tag: str, run_id: str) -> GuardRunKeys:
        base = f"{self.prefix}:{{g:{tag}}}:run:{part(run_id)}"
        return GuardRunKeys(state=base, window=f"{base}:win", nodes=f"{base}:nb",
                            node_list=f"{base}:nodes")

    # --- guardrail policy (control plane, project tag) ------------------------------------------
    def policy(self, project_id: str) -> str:
        """Hash: toml, json (normalized), hash, version, updated_at, updated_by."""
        return f"{self.prefix}:{{p:{part(project_id)}}}:policy"

    def engine_override(self, project_id: str) -> str:
        """Hash: json (the project's engine parameters), version, updated_at, updated_by."""
        return f"{self.prefix}:{{p:{part(project_id)}}}:engine"

    # --- platform security: rate limits, signup, brute-force counters ------------------------
    def rate_bucket(self, project_id: str, kind: str) -> str:
        """One token bucket (a single key; a project's buckets share its hash tag, so one script
        may take from two of them on a Redis Cluster: ``lua/ratelimit.lua``)."""
        return f"{self.prefix}:{{rl:{part(project_id)}}}:{part(kind)}"

    def org(self, org_id: str) -> str:
        return f"{self.prefix}:{{o:{part(org_id)}}}:org"

    def signup_ip(self, ip: str) -> str:
        """Sorted set of signup tokens issued to one client IP (score = issue time, ms)."""
        return f"{self.prefix}:{{signup}}:ip:{part(ip)}"

    def signup_day(self, day: str) -> str:
        """Signup tokens issued on one UTC day (``YYYYMMDD``), all clients."""
        return f"{self.prefix}:{{signup}}:day:{part(day)}"

    def signup_token(self, token_sha256: str) -> str:
        """An unredeemed signup token (SHA-256 only, like API keys) → its request, JSON."""
        return f"{self.prefix}:{{signup}}:token:{part(token_sha256)}"

    def auth_failures(self, ip: str) -> str:
        """Failed authentications of one client IP in the current window (a counter)."""
        return f"{self.prefix}:{{af:{part(ip)}}}:authfail"

    # --- audit log (one hash tag per project) -------------------------------------------------
    def audit_head(self, project_id: str) -> str:
        """Hash: seq, hash, at_ms of the newest audit entry of a project."""
        return f"{self.prefix}:{{p:{part(project_id)}}}:audit:head"

    def audit_entries(self, project_id: str) -> str:
        """Sorted set: score = seq, member = entry JSON."""
        return f"{self.prefix}:{{p:{part(project_id)}}}:audit:entries"

    def audit_times(self, project_id: str) -> str:
        """Sorted set: score = at_ms, member = seq (time-range queries, retention)."""
        return f"{self.prefix}:{{p:{part(project_id)}}}:audit:times"

    def audit_checkpoint(self, project_id: str) -> str:
        """Hash: seq, hash of the newest entry removed by retention (verification starts after)."""
        return f"{self.prefix}:{{p:{part(project_id)}}}:audit:checkpoint"

    # --- webhooks (per project) ------------------------------------------------------------------
    def webhooks(self, project_id: str) -> str:
        """Hash: webhook id → webhook JSON (url, actions, secret, created_at)."""
        return f"{self.prefix}:{{p:{part(project_id)}}}:webhooks"

    # --- reply routes (Redis pub/sub channels, not keys: nothing is stored) ----------------------
    def reply_channel(self, route: str) -> str:
        """The channel a gateway instance with reply route ``route`` listens on for the verdicts
        of its waiting callers (its own hash tag: one shard under sharded pub/sub)."""
        return f"{self.prefix}:{{r:{part(route)}}}:reply"
