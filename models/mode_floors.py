"""Mode floors: the mode a service new to an agent acts by while its own chain learns.

An agent established on some services (their chains in soft-lock or locked) that starts calling a
new service is not unguarded while that service's chain is in shadow: the new chain acts by the
highest mode of the agent's other chains (its *floor*) for as long as it is in shadow, and by its
own mode once it left shadow by its own measure (``min_runs_soft`` runs that taught it something —
its runs capped by the events it learned — and a settled distribution). A critical chain is a
chain of its own here: the same service's other priority class floors it like any other chain.
Runs alone no longer lift a floor (Dec 4 attack run, round 5: one approved call repeated thirty
times gave a new service of a locked agent thirty learned runs, and the chain then acted by its own
shadow — anything allowed). The engine keeps one record per agent and service field,
``(mode, runs)``.

What a floor is must not depend on how events were batched. Inside one batch another service
of the agent may change mode (a checkpoint promotes it); an event after that point is floored by
the new state, as if every event had come alone. So the engine observes a batch's chains in
*rounds*: first every chain whose floor cannot change inside the batch (:func:`dependents`),
then the others with one floor per event read off the answers so far (:func:`event_floors`).
Chains in shadow may also depend on each other (a fresh agent's services leave shadow about
together): an event past the first position at which another such chain may still change
(:func:`change_position`) has a floor not known for sure, and the observe call stops before the
first of those the floor would decide — the next round continues from there, knowing more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from models.nodes import ChainId

#: (mode, runs) of one service field of an agent: mode 0 shadow, 1 soft-lock, 2 locked.
Record = tuple[int, int]
Agent = tuple[str, str]


def service_field(chain: ChainId) -> str:
    """The record field of a chain: its service, marked when the chain is the critical one."""
    return chain.service + ("\x1fcritical" if chain.critical else "")


def service_of(field: str) -> str:
    return field.partition("\x1f")[0]


def past_shadow(record: Record) -> bool:
    """Whether a chain left shadow: its own mode decides from then on, never a floor."""
    return record[0] > 0


def floor_of(records: Mapping[str, Record], field: str) -> int:
    """The floor of the chain recorded under ``field`` (:func:`service_field`) given an agent's
    records: none when the chain left shadow, else the highest mode of the agent's other
    chains — the same service's other priority class included: a critical chain new to a locked
    service is floored by it (its own history decides, not its sibling's). Runs in shadow do not
    lift it: a chain of many runs that never settled is still floored.

    >>> floor_of({"crm": (2, 90), "mail": (0, 3)}, "mail")
    2
    >>> floor_of({"crm": (2, 90), "mail": (0, 31)}, "mail")
    2
    >>> floor_of({"crm": (2, 90), "mail": (1, 31)}, "mail")
    0
    >>> floor_of({"crm": (1, 90), "mail\\x1fcritical": (2, 40), "mail": (0, 2)}, "mail")
    2
    >>> floor_of({"crm": (2, 90)}, "crm\\x1fcritical")
    2
    """
    own = records.get(field)
    if own is not None and past_shadow(own):
        return 0
    return max((record[0] for f, record in records.items() if f != field), default=0)


def dependents(
    chains: Sequence[ChainId],
    run_ids: Callable[[int], Iterable[str]],
    seen: Mapping[Agent, Mapping[str, Record]],
    footing_runs: Callable[[str], int],
) -> list[bool]:
    """Which chains of a batch have a floor that may change inside it; ``run_ids(j)`` gives the
    run ids of chain ``j``'s events in the batch (asked only for a chain in shadow whose agent
    has other chains in the batch: the common batch pays nothing per event).

    A chain in shadow depends on the agent's other chains in the batch when one of them may
    change mode: one past shadow (a checkpoint may promote it) or one in shadow that may leave it
    here (its footing recorded plus its run ids in the batch reach ``footing_runs``: a chain
    leaves shadow only with that footing).
    Every other chain is observed in the first round, floored by the records alone.
    ``footing_runs(project_id)``: the project's ``min_runs_soft`` (its engine override's).

    >>> from models.nodes import chain_for
    >>> a, b, c = (chain_for("p", "x", s, "normal") for s in ("crm", "mail", "web"))
    >>> seen = {("p", "x"): {"crm": (1, 80), "mail": (0, 28), "web": (0, 3)}}
    >>> runs = [["r1"], ["r1", "r2"], ["r1"]]
    >>> dependents([a, b, c], runs.__getitem__, seen, lambda project: 30)
    [False, True, True]
    >>> dependents([b, c], runs[1:].__getitem__, seen, lambda project: 30)
    [False, True]
    >>> dependents([b, c], [["r1"], ["r1"]].__getitem__, seen, lambda project: 30)
    [False, False]
    >>> many = {("p", "x"): {"crm": (1, 80), "mail": (0, 45)}}   # 45 runs, still in shadow
    >>> dependents([a, b], runs.__getitem__, many, lambda project: 30)
    [False, True]
    """
    by_agent: dict[Agent, list[int]] = {}
    for j, chain in enumerate(chains):
        by_agent.setdefault((chain.project_id, chain.agent_id), []).append(j)
    out = [False] * len(chains)
    for agent, members in by_agent.items():
        if len(members) < 2:
            continue
        records = seen.get(agent, {})
        soft = footing_runs(agent[0])
        past = [past_shadow(_record(records, chains[j])) for j in members]
        if all(past):
            continue
        # footing grows by at most one per event (runs, capped by the events learned)
        moving = [f or _record(records, chains[j])[1] + sum(1 for _ in run_ids(j)) >= soft
                  for j, f in zip(members, past, strict=True)]
        for x, j in enumerate(members):
            out[j] = not past[x] and any(m for y, m in enumerate(moving) if y != x)
    return out


def _record(records: Mapping[str, Record], chain: ChainId) -> Record:
    return records.get(service_field(chain), (0, 0))


def event_floors(
    chain: ChainId,
    indices: Sequence[int],
    records: Mapping[str, Record],
    updates: Sequence[tuple[int, str, Record]],
) -> int | tuple[int, ...]:
    """The floor of each of a chain's events (batch positions ``indices``), from the agent's
    records at the batch's start and ``updates``: (batch position, field, record after that
    event) of the agent's chains already observed, in position order. One int when every event
    has the same floor.

    >>> from models.nodes import chain_for
    >>> mail = chain_for("p", "x", "mail", "normal")
    >>> event_floors(mail, [1, 4, 6], {"crm": (0, 40)}, [(3, "crm", (1, 50))])
    (0, 1, 1)
    >>> event_floors(mail, [1, 4], {"crm": (1, 40)}, [])
    1
    """
    state = dict(records)
    floors: list[int] = []
    u, n = 0, len(updates)
    floor = floor_of(state, service_field(chain))
    for i in indices:
        if u < n and updates[u][0] < i:
            while u < n and updates[u][0] < i:
                _, field, record = updates[u]
                state[field] = record
                u += 1
            floor = floor_of(state, service_field(chain))
        floors.append(floor)
    if all(f == floors[0] for f in floors):
        return floors[0] if floors else 0
    return tuple(floors)


def changes(
    field: str, indices: Sequence[int], records: Iterable[tuple[int, int]]
) -> list[tuple[int, str, Record]]:
    """The updates of one chain for :func:`event_floors`: (batch position, field, record) at
    its first event and wherever what it floors others by (its mode) changes; ``records`` holds
    (mode, runs) after each of its events at ``indices``.

    >>> changes("crm", [2, 5, 7, 9], [(0, 28), (0, 29), (0, 30), (1, 31)])
    [(2, 'crm', (0, 28)), (9, 'crm', (1, 31))]
    """
    out: list[tuple[int, str, Record]] = []
    last: int | None = None
    for i, (mode, runs) in zip(indices, records, strict=False):
        if mode != last:
            out.append((i, field, (mode, runs)))
            last = mode
    return out


def change_position(
    positions: Sequence[int],
    done: int,
    known: Record,
    footing_runs: int,
) -> int | None:
    """The first batch position at which a chain whose first ``done`` events are observed may
    change what it floors others by (its mode); None: not in this batch. ``known``: the chain's
    record after its observed events. A chain leaves shadow only with ``footing_runs`` of
    footing — its runs capped by the events it learned, which grows by at most one per event:
    each event left is counted as one more (an upper bound: the position is never late).

    >>> change_position([3, 5, 8], 0, (0, 28), 30)
    5
    >>> change_position([3, 5, 8], 1, (0, 29), 30)
    5
    >>> change_position([3, 5, 8], 1, (1, 35), 30)
    5
    >>> change_position([3], 0, (0, 2), 30) is None
    True
    """
    if past_shadow(known) or known[1] >= footing_runs:
        return positions[done] if done < len(positions) else None
    k = done + max(footing_runs - known[1], 1) - 1
    return positions[k] if k < len(positions) else None
