"""Commands and script calls of several stores sent to Redis as one round trip.

Why: a single event crosses several stores in the worker (guardrail state and the agent's
service-mode record; the verdict save, the service-mode writes and the reply to a waiting
caller), and every separate call is a process-to-process round trip of ≈ 70–90 µs of CPU on
each side. A :class:`Round` collects what each store needs and sends it together.

On a single Redis a round is one pipeline, run in order, with scripts sent as ``EVALSHA``
(redis-py's own pipelined scripts would first ask ``SCRIPT EXISTS``: a second round trip every
time); a script the server lost (``NOSCRIPT``) is loaded and re-sent alone. On a Redis Cluster
redis-py's cluster pipeline refuses ``EVALSHA``, so the plain commands go as one cluster
pipeline and each script call beside it, concurrently: still one round trip deep, but not in
order (:attr:`Round.ordered` says which).

Failures: the first error of any command is raised (as a plain ``pipeline.execute()`` would),
after every answer has arrived; stores translate Redis failures as usual.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

__all__ = ["Command", "Deferred", "Op", "Round", "ScriptCall"]


@dataclass(frozen=True, slots=True)
class Command:
    """A plain command: ``("HSET", key, field, value)``."""

    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """One call of a registered script (all ``keys`` share one hash tag)."""

    script: AsyncScript
    keys: Sequence[Any]
    args: Sequence[Any]


#: One thing to send in a round.
Op = Command | ScriptCall


class Deferred:
    """Ops one part of a process hands to another to send in its round, and the answers some
    of them must give (the engine's learning observe calls must answer what their dry calls
    answered: :meth:`ratchet.engine.engine.Engine.decide`)."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self._expect: dict[int, Any] = {}

    def add(self, op: Op, *, expect: Any = None) -> None:
        """Queue ``op``; ``expect``: the answer it must give (None: any)."""
        if expect is not None:
            self._expect[len(self.ops)] = expect
        self.ops.append(op)

    def confirmed(self, answers: Sequence[Any]) -> bool:
        """Whether ``answers`` (of :attr:`ops`, in order) are the expected ones."""
        return all(answers[i] == want for i, want in self._expect.items())


class Round:
    """Ops of one round trip; :meth:`add` answers the op's position in :meth:`run`'s answers."""

    def __init__(self, client: Redis | RedisCluster) -> None:
        self.client = client
        self.ops: list[Op] = []
        #: The answers of the last :meth:`run`.
        self.answers: list[Any] = []

    @property
    def ordered(self) -> bool:
        """Whether the ops run in the order added (one pipeline on one Redis)."""
        return not isinstance(self.client, RedisCluster)

    def add(self, op: Op) -> int:
        self.ops.append(op)
        return len(self.ops) - 1

    def extend(self, ops: Sequence[Op]) -> list[int]:
        return [self.add(op) for op in ops]

    async def extend_run(self, ops: Sequence[Op]) -> list[Any]:
        """Add ``ops`` and run the round."""
        self.extend(ops)
        return await self.run()

    async def run(self) -> list[Any]:
        """Send every op; their answers in order. Raises the first error among them."""
        if not self.ops:
            return []
        if isinstance(self.client, RedisCluster):
            answers = await self._cluster(self.client)
        else:
            answers = await self._single(self.client)
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
        self.answers = answers
        return answers

    async def _single(self, client: Redis) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for op in self.ops:
            if isinstance(op, Command):
                pipe.execute_command(*op.args)
            else:
                pipe.evalsha(op.script.sha, len(op.keys), *op.keys, *op.args)
        answers: list[Any] = list(await pipe.execute(raise_on_error=False))
        for i, op in enumerate(self.ops):
            if isinstance(op, ScriptCall) and isinstance(answers[i], NoScriptError):
                # the server lost it (restart, SCRIPT FLUSH): the Script object loads and resends
                answers[i] = await op.script(keys=list(op.keys), args=list(op.args))
        return answers

    async def _cluster(self, client: RedisCluster) -> list[Any]:
        plain = [i for i, op in enumerate(self.ops) if isinstance(op, Command)]
        scripted = [i for i, op in enumerate(self.ops) if isinstance(op, ScriptCall)]

        async def commands() -> list[Any]:
            if not plain:
                return []
            pipe = client.pipeline()
            for i in plain:
                op = self.ops[i]
                assert isinstance(op, Command)
                pipe.execute_command(*op.args)
            return list(await pipe.execute(raise_on_error=False))

        async def call(op: Op) -> Any:
            assert isinstance(op, ScriptCall)
            try:
                return await op.script(keys=list(op.keys), args=list(op.args))
            except Exception as exc:  # noqa: BLE001  (reported per answer, like the pipeline)
                return exc

        got = await asyncio.gather(commands(), *(call(self.ops[i]) for i in scripted))
        answers: list[Any] = [None] * len(self.ops)
        for i, answer in zip(plain, got[0], strict=True):
            answers[i] = answer
        for i, answer in zip(scripted, got[1:], strict=True):
            answers[i] = answer
        return answers
