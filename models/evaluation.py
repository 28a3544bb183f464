"""Detection quality: confusion counts and the figures derived from them. Pure: no I/O.

>>> c = Confusion(tp=8, fp=2, fn=2, tn=88)
>>> (c.precision, c.recall, round(c.f1, 3), round(c.fpr, 4))
(0.8, 0.8, 0.8, 0.0222)
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

__all__ = ["Confusion", "RunTally"]


@dataclass(frozen=True, slots=True)
class Confusion:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @classmethod
    def of(cls, pairs: Iterable[tuple[bool, bool]]) -> Confusion:
        """From ``(predicted, actual)`` pairs."""
        tp = fp = fn = tn = 0
        for pred, actual in pairs:
            if pred and actual:
                tp += 1
            elif pred:
                fp += 1
            elif actual:
                fn += 1
            else:
                tn += 1
        return cls(tp, fp, fn, tn)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def fpr(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn,
            "precision": round(self.precision, 4), "recall": round(self.recall, 4),
            "f1": round(self.f1, 4), "fpr": round(self.fpr, 5),
        }


class RunTally:
    """Run-level truth and prediction: a run is anomalous if any of its events is."""

    def __init__(self) -> None:
        self._pred: dict[Hashable, bool] = {}
        self._actual: dict[Hashable, bool] = {}

    def add(self, run: Hashable, predicted: bool, actual: bool) -> None:
        self._pred[run] = self._pred.get(run, False) or predicted
        self._actual[run] = self._actual.get(run, False) or actual

    def confusion(self) -> Confusion:
        return Confusion.of((self._pred[r], self._actual[r]) for r in self._pred)

    def __len__(self) -> int:
        return len(self._pred)
