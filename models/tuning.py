"""Feedback tuning: approve/reject labels move the sigma multiplier and fallback within bounds.

An approval of a paused event is a false-positive label (the threshold was too tight: widen);
a rejection confirms the detection (tighten a little). Pure: no I/O.

>>> from models.params import EngineParams
>>> tune(3.0, 3.0, "approve", EngineParams())
(3.25, 3.5)
>>> tune(1.5, 2.0, "reject", EngineParams())
(1.5, 2.0)
"""

from __future__ import annotations

from models.params import EngineParams

__all__ = ["tune"]


def tune(sigma: float, fallback: float, decision: str, params: EngineParams) -> tuple[float, float]:
    if decision == "approve":
        sigma = min(params.sigma_max, sigma + params.sigma_step_up)
        fallback = min(params.fallback_max, fallback + params.fallback_step_up)
    elif decision == "reject":
        sigma = max(params.sigma_min, sigma - params.sigma_step_down)
        fallback = max(params.fallback_min, fallback - params.fallback_step_down)
    else:
        raise ValueError(f"decision must be approve or reject, got {decision!r}")
    return sigma, fallback
