"""Classification metrics: accuracy, confusion matrix, per-class precision / recall / F1, and the interval of an
accuracy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ClassificationReport:
    """Scores of predicted against gold label indices over ``labels``."""

    labels: list[str]
    confusion: np.ndarray  # [gold, predicted] counts

    @classmethod
    def from_predictions(cls, labels: list[str], gold: np.ndarray, predicted: np.ndarray) -> ClassificationReport:
        k = len(labels)
        confusion = np.bincount(np.asarray(gold) * k + np.asarray(predicted), minlength=k * k).reshape(k, k)
        return cls(list(labels), confusion)

    @property
    def total(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / max(self.total, 1))

    def per_class(self) -> dict[str, dict[str, float]]:
        """precision, recall, f1 and support of each label."""
        tp = np.diag(self.confusion).astype(float)
        predicted = self.confusion.sum(axis=0)
        support = self.confusion.sum(axis=1)
        precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
        recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
        return {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(self.labels, precision, recall, f1, support)
        }

    def majority(self) -> tuple[str, float]:
        """The most frequent gold label, and the accuracy of always answering it: the score to beat."""
        support = self.confusion.sum(axis=1)
        most = int(support.argmax())
        return self.labels[most], float(support[most] / max(self.total, 1))

    def macro_f1(self) -> float:
        """The mean F1 of the labels that occur, as gold or as predicted (as scikit-learn counts it): a model's
        label that a dataset does not use, and that the model never gave, does not count as a zero."""
        occurring = [c["f1"] for c, predicted in zip(self.per_class().values(), self.confusion.sum(axis=0))
                     if c["support"] or predicted]
        return float(np.mean(occurring)) if occurring else 0.0

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1(),
            "majority": dict(zip(("label", "accuracy"), self.majority())),
            "total": self.total,
            "labels": self.labels,
            "per_class": self.per_class(),
            "confusion": self.confusion.tolist(),
        }


def wilson_interval(accuracy: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of an accuracy measured on ``n`` pairs (95% for the default ``z``): honest for
    small ``n`` and for accuracies near 0 or 1, where the normal approximation is not."""
    if n <= 0:
        return 0.0, 1.0
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, min(accuracy, centre - half))), float(min(1.0, max(accuracy, centre + half)))  # rounding
