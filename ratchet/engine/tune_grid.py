"""Re-score a recorded replay under a grid of threshold settings, vectorised with numpy.

The threshold of a transition is ``max(floor, fallback)`` while the chain's rolling window holds
fewer than ``window`` scores, else ``max(floor, median + k·1.4826·MAD)`` (``window_stat =
"robust"``; ``mean + k·std`` for ``"std"``) over the newest ``window`` scores — and which scores
enter the window depends on the threshold (only non-anomalous ones do). So the window is
simulated, not looked up: for every grid point at once (axis 0), every chain at once (axis 1),
stepping through each chain's events in order, exactly as ``lua/observe.lua`` does (same
operation order, so the doubles agree). At the recorded setting the result must equal the
engine's own decisions event for event; :func:`evaluate` checks that on every call.

What it does not re-run: learning. A setting that pauses an event the recording learned (or the
reverse) would change later counts, scores and modes; the scores, modes and loop verdicts stay
those of the recorded run. (On an unlearnable chain judged on its step order, the move's
action-model score is compared with each point's floor; a transition scored by the shape escape
with at least the recorded ``escape_floor_bits``, which is not a grid key.) :attr:`GridResult.learn_diff` counts, per point, the events whose
held-back-from-learning status differs from the recording — 0 means the estimate is exact.
``ratchet tune`` re-runs the recommended point through the real engine to measure the rest.

Needs numpy (``pip install 'ratchet-firewall[tune]'``; in a checkout ``pip install -e '.[tune]'``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from models.errors import ConfigError
from models.evaluation import Confusion
from models.params import ACTION_CODES, EngineParams
from models.scoring import MAD_SCALE
from ratchet.engine.tune_record import EventTrace, Recording

__all__ = ["GRID_KEYS", "Grid", "GridResult", "Labels", "evaluate", "run_labels"]

#: The engine parameters a grid varies (``window`` moves ``window_large`` with it).
GRID_KEYS = ("sigma_multiplier", "floor_bits", "fallback_bits", "window")

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Grid:
    """Values per parameter; the grid is their product (the base setting is always added)."""

    sigma_multiplier: tuple[float, ...]
    floor_bits: tuple[float, ...]
    fallback_bits: tuple[float, ...]
    window: tuple[int, ...]

    def points(self, base: EngineParams) -> list[EngineParams]:
        """Every combination as engine parameters, the base setting first."""
        out = [base]
        seen = {_key(base)}
        for k, floor, fallback, w in itertools.product(
            self.sigma_multiplier, self.floor_bits, self.fallback_bits, self.window
        ):
            p = with_window(base, w).replace(
                sigma_multiplier=float(k), floor_bits=float(floor), fallback_bits=float(fallback)
            )
            if _key(p) not in seen:
                seen.add(_key(p))
                out.append(p)
        return out


def with_window(base: EngineParams, window: int) -> EngineParams:
    """``base`` with ``window``; ``window_large`` keeps its distance above it."""
    return base.replace(window=window, window_large=window + (base.window_large - base.window))


def _key(p: EngineParams) -> tuple[float, float, float, int]:
    return (p.sigma_multiplier, p.floor_bits, p.fallback_bits, p.window)


@dataclass(frozen=True)
class Labels:
    """Run-level truth of the recording: run index per event, label and warm-up per run."""

    run_of_event: IntArray
    anomalous: BoolArray
    scored: BoolArray

    @property
    def runs(self) -> int:
        return int(self.scored.sum())


def run_labels(rec: Recording, *, warmup_runs: int, marked: set[str] | None = None) -> Labels:
    """Runs of ``rec`` (an agent's first ``warmup_runs`` runs are not scored). ``marked``: event
    or run ids that are anomalous (a labels file), replacing the events' own ``label``s."""
    index: dict[tuple[str, str, str], int] = {}
    per_agent: dict[tuple[str, str], int] = {}
    run_of = np.empty(len(rec), dtype=np.int64)
    anomalous: list[bool] = []
    scored: list[bool] = []
    for i, key in enumerate(rec.runs):
        r = index.get(key)
        if r is None:
            r = index[key] = len(anomalous)
            agent = key[:2]
            n = per_agent.get(agent, 0)
            per_agent[agent] = n + 1
            anomalous.append(False)
            scored.append(n >= warmup_runs)
        run_of[i] = r
        if marked is not None:
            hit = rec.event_ids[i] in marked or key[2] in marked
        else:
            label = rec.labels[i]
            if label is None:
                raise ConfigError(
                    f"event {rec.event_ids[i]!r} has no 'label': label every event of the file "
                    "or give --labels FILE"
                )
            hit = label
        anomalous[r] = anomalous[r] or hit
    return Labels(run_of, np.array(anomalous, dtype=np.bool_), np.array(scored, dtype=np.bool_))


@dataclass
class GridResult:
    """Run-level confusion per grid point (enforced: flag, pause or reject anywhere in the run)."""

    points: list[EngineParams]
    tp: IntArray
    fp: IntArray
    fn: IntArray
    tn: IntArray
    #: Events whose held-back-from-learning status differs from the recorded run (0: exact).
    learn_diff: IntArray
    #: Events whose decision at the recorded setting equals the engine's (must be all of them).
    agreement: tuple[int, int]
    #: Per kept point (``evaluate(keep=...)``): per recording row, (anomalous, Markov action
    #: code), or None for a row that was not scored (invalid line, redelivered id).
    decisions: dict[int, list[tuple[bool, int] | None]]

    def confusion(self, i: int) -> Confusion:
        return Confusion(int(self.tp[i]), int(self.fp[i]), int(self.fn[i]), int(self.tn[i]))

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for i, p in enumerate(self.points):
            c = self.confusion(i)
            out.append({
                "sigma_multiplier": p.sigma_multiplier, "floor_bits": p.floor_bits,
                "fallback_bits": p.fallback_bits, "window": p.window,
                "precision": c.precision, "recall": c.recall, "fpr": c.fpr, "f1": c.f1,
                "tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn,
                "learn_diff": int(self.learn_diff[i]),
            })
        return out

    def recommend(self, target_fpr: float) -> tuple[int, bool]:
        """(index of the point with the best recall at FPR ≤ target, whether any met it). Ties:
        higher precision, then fewer learning differences (a surer estimate), then the grid
        order (the base setting first). None meets it: the lowest FPR, then best recall."""
        rows = self.rows()
        ok = [i for i, r in enumerate(rows) if r["fpr"] <= target_fpr]
        if ok:
            best = min(ok, key=lambda i: (-rows[i]["recall"], -rows[i]["precision"],
                                          rows[i]["learn_diff"], i))
            return best, True
        best = min(range(len(rows)), key=lambda i: (rows[i]["fpr"], -rows[i]["recall"], i))
        return best, False


@dataclass(frozen=True)
class _Compiled:
    """The recording as arrays, events ordered chain by chain (longest chain first)."""

    steps: IntArray  # (chains, max events per chain): event slot, -1 past a chain's end
    active: IntArray  # chains still active at each step (a prefix: chains sorted by length)
    event_row: IntArray  # slot -> row of the recording
    bits0: FloatArray
    bits1: FloatArray
    has_tail: BoolArray
    judge0: BoolArray
    judge1: BoolArray
    large: BoolArray  # the chain had >= large_runs runs (the wider window applies)
    forced: BoolArray
    mode: IntArray  # mode acted by (the mode floor while in shadow)
    looping: BoolArray
    locked_action: IntArray
    ext_hold: BoolArray
    anomalous: BoolArray
    markov_action: IntArray
    held: BoolArray
    holds_flags: BoolArray
    order0: FloatArray  # action-model score of a step-order-judged transition, else -1
    order1: FloatArray
    esc0: BoolArray  # scored by the shape escape (threshold at least escape_floor_bits)
    esc1: BoolArray


def _compile(rec: Recording, params: EngineParams) -> _Compiled:
    rows = [i for i, t in enumerate(rec.traces) if t is not None]
    traces: list[EventTrace] = [t for t in rec.traces if t is not None]
    if not traces:
        raise ConfigError("tune: no event was scored (empty or invalid input)")
    per_chain: dict[int, list[int]] = {}
    for slot, t in enumerate(traces):
        per_chain.setdefault(t.chain, []).append(slot)
    chains = sorted(per_chain.values(), key=len, reverse=True)
    length = len(chains[0])
    steps = np.full((len(chains), length), -1, dtype=np.int64)
    for c, slots in enumerate(chains):
        steps[c, : len(slots)] = slots
    lengths = np.array([len(s) for s in chains])
    active = np.array([(lengths > s).sum() for s in range(length)], dtype=np.int64)

    def arr(values: Sequence[Any], dtype: Any) -> Any:
        return np.array(values, dtype=dtype)

    return _Compiled(
        steps=steps,
        active=active,
        event_row=arr(rows, np.int64),
        bits0=arr([t.bits[0] for t in traces], np.float64),
        bits1=arr([t.bits[1] if len(t.bits) > 1 else 0.0 for t in traces], np.float64),
        has_tail=arr([len(t.bits) > 1 for t in traces], np.bool_),
        judge0=arr([t.judgeable[0] for t in traces], np.bool_),
        judge1=arr([len(t.judgeable) > 1 and t.judgeable[1] for t in traces], np.bool_),
        large=arr([t.runs >= params.large_runs for t in traces], np.bool_),
        forced=arr([t.forced for t in traces], np.bool_),
        mode=arr([t.mode if t.mode > 0 else t.mode_floor for t in traces], np.int64),
        looping=arr([t.looping for t in traces], np.bool_),
        locked_action=arr([t.locked_action for t in traces], np.int64),
        ext_hold=arr([t.ext_hold for t in traces], np.bool_),
        anomalous=arr([t.anomalous for t in traces], np.bool_),
        markov_action=arr([t.markov_action for t in traces], np.int64),
        held=arr([t.held for t in traces], np.bool_),
        holds_flags=arr([t.holds_flags for t in traces], np.bool_),
        order0=arr([t.order_bits[0] if t.order_bits else -1.0 for t in traces], np.float64),
        order1=arr([t.order_bits[1] if len(t.order_bits) > 1 else -1.0 for t in traces],
                   np.float64),
        esc0=arr([bool(t.escaped) and t.escaped[0] for t in traces], np.bool_),
        esc1=arr([len(t.escaped) > 1 and t.escaped[1] for t in traces], np.bool_),
    )


def _median_sorted(s: FloatArray) -> FloatArray:
    n = s.shape[-1]
    mid = n // 2
    if n % 2 == 1:
        return s[..., mid]
    return (s[..., mid - 1] + s[..., mid]) / 2.0


def _window_stat(vals: FloatArray, sigma: FloatArray, robust: bool) -> FloatArray:
    """``lua/observe.lua`` current_threshold() over ``vals`` (..., n), newest first."""
    n = vals.shape[-1]
    if robust:
        med = _median_sorted(np.sort(vals, axis=-1))
        dev = np.sort(np.abs(vals - med[..., None]), axis=-1)
        out: FloatArray = med + sigma * (MAD_SCALE * _median_sorted(dev))
        return out
    total = np.zeros(vals.shape[:-1])
    for i in range(n):  # summed in window order, as Lua does (no pairwise summation)
        total = total + vals[..., i]
    mean = total / n
    acc = np.zeros(vals.shape[:-1])
    for i in range(n):
        d = vals[..., i] - mean
        acc = acc + d * d
    spread: FloatArray = mean + sigma * np.sqrt(acc / n)
    return spread


def evaluate(
    rec: Recording,
    points: list[EngineParams],
    labels: Labels,
    *,
    progress: Callable[[int, int], None] | None = None,
    keep: Sequence[int] = (),
) -> GridResult:
    """Every point of ``points`` (the first must be the recorded setting) over ``rec``;
    ``keep``: points whose per-event decisions are returned too."""
    base = rec.params
    if not points or _key(points[0]) != _key(base):
        raise ValueError("the first grid point must be the recorded setting")
    comp = _compile(rec, base)
    g = len(points)
    sigma = np.array([p.sigma_multiplier for p in points])
    floor = np.array([p.floor_bits for p in points])
    fallback = np.array([p.fallback_bits for p in points])
    w_small = np.array([p.window for p in points], dtype=np.int64)
    w_large = np.array([p.window_large for p in points], dtype=np.int64)
    capacity = int(w_large.max())
    robust = base.window_stat == "robust"
    n_chains, n_steps = comp.steps.shape
    win = np.zeros((g, n_chains, capacity))
    count = np.zeros((g, n_chains), dtype=np.int64)
    n_events = len(comp.event_row)
    anomalous = np.zeros((g, n_events), dtype=np.bool_)
    lengths = sorted({int(v) for v in np.concatenate([w_small, w_large])})

    def push(k: int, value: FloatArray, mask: BoolArray) -> None:
        part = win[:, :k]
        shifted = np.concatenate(
            [np.broadcast_to(value[None, :, None], (g, k, 1)), part[:, :, :-1]], axis=-1
        )
        win[:, :k] = np.where(mask[:, :, None], shifted, part)
        count[:, :k] = np.minimum(count[:, :k] + mask, capacity)

    for s in range(n_steps):
        k = int(comp.active[s])
        ev = comp.steps[:k, s]
        wlen = np.where(comp.large[ev][None, :], w_large[:, None], w_small[:, None])  # (g, k)
        sig = np.where(comp.forced[ev][None, :],
                       np.maximum(sigma, base.forced_sigma)[:, None], sigma[:, None])
        thr = np.broadcast_to(fallback[:, None], (g, k)).copy()
        full = count[:, :k] >= wlen
        for n in lengths:
            use = full & (wlen == n)
            rows = np.flatnonzero(use.any(axis=1))
            if rows.size == 0:
                continue
            stat = _window_stat(win[rows, :k, :n], sig[rows], robust)
            thr[rows] = np.where(use[rows], stat, thr[rows])
        thr = np.maximum(np.minimum(thr, base.ceiling_bits), floor[:, None])
        # a transition scored by the shape escape: its own floor (not a grid key)
        esc_floor = base.escape_floor_bits
        thr0 = np.where(comp.esc0[ev][None, :], np.maximum(thr, esc_floor), thr)
        thr1 = np.where(comp.esc1[ev][None, :], np.maximum(thr, esc_floor), thr)
        a0 = ((comp.bits0[ev][None, :] > thr0) & comp.judge0[ev][None, :]) | (
            comp.order0[ev][None, :] > floor[:, None])
        tail = comp.has_tail[ev][None, :]
        a1 = tail & (((comp.bits1[ev][None, :] > thr1) & comp.judge1[ev][None, :]) | (
            comp.order1[ev][None, :] > floor[:, None]))
        # the window holds normal step scores, not escaped shapes' (lua/observe.lua)
        push(k, comp.bits0[ev], ~a0 & ~comp.esc0[ev][None, :])
        push(k, comp.bits1[ev], tail & ~a1 & ~comp.esc1[ev][None, :])
        anomalous[:, ev] = a0 | a1 | comp.looping[None, ev]
        if progress is not None and (s % 256 == 0 or s == n_steps - 1):
            progress(s + 1, n_steps)

    mode = comp.mode[None, :]
    soft = np.array([ACTION_CODES.index(p.soft_action) for p in points])[:, None]
    markov = np.where(anomalous & (mode > 0),
                      np.where(mode == 1, soft, comp.locked_action[None, :]), 0)
    agree = int(((anomalous[0] == comp.anomalous) & (markov[0] == comp.markov_action)).sum())
    lowest = np.where(comp.holds_flags, 1, 1 if base.protect_flags else 2)[None, :]
    held = base.protect & ((markov >= lowest) | comp.ext_hold[None, :])
    learn_diff = (held != comp.held[None, :]).sum(axis=1)

    guard = np.array(rec.guard_actions, dtype=np.int64)[comp.event_row]
    enforced = (np.maximum(markov, guard[None, :]) > 0).astype(np.int8)
    runs = labels.run_of_event[comp.event_row]
    n_runs = len(labels.anomalous)
    detected = np.zeros((g, n_runs), dtype=np.int8)
    order = np.argsort(runs, kind="stable")
    sorted_runs = runs[order]
    starts = np.flatnonzero(np.r_[True, sorted_runs[1:] != sorted_runs[:-1]])
    detected[:, sorted_runs[starts]] = np.maximum.reduceat(enforced[:, order], starts, axis=1)
    det = detected[:, labels.scored].astype(np.bool_)
    truth = labels.anomalous[labels.scored][None, :]
    decisions: dict[int, list[tuple[bool, int] | None]] = {}
    for i in keep:
        kept: list[tuple[bool, int] | None] = [None] * len(rec)
        for slot, row in enumerate(comp.event_row.tolist()):
            kept[row] = (bool(anomalous[i, slot]), int(markov[i, slot]))
        decisions[i] = kept
    return GridResult(
        points=points,
        tp=(det & truth).sum(axis=1),
        fp=(det & ~truth).sum(axis=1),
        fn=(~det & truth).sum(axis=1),
        tn=(~det & ~truth).sum(axis=1),
        learn_diff=learn_diff,
        agreement=(agree, n_events),
        decisions=decisions,
    )
