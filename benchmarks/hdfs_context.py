"""Would a longer context help on HDFS? First- against second-order transition models, offline.

    python -m benchmarks.hdfs_context --data hdfs_deeplog.tsv [--bits 10,12,14]
                                      [--support 20,100] [--json FILE]

An analysis, not a detection figure. Counts are learned from the 4,855 ``train`` normals (no
decay, no windows, no modes: the plain models), every ``test`` session is scored, and a session is
anomalous when any of its transitions scores more than ``--bits`` bits (−log2 of its probability,
ε = 1e-6). The thresholds are **swept on the test labels**: the question is only whether the
longer context separates normal from anomalous sessions better at *any* threshold, which is the
case for building it into the engine. Rows:

* ``order 1`` — p(template | previous template): the engine's chain;
* ``order 2`` — p(template | two previous templates), backed off to order 1 where the two-template
  context was seen fewer than ``--support`` times in training;
* ``min(order 1, order 2)`` — a transition is as surprising as the more surprising of the two.

Recall over the 16,838 anomalous sessions, FPR over the 7,000 normal ones, precision and F1 with
the FPR extrapolated to the 553,366 normal test sessions of the full split (as
:mod:`benchmarks.hdfs` does).
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.hdfs import FULL_NORMAL_TEST, load
from benchmarks.report import emit

__all__ = ["main"]

EPS = 1e-6
START, END = "^", "$"

Gram = tuple[str, ...]


def _grams(seq: Sequence[str]) -> list[Gram]:
    """Every transition of a session with its two previous templates (START-padded)."""
    s = [START, START, *seq, END]
    return [tuple(s[i - 2:i + 1]) for i in range(2, len(s))]


class Models:
    """First- and second-order counts of the training sessions."""

    def __init__(self, sessions: Sequence[Sequence[str]]) -> None:
        grams = [g for seq in sessions for g in _grams(seq)]
        self.c1: Counter[Gram] = Counter(g[1:] for g in grams)
        self.r1: Counter[Gram] = Counter(g[1:2] for g in grams)
        self.c2: Counter[Gram] = Counter(grams)
        self.r2: Counter[Gram] = Counter(g[:2] for g in grams)

    def p1(self, g: Gram) -> float:
        row = self.r1[g[1:2]]
        return self.c1[g[1:]] / row if row else 0.0

    def p2(self, g: Gram, support: int) -> float:
        row = self.r2[g[:2]]
        return self.c2[g] / row if row >= support else self.p1(g)


def _score(
    test: Sequence[tuple[int, list[Gram]]], prob: Callable[[Gram], float], bits: float,
) -> dict[str, float]:
    positives = sum(label for label, _ in test)
    negatives = len(test) - positives
    tp = fp = 0
    for label, grams in test:
        if any(-math.log2(prob(g) + EPS) > bits for g in grams):
            if label:
                tp += 1
            else:
                fp += 1
    recall = tp / positives
    fpr = fp / negatives
    extrapolated_fp = fpr * FULL_NORMAL_TEST
    precision = tp / (tp + extrapolated_fp) if tp + extrapolated_fp else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"recall": round(recall, 4), "fpr": round(fpr, 5), "false_positives": fp,
            "precision": round(precision, 3), "f1": round(f1, 3)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="hdfs_deeplog.tsv")
    p.add_argument("--bits", default="10,12,14", help="thresholds in bits, comma-separated")
    p.add_argument("--support", default="20,100",
                   help="two-template contexts seen fewer times back off to order 1")
    p.add_argument("--json", metavar="FILE")
    a = p.parse_args(argv)
    sessions = load(a.data)
    models = Models([s.templates for s in sessions if s.split == "train"])
    test = [(s.label, _grams(s.templates)) for s in sessions if s.split == "test"]
    rows: dict[str, object] = {
        "note": "analysis: thresholds swept on test labels; not a detection figure",
        "train_sessions": sum(1 for s in sessions if s.split == "train"),
        "test_sessions": len(test),
    }
    for bits in (float(b) for b in a.bits.split(",")):
        rows[f"order1_bits{bits:g}"] = _score(test, models.p1, bits)
        for support in (int(m) for m in a.support.split(",")):
            rows[f"order2_support{support}_bits{bits:g}"] = _score(
                test, lambda g, m=support: models.p2(g, m), bits)  # type: ignore[misc]
            rows[f"min_order1_order2_support{support}_bits{bits:g}"] = _score(
                test, lambda g, m=support: min(models.p1(g), models.p2(g, m)), bits)  # type: ignore[misc]
    emit(rows, a.json)


if __name__ == "__main__":
    main()
