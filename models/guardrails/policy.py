"""Per-project guardrail policy: TOML in, frozen dataclasses out, JSON-able dict and hash.

A policy is one ``[guardrails.<name>]`` table per guardrail (``velocity``, ``loop``,
``pattern``, ``pii``, ``cost``, ``entropy``, ``media``, ``order``, ``value``), each with ``enabled``, ``action``
(``flag|pause|reject``) and its parameters, plus optional overrides::

    [guardrails.cost.by_service.payments]      # events of service "payments"
    per_run_limit = 5.0
    [guardrails.cost.by_priority.critical]     # events of priority "critical"
    action = "reject"

A top-level ``on_error = "allow" | "flag" | "pause"`` sets what events get when Ratchet fails
to judge them (:mod:`models.on_error`; unset: ``pause`` for high/critical, else ``allow``).

An override changes only the keys it names (nested tables merge key by key, arrays replace);
a priority override applies after a service override. Keys that shape the state Redis keeps
(velocity ``window_s``, loop ``history``, entropy ``window``, order's and value's settings) and pattern
``rules`` are set once, at the top. Every omitted key takes its default
(:func:`default_policy`); unknown keys and bad values raise
:class:`~models.errors.ValidationError` with ``field`` set to the dotted path
(``guardrails.velocity.per_run.limit``).

>>> p = parse_policy_toml('''
... [guardrails.velocity.per_run]
... limit = 50
... [guardrails.cost.by_priority.critical]
... action = "reject"
... ''')
>>> p.velocity.for_event("crm", "normal").per_run.limit
50
>>> p.cost.for_event("crm", "critical").action, p.cost.for_event("crm", "high").action
('reject', 'flag')
>>> policy_from_dict(policy_to_dict(p)) == p and policy_hash(p) != policy_hash(default_policy())
True
>>> try:
...     parse_policy_toml('[guardrails.velocity.per_run]\\nlimit = -1')
... except ValidationError as exc:
...     print(exc.field)
guardrails.velocity.per_run.limit
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from models import toml_text
from models.errors import ValidationError
from models.events import PRIORITIES
from models.guardrails._schema import as_int, as_str, as_table, check_keys, join, pick
from models.guardrails.cost import CostConfig, cost_to_dict, parse_cost
from models.guardrails.entropy import EntropyConfig, entropy_to_dict, parse_entropy
from models.guardrails.loop import LoopConfig, loop_to_dict, parse_loop
from models.guardrails.media import MediaConfig, media_to_dict, parse_media
from models.guardrails.order import OrderConfig, order_to_dict, parse_order
from models.guardrails.pattern import PatternConfig, parse_pattern, pattern_to_dict
from models.guardrails.pii import DEFAULT_DETECTORS, PiiConfig, parse_pii, pii_to_dict
from models.guardrails.values import ValueConfig, parse_values, values_to_dict
from models.guardrails.velocity import VelocityConfig, parse_velocity, velocity_to_dict
from models.on_error import parse_on_error
from models.verdict import HOLDING

__all__ = [
    "GUARDRAILS",
    "Guardrail",
    "Policy",
    "ValidationError",
    "default_policy",
    "parse_policy",
    "parse_policy_toml",
    "policy_from_dict",
    "policy_hash",
    "policy_to_dict",
]

C = TypeVar("C")
POLICY_VERSION = 1
_TOP_KEYS = ("version", "description", "on_error", "guardrails")
_OVERRIDES = ("by_service", "by_priority")
_MAX_SERVICES = 256


class _Parser(Protocol[C]):
    def __call__(
        self, table: Mapping[str, Any], path: str, base: C, *, override: bool = False
    ) -> C: ...


@dataclass(frozen=True, slots=True)
class _Spec(Generic[C]):
    default: C
    parse: _Parser[C]
    to_dict: Callable[[C], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Guardrail(Generic[C]):
    """One guardrail: its base config, its overrides, and the config resolved for each."""

    base: C
    #: ``base`` with each service's override applied.
    by_service: Mapping[str, C] = field(default_factory=lambda: MappingProxyType({}))
    #: ``base`` with each priority's override applied.
    by_priority: Mapping[str, C] = field(default_factory=lambda: MappingProxyType({}))
    #: The override tables as written (values normalized), for :func:`policy_to_dict`.
    service_overrides: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    priority_overrides: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    #: (service, priority) -> config, for services that have an override.
    resolved: Mapping[tuple[str, str], C] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )

    def for_event(self, service: str, priority: str) -> C:
        """The config that applies to an event of ``service`` and ``priority``."""
        if self.resolved:
            hit = self.resolved.get((service, priority))
            if hit is not None:
                return hit
        return self.by_priority.get(priority, self.base)


@dataclass(frozen=True, slots=True)
class Policy:
    velocity: Guardrail[VelocityConfig]
    loop: Guardrail[LoopConfig]
    pattern: Guardrail[PatternConfig]
    pii: Guardrail[PiiConfig]
    cost: Guardrail[CostConfig]
    entropy: Guardrail[EntropyConfig]
    media: Guardrail[MediaConfig]
    order: Guardrail[OrderConfig] = field(default_factory=lambda: Guardrail(OrderConfig()))
    value: Guardrail[ValueConfig] = field(default_factory=lambda: Guardrail(ValueConfig()))
    description: str = ""
    version: int = POLICY_VERSION
    #: What events get when Ratchet fails to judge them (:mod:`models.on_error`); None: the
    #: default by priority.
    on_error: str | None = None
    #: (service, priority) → the configs an event gets (:meth:`configs_for`), filled as
    #: events come (a policy is immutable, so is what it resolves to).
    _resolved_events: dict[tuple[str, str], EventConfigs] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )
    _can_hold: dict[tuple[str, str], bool] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def configs_for(self, service: str, priority: str) -> EventConfigs:
        """The configs of every guardrail for an event of ``service`` and ``priority`` (one
        lookup per event instead of one :meth:`Guardrail.for_event` call per guardrail)."""
        key = (service, priority)
        hit = self._resolved_events.get(key)
        if hit is None:
            if len(self._resolved_events) >= _MAX_RESOLVED_EVENTS:
                self._resolved_events.clear()
            hit = self._resolved_events[key] = EventConfigs(
                self.velocity.for_event(service, priority), self.loop.for_event(service, priority),
                self.entropy.for_event(service, priority), self.cost.for_event(service, priority),
                self.pattern.for_event(service, priority), self.pii.for_event(service, priority),
                self.media.for_event(service, priority), self.order.for_event(service, priority),
                self.value.for_event(service, priority))
        return hit

    def can_hold(self, service: str, priority: str) -> bool:
        """Whether any guardrail can pause or reject an event of ``service`` and ``priority``
        (an action that holds it back from learning). False for the default policy (every
        action ``flag``): the worker then learns from a single event in its first round trip
        (ratchet.engine.engine.Engine.decide)."""
        key = (service, priority)
        hit = self._can_hold.get(key)
        if hit is None:
            if len(self._can_hold) >= _MAX_RESOLVED_EVENTS:
                self._can_hold.clear()
            hit = self._can_hold[key] = any(
                action in HOLDING for cfg in self.configs_for(service, priority)
                for action in _actions(cfg))
        return hit


def _actions(value: Any) -> Iterator[str]:
    """Every action a guardrail config can give a reason: its ``action``, the values of its
    ``*_actions`` maps (PII's per-detector actions), and its rules' own actions — found by
    walking the config's fields, so a new rule that follows the naming is covered. A disabled
    config gives none."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return
    if getattr(value, "enabled", True) is False:
        return
    for f in dataclasses.fields(value):
        item = getattr(value, f.name)
        if f.name == "action" and isinstance(item, str):
            yield item
        elif f.name.endswith("_actions") and isinstance(item, Mapping):
            yield from (a for a in item.values() if isinstance(a, str))
        elif isinstance(item, tuple):
            for member in item:
                yield from _actions(member)
        elif dataclasses.is_dataclass(item):
            yield from _actions(item)


class EventConfigs(NamedTuple):
    """What :meth:`Policy.configs_for` resolves: each guardrail's config for one event."""

    velocity: VelocityConfig
    loop: LoopConfig
    entropy: EntropyConfig
    cost: CostConfig
    pattern: PatternConfig
    pii: PiiConfig
    media: MediaConfig
    order: OrderConfig
    value: ValueConfig


#: Distinct (service, priority) pairs remembered per policy (services are agent-chosen names:
#: bounded, started again when full).
_MAX_RESOLVED_EVENTS = 4096


_SPECS: dict[str, _Spec[Any]] = {
    "velocity": _Spec(VelocityConfig(), parse_velocity, velocity_to_dict),
    "loop": _Spec(LoopConfig(), parse_loop, loop_to_dict),
    "pattern": _Spec(PatternConfig(), parse_pattern, pattern_to_dict),
    "pii": _Spec(PiiConfig(), parse_pii, pii_to_dict),
    "cost": _Spec(CostConfig(), parse_cost, cost_to_dict),
    "entropy": _Spec(EntropyConfig(), parse_entropy, entropy_to_dict),
    "media": _Spec(MediaConfig(), parse_media, media_to_dict),
    "order": _Spec(OrderConfig(), parse_order, order_to_dict),
    "value": _Spec(ValueConfig(), parse_values, values_to_dict),
}
#: Guardrail names, in the order their reasons are listed.
GUARDRAILS: tuple[str, ...] = tuple(_SPECS)


def _override_tables(value: Any, path: str, kind: str) -> dict[str, Mapping[str, Any]]:
    tables = as_table(value, path)
    if len(tables) > _MAX_SERVICES:
        raise ValidationError(f"{path} has more than {_MAX_SERVICES} entries", path)
    out: dict[str, Mapping[str, Any]] = {}
    for name, table in tables.items():
        where = join(path, str(name))
        if kind == "by_priority" and name not in PRIORITIES:
            raise ValidationError(
                f"{where}: priority must be one of {', '.join(PRIORITIES)}", where
            )
        as_str(name, where, max_chars=128)
        inner = as_table(table, where)
        for key in _OVERRIDES:
            if key in inner:
                raise ValidationError(
                    f"{join(where, key)}: overrides cannot be nested; a priority override "
                    "already applies on top of a service override",
                    join(where, key),
                )
        out[str(name)] = inner
    return out


def _project(full: Mapping[str, Any], shape: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``shape`` (an override as written), valued from ``full`` (normalized)."""
    return {
        key: _project(full[key], sub) if isinstance(sub, Mapping) else full[key]
        for key, sub in shape.items()
    }


def _guardrail(spec: _Spec[C], value: Any, path: str) -> Guardrail[C]:
    table = dict(as_table(value, path))
    services = _override_tables(table.pop("by_service", {}), join(path, "by_service"), "by_service")
    priorities = _override_tables(
        table.pop("by_priority", {}), join(path, "by_priority"), "by_priority"
    )
    base = spec.parse(table, path, spec.default)

    def over(tbl: Mapping[str, Any], where: str, under: C) -> C:
        return spec.parse(tbl, where, under, override=True)

    by_service = {
        name: over(tbl, join(join(path, "by_service"), name), base)
        for name, tbl in sorted(services.items())
    }
    by_priority = {
        prio: over(priorities[prio], join(join(path, "by_priority"), prio), base)
        for prio in PRIORITIES
        if prio in priorities
    }
    resolved: dict[tuple[str, str], C] = {}
    for svc, svc_cfg in by_service.items():
        for prio in PRIORITIES:
            where = join(join(path, "by_priority"), prio)
            tbl = priorities.get(prio)
            resolved[(svc, prio)] = svc_cfg if tbl is None else over(tbl, where, svc_cfg)
    return Guardrail(
        base=base,
        by_service=MappingProxyType(by_service),
        by_priority=MappingProxyType(by_priority),
        service_overrides=MappingProxyType(
            {n: _project(spec.to_dict(c), services[n]) for n, c in by_service.items()}
        ),
        priority_overrides=MappingProxyType(
            {n: _project(spec.to_dict(c), priorities[n]) for n, c in by_priority.items()}
        ),
        resolved=MappingProxyType(resolved),
    )


def parse_policy(obj: Any) -> Policy:
    """Validate a decoded policy document (from TOML or from stored JSON)."""
    doc = as_table(obj, "policy")
    check_keys(doc, _TOP_KEYS, "")
    pick(
        doc,
        "version",
        "",
        POLICY_VERSION,
        lambda v, p: as_int(v, p, lo=POLICY_VERSION, hi=POLICY_VERSION),
    )
    description = pick(doc, "description", "", "", lambda v, p: as_str(v, p, max_chars=2_000))
    on_error: str | None = pick(doc, "on_error", "", None, parse_on_error)
    guardrails = as_table(doc.get("guardrails", {}), "guardrails")
    check_keys(guardrails, GUARDRAILS, "guardrails")

    def part(name: str) -> Guardrail[Any]:
        return _guardrail(_SPECS[name], guardrails.get(name, {}), join("guardrails", name))

    return Policy(
        velocity=part("velocity"),
        loop=part("loop"),
        pattern=part("pattern"),
        pii=part("pii"),
        cost=part("cost"),
        entropy=part("entropy"),
        media=part("media"),
        order=part("order"),
        value=part("value"),
        description=description,
        on_error=on_error,
    )


def _refuse_unused_detector_actions(g: Guardrail[PiiConfig]) -> None:
    """A ``detector_actions`` key for a detector that no config it reaches has enabled would
    never apply: a typo or a forgotten ``detectors`` entry, refused so it cannot pass silently.
    A key at the top reaches every override; a service's key that service's configs (with each
    priority's override on top); a priority's key that priority's configs."""
    resolved = list(g.resolved.items())
    places: list[tuple[str, Mapping[str, Any], list[PiiConfig]]] = [
        ("guardrails.pii", g.base.detector_actions,
         [g.base, *g.by_service.values(), *g.by_priority.values(), *g.resolved.values()]),
    ]
    for svc, written in g.service_overrides.items():
        places.append((f"guardrails.pii.by_service.{svc}", written.get("detector_actions", {}),
                       [g.by_service[svc], *(c for (s, _), c in resolved if s == svc)]))
    for prio, written in g.priority_overrides.items():
        places.append((f"guardrails.pii.by_priority.{prio}", written.get("detector_actions", {}),
                       [g.by_priority[prio], *(c for (_, p), c in resolved if p == prio)]))
    for where, actions, configs in places:
        for det in sorted(actions):
            if any(det in c.detectors for c in configs):
                continue
            field_ = join(join(where, "detector_actions"), det)
            raise ValidationError(
                f"{field_}: the {det} detector is not enabled, so this action would never "
                f"apply; enable it by adding \"{det}\" to {join(where, 'detectors')} (the "
                f"default list is {', '.join(DEFAULT_DETECTORS)}; an array replaces it, so "
                "list the defaults you keep), or remove this action",
                field_,
            )


def parse_policy_toml(text: str) -> Policy:
    """Parse a policy file's text (TOML). Pure: reading the file is the caller's job.

    Nesting deeper than :data:`MAX_NESTING` is refused before parsing (the parser recurses).
    Stricter than :func:`policy_from_dict` (the stored form, which must keep loading): a
    ``detector_actions`` entry for a detector that is not enabled is refused."""
    policy = parse_policy(toml_text.loads(text, "the policy"))
    _refuse_unused_detector_actions(policy.pii)
    return policy


def default_policy() -> Policy:
    """The policy of a project that has none: every guardrail on, every action ``flag`` (it
    explains and counts, and never stops an agent its owners did not opt in to stopping), no
    pattern rules."""
    return parse_policy({})


def policy_from_dict(obj: Mapping[str, Any]) -> Policy:
    """Inverse of :func:`policy_to_dict` (the same validation as a TOML file)."""
    return parse_policy(obj)


def _guardrail_to_dict(spec: _Spec[Any], g: Guardrail[Any]) -> dict[str, Any]:
    out = spec.to_dict(g.base)
    for kind, tables in (
        ("by_service", g.service_overrides),
        ("by_priority", g.priority_overrides),
    ):
        if tables:
            out[kind] = copy.deepcopy({name: dict(t) for name, t in tables.items()})
    return out


def policy_to_dict(policy: Policy) -> dict[str, Any]:
    """A JSON-able document with every default spelled out (overrides as written)."""
    out: dict[str, Any] = {"version": policy.version}
    if policy.description:
        out["description"] = policy.description
    if policy.on_error is not None:
        out["on_error"] = policy.on_error
    out["guardrails"] = {
        name: _guardrail_to_dict(spec, getattr(policy, name)) for name, spec in _SPECS.items()
    }
    return out


def policy_hash(policy: Policy) -> str:
    """SHA-256 (hex) of the canonical JSON of :func:`policy_to_dict`: equal for policies that
    differ only in layout, comments, key order or spelled-out defaults."""
    canonical = json.dumps(
        policy_to_dict(policy), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
