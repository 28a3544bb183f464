"""Engine parameters from the ``[engine]`` TOML file named by ``--config`` or ``RATCHET_ENGINE_CONFIG``."""

from __future__ import annotations

from pathlib import Path

from models.errors import ConfigError
from models.params import EngineParams, load_params
from ratchet.config.settings import Settings

__all__ = ["engine_params"]


def engine_params(config: str | None, settings: Settings) -> EngineParams:
    path = config or settings.engine_config
    if not path:
        return EngineParams()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read engine config {path}: {exc.strerror}") from None
    return load_params(text)
