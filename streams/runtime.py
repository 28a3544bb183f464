"""The resources a worker process shares between its agents: one Redis client, engine and store.

Built lazily inside the worker's event loop (the first agent to start builds them).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from models.errors import ConfigError
from models.guardrails.budget import ScanShare
from ratchet.config.engine import engine_params
from ratchet.config.settings import Settings
from ratchet.engine.engine import Engine
from ratchet.store.audit import AuditLog, AuditSink
from ratchet.store.keys import Keys
from ratchet.store.redis import connect_from_settings, log_reachability
from ratchet.store.replies import ReplyPublisher
from ratchet.telemetry.projects import project_labels
from streams.tuning import tune_gc
from streams.worker import FeedbackProcessor, IngestProcessor, VerdictStoreLike

__all__ = ["Runtime", "make_verdict_store"]


def make_verdict_store(
    client: Any, keys: Keys, *, ttl_s: int = 86_400, allow_ttl_s: int = 3_600
) -> VerdictStoreLike:
    """The gateway's :class:`ratchet.store.verdicts.VerdictStore` on ``client``."""
    from ratchet.store.verdicts import VerdictStore

    return VerdictStore(client, keys, ttl_s=ttl_s, allow_ttl_s=allow_ttl_s)


class Runtime:
    def __init__(self, settings: Settings, audit_sink: AuditSink | None = None) -> None:
        if not settings.redis_url:
            raise ConfigError(
                "RATCHET_REDIS_URL is not set: workers keep all state in Redis; point it at "
                "redis://host:port/db (or run `ratchet demo`, which starts its own Redis)"
            )
        self.settings = settings
        #: Publishes the audit entries workers write (mode changes) to the audit topic.
        self.audit_sink = audit_sink
        self._lock = asyncio.Lock()
        self.engine: Engine | None = None
        self.store: VerdictStoreLike | None = None
        self.client: Any = None

    async def _ensure(self) -> tuple[Engine, VerdictStoreLike]:
        async with self._lock:
            if self.engine is None or self.store is None:
                s = self.settings
                assert s.redis_url is not None
                self.client = connect_from_settings(s)
                keys = Keys(s.key_prefix)
                params = engine_params(None, s)
                self.engine = Engine.create(
                    self.client, keys=keys, params=params, rich=s.rich_markov,
                    run_ttl_s=s.run_ttl_s, chain_ttl_s=s.chain_ttl_s,
                    guardrails=s.guardrails, policy_refresh_s=s.policy_refresh_s,
                    project_overrides=True,
                )
                self.engine.speculate_events = s.worker_dry_observe_events
                if self.engine.guardrails is not None:
                    self.engine.guardrails.scan_steps_per_event = s.guard_scan_steps_per_event
                    self.engine.guardrails.scan_steps_per_batch = s.guard_scan_steps_per_batch
                    self.engine.guardrails.share = ScanShare(s.guard_scan_share,
                                                             s.guard_scan_share_burst_s)
                self.store = make_verdict_store(self.client, keys, ttl_s=s.verdict_ttl_s,
                                                allow_ttl_s=s.verdict_allow_ttl_s)
                # start-up is done (app, engine, stores): freeze it out of the collector
                tune_gc(s.worker_gc_gen0)
            return self.engine, self.store

    async def check_redis(self, log: logging.Logger) -> bool:
        """The start-up check: whether Redis answers, logged (:func:`log_reachability`)."""
        await self._ensure()
        return await log_reachability(self.client, self.settings.redis_url or "", log)

    async def ingest_processor(self) -> IngestProcessor:
        engine, store = await self._ensure()
        s = self.settings
        project_labels(s.metrics_project_label_limit)
        policies = engine.guardrails.policies if engine.guardrails is not None else None
        return IngestProcessor(
            engine, store, verdict_ttl_s=s.verdict_ttl_s, policies=policies,
            decisions_topic=s.topic_decisions,
            audit=AuditLog(self.client, Keys(s.key_prefix), s, sink=self.audit_sink),
            replies=ReplyPublisher(self.client, Keys(s.key_prefix)),
        )

    async def feedback_processor(self) -> FeedbackProcessor:
        engine, store = await self._ensure()
        return FeedbackProcessor(engine, store)
