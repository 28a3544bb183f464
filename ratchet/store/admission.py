"""Everything an ingest request needs from Redis, in one round trip.

An ingest request used to wait for four answers in a row: the client address's failure counter
with the API key's grant, the project's token bucket, the agents' secrets, and the event-id
claims. When the gateway already knows the caller's project and the agents' secrets
(:mod:`gateway.admission` keeps them as *predictions*), all of it goes out as one pipeline:

- ``GET``/``TTL`` of the address's failed-authentication counter (lockout);
- ``GET`` of the API key's grant and ``HGET`` of each agent's secret — the current values, so the
  caller can confirm its predictions in the same round trip: a rotated or revoked credential is
  seen by the very next request;
- one ``ratelimit.lua`` call (the project's ingest bucket, and its spread bucket for a batch of
  several agents) and one ``event_ids_claim.lua`` call (the
  project's event ids, :mod:`ratchet.store.event_id_buckets`): with the keys of the layouts
  before until the script answers that they are done with — a project's first call when it was
  created by this release (``event_id_buckets.born_settled``) — then the hash alone.

Each command and each script touches keys of one hash tag, so on a Redis Cluster the pipeline is
one round of parallel requests (one per node), still one round trip deep. Scripts are sent as
``EVALSHA`` inside the pipeline (redis-py's own pipeline scripts would first ask ``SCRIPT
EXISTS``: a second round trip); a script the server lost (``SCRIPT FLUSH``, restart) is loaded
and re-sent alone. With the rate limiter on its own Redis (``RATCHET_RATELIMIT_REDIS_URL``) its
call runs concurrently with the pipeline.

When the answers show the request must be refused after all (a prediction was stale, the
address is locked out, the bucket is empty), :meth:`AdmissionStore.release` unbinds the event
ids the request bound (``event_ids_release.lua``, compare and delete): a refused request leaves
no id behind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from ratchet.store.event_id_buckets import Settled, claim_answers, claim_call, release_call
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient, RedisStore
from ratchet.store.scripts import scripts_for

__all__ = ["AdmissionReads", "AdmissionStore", "RateCall"]

#: ``(KEYS, ARGV)`` of one ``ratelimit.lua`` call (:meth:`ratchet.store.ratelimit.RateLimiter.call`).
RateCall = tuple[list[str], list[str | int]]


@dataclass(slots=True)
class AdmissionReads:
    """The answers of one admission round trip."""

    #: The address's failed-authentication counter and its TTL, s (``None``: not asked).
    failures: bytes | None = None
    failures_ttl: int = -2
    #: The API key's grant as stored now (``None``: no such key, or not asked).
    grant: str | None = None
    #: The project's side of the key as stored now (``ratchet.platform.grants.key_side``;
    #: ``None``: nothing there, or not asked).
    key_side: bytes | None = None
    #: Agent id → its secret as stored now (``None``: no such agent).
    secrets: dict[str, str | None] = field(default_factory=dict)
    #: The ``ratelimit.lua`` answer, or the error the rate-limit Redis gave (``None``: not asked).
    rate: list[Any] | BaseException | None = None
    #: Per claimed event: 1 bound now, 2 same body (a retry), 0 bound to another body.
    claims: list[int] = field(default_factory=list)


def _text(raw: Any) -> str | None:
    return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)


class AdmissionStore(RedisStore):
    """One pipelined round trip of admission reads and writes (see the module docstring)."""

    def __init__(
        self, redis: RedisClient, keys: Keys, limits_redis: RedisClient, *, window_s: int
    ) -> None:
        self.redis = redis
        self.limits_redis = limits_redis
        self.keys = keys
        self.window_s = window_s
        self._claim: AsyncScript = scripts_for(redis)["event_ids_claim"]
        self._release: AsyncScript = scripts_for(redis)["event_ids_release"]
        self._settled = Settled()
        self._ratelimit: AsyncScript = scripts_for(limits_redis)["ratelimit"]

    async def round_trip(
        self,
        *,
        failures_key: str | None,
        key_sha: str | None,
        project_id: str,
        key_side: tuple[str, str] | None = None,
        agents: Sequence[str] = (),
        rate: RateCall | None = None,
        claims: Sequence[tuple[str, str]] = (),
    ) -> AdmissionReads:
        """Ask everything at once; ``claims`` are ``(event id, fingerprint)`` of the project's
        signed events. A window of 0 (``RATCHET_EVENT_ID_WINDOW_S``) claims nothing: every id is
        answered 1."""
        out = AdmissionReads()
        pipe = self.redis.pipeline(transaction=False)
        if failures_key is not None:
            pipe.get(failures_key)
            pipe.ttl(failures_key)
        if key_sha is not None:
            pipe.get(self.keys.api_key(key_sha))
        if key_side is not None:  # another slot on a cluster: same round trip, in parallel
            pipe.hget(*key_side)
        for agent_id in agents:
            pipe.hget(self.keys.agent(project_id, agent_id), "secret")
        scripts: list[tuple[int, AsyncScript, list[str], list[Any]]] = []
        # redis-py's cluster pipeline refuses EVALSHA: on a cluster the scripts run beside the
        # pipeline, concurrently (each on its own slot), their answers appended in order
        beside: list[tuple[AsyncScript, list[str], list[Any]]] = []
        cluster = isinstance(self.redis, RedisCluster)
        same_redis = self.limits_redis is self.redis
        queued = ((2 if failures_key is not None else 0) + (key_sha is not None)
                  + (key_side is not None) + len(agents))
        if rate is not None and same_redis:
            if cluster:
                beside.append((self._ratelimit, rate[0], list(rate[1])))
            else:
                scripts.append((queued, self._ratelimit, rate[0], list(rate[1])))
                queued += 1
                pipe.evalsha(self._ratelimit.sha, len(rate[0]), *rate[0], *rate[1])
        claim_now = bool(claims) and self.window_s > 0
        if claim_now:
            keys, argv = claim_call(self.keys, project_id, claims, self.window_s, time.time(),
                                    legacy=self._settled.legacy(project_id))
            if cluster:
                beside.append((self._claim, keys, argv))
            else:
                scripts.append((queued, self._claim, keys, argv))
                pipe.evalsha(self._claim.sha, len(keys), *keys, *argv)
        calls = [_answer(script, k, a) for script, k, a in beside]
        if rate is not None and not same_redis:
            answers, out.rate, *extra = await asyncio.gather(
                pipe.execute(raise_on_error=False), self._separate_rate(rate), *calls)
        else:
            answers, *extra = await asyncio.gather(pipe.execute(raise_on_error=False), *calls)
        answers = [*answers, *extra]
        for position, script, script_keys, script_args in scripts:
            if isinstance(answers[position], NoScriptError):  # the server lost it: load, resend
                try:
                    answers[position] = await script(keys=script_keys, args=script_args)
                except Exception as exc:  # noqa: BLE001  (reported per answer, like the pipeline)
                    answers[position] = exc
        self._read(out, answers, failures_key is not None, key_sha is not None,
                   key_side is not None, agents, rate is not None and same_redis,
                   claim_now, len(claims))
        if claim_now:
            out.claims = claim_answers(out.claims, len(claims), self._settled, project_id)
        return out

    async def _separate_rate(self, rate: RateCall) -> list[Any] | BaseException:
        try:
            answer: list[Any] = await self._ratelimit(keys=rate[0], args=rate[1])
            return answer
        except Exception as exc:  # noqa: BLE001  (the caller decides: ingest fails open)
            return exc

    @staticmethod
    def _read(
        out: AdmissionReads, answers: list[Any], failures: bool, grant: bool, side: bool,
        agents: Sequence[str], rate: bool, claimed: bool, n_claims: int,
    ) -> AdmissionReads:
        it = iter(answers)
        if failures:
            out.failures = _raise_or(next(it))
            out.failures_ttl = int(_raise_or(next(it)))
        if grant:
            out.grant = _text(_raise_or(next(it)))
        if side:
            out.key_side = _raise_or(next(it))
        for agent_id in agents:
            out.secrets[agent_id] = _text(_raise_or(next(it)))
        if rate:
            out.rate = next(it)
        if claimed:
            out.claims = list(_raise_or(next(it)))  # checked and cut by the caller
        elif n_claims:
            out.claims = [1] * n_claims
        return out

    async def release(self, project_id: str, bound: Sequence[tuple[str, str]]) -> None:
        """Unbind ``bound`` (``(event id, fingerprint)`` answered 1 by :meth:`round_trip`) where
        they still hold that fingerprint."""
        if not bound or self.window_s <= 0:
            return
        keys, args = release_call(self.keys, project_id, bound, self.window_s, time.time())
        await self._release(keys=keys, args=args)


async def _answer(script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
    """One script's answer, or its error (reported per answer, like the pipeline's)."""
    try:
        return await script(keys=keys, args=args)
    except Exception as exc:  # noqa: BLE001
        return exc


def _raise_or(answer: Any) -> Any:
    if isinstance(answer, BaseException):
        raise answer
    return answer
