"""A scratch key namespace seeded, on first use, from an existing one: what-if runs that write
nothing outside their own throwaway state.

``ratchet replay --no-learn --namespace NS`` scores recorded events against the baseline under
``NS``. Scoring still writes: per-run state (last node, dedup answers), guardrail counters
(velocity windows, daily cost, run history) and the agent's service modes. Pointed at a live
prefix, those writes would change real agents' counts. So the replay runs in a scratch namespace
instead, and before each batch :class:`ScratchSeeder` copies, for every chain, agent and run it
has not seen yet, the keys the engine will read for it (``ratchet.store.keys`` names them) from ``NS``.
Reading ``NS`` is all it ever does there.

``COPY`` keeps the key's hash tag (only the prefix differs), so source and copy share a Redis
Cluster slot; the copy gets the source's TTL, and a key that does not exist in ``NS`` is simply
not copied.
"""

from __future__ import annotations

from collections.abc import Iterable

from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient, RedisStore

__all__ = ["ScratchSeeder"]


class ScratchSeeder(RedisStore):
    """Copies the engine's state for each new chain / agent / run from ``source`` to ``scratch``.

    Each key is copied once, the first time its chain, agent or run appears: after that the
    scratch copy is the replay's own state (a run whose state the replay deleted must not come
    back from the source). A Redis failure is :class:`models.errors.UnavailableError`.
    """

    def __init__(self, client: RedisClient, *, source: Keys, scratch: Keys) -> None:
        if source.prefix == scratch.prefix:
            raise ValueError("the scratch namespace must differ from the source namespace")
        self.client, self.source, self.scratch = client, source, scratch
        self._done: set[tuple[str, ...]] = set()
        self.copied = 0

    def _pairs(self, items: Iterable[tuple[str, str, str, str]]) -> list[tuple[str, str]]:
        """(source key, scratch key) for the not-yet-seeded parts of (chain tag, project,
        agent, run id) items."""
        pairs: list[tuple[str, str]] = []

        def both(name: str, *args: str) -> tuple[str, str]:
            src, dst = getattr(self.source, name)(*args), getattr(self.scratch, name)(*args)
            return src, dst

        for chain, project, agent, run in items:
            guard = self.source.guard_tag(project, agent)
            for part in (("c", chain), ("r", chain, run), ("a", guard), ("g", guard, run)):
                if part in self._done:
                    continue
                self._done.add(part)
                if part[0] == "c":
                    pairs += zip(self.source.chain_keys(chain).as_list(),
                                 self.scratch.chain_keys(chain).as_list(), strict=True)
                elif part[0] == "r":
                    pairs.append(both("run", chain, run))
                elif part[0] == "a":
                    src, dst = (self.source.guard_agent_keys(guard),
                                self.scratch.guard_agent_keys(guard))
                    pairs += [(src.window, dst.window), (src.cost, dst.cost),
                              (src.order, dst.order), (src.values, dst.values),
                              both("agent_services", project, agent)]
                else:
                    pairs += zip(self.source.guard_run_keys(guard, run).as_list(),
                                 self.scratch.guard_run_keys(guard, run).as_list(), strict=True)
        return pairs

    async def seed(self, items: Iterable[tuple[str, str, str, str]]) -> int:
        """Copy what the engine will read for these (chain tag, project, agent, run id) items;
        returns how many keys were copied (absent source keys are skipped by Redis)."""
        pairs = self._pairs(items)
        if not pairs:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for src, dst in pairs:
            pipe.copy(src, dst)
        copied = sum(bool(r) for r in await pipe.execute())
        self.copied += copied
        return copied
