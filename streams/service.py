"""The worker process's Faust app: :func:`streams.app.create_app` with the agents attached.

``streams.service.app`` (for ``faust -A streams.service``) is the app of the process settings,
built on first access.
"""

from __future__ import annotations

import faust

from ratchet.config.settings import Settings, get_settings
from streams.agents import attach_agents
from streams.app import Topics, create_app
from streams.lag import attach_lag_monitor

__all__ = ["get_app"]

_built: tuple[faust.App, Topics] | None = None


def get_app(settings: Settings | None = None) -> tuple[faust.App, Topics]:
    """The process-wide app with its agents attached (built once)."""
    global _built
    if _built is None:
        settings = settings or get_settings()
        app, topics = create_app(settings)
        attach_agents(app, topics, settings)
        attach_lag_monitor(app, settings)
        _built = (app, topics)
    return _built


def __getattr__(name: str) -> object:
    # ``faust -A streams.service worker`` looks up ``streams.service.app``.
    if name == "app":
        return get_app()[0]
    raise AttributeError(name)
