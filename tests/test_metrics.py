"""Accuracy, per-class scores and macro F1 against counts made pair by pair."""

import numpy as np

from bertnli.metrics import ClassificationReport

LABELS = ["entailment", "contradiction", "neutral"]


def _f1_by_counting(gold: list[int], predicted: list[int], label: int) -> float:
    tp = sum(g == p == label for g, p in zip(gold, predicted))
    fp = sum(p == label != g for g, p in zip(gold, predicted))
    fn = sum(g == label != p for g, p in zip(gold, predicted))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def test_scores_match_counts_pair_by_pair():
    rng = np.random.default_rng(0)
    gold, predicted = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    report = ClassificationReport.from_predictions(LABELS, gold, predicted)
    f1s = [_f1_by_counting(gold.tolist(), predicted.tolist(), k) for k in range(3)]
    assert report.accuracy == np.mean(gold == predicted)
    assert np.allclose([c["f1"] for c in report.per_class().values()], f1s)
    assert np.isclose(report.macro_f1(), np.mean(f1s))
    assert [c["support"] for c in report.per_class().values()] == np.bincount(gold, minlength=3).tolist()


def test_macro_f1_leaves_out_a_label_neither_gold_nor_predicted():
    gold = np.array([0, 0, 1, 1, 1])
    right = ClassificationReport.from_predictions(LABELS, gold, gold)
    assert right.macro_f1() == 1.0  # neutral occurs nowhere: two labels, both perfect
    once_neutral = ClassificationReport.from_predictions(LABELS, gold, np.array([0, 2, 1, 1, 1]))
    f1s = [_f1_by_counting(gold.tolist(), [0, 2, 1, 1, 1], k) for k in range(3)]
    assert f1s[2] == 0.0 and np.isclose(once_neutral.macro_f1(), np.mean(f1s))  # predicted, so it counts


def test_an_empty_report_scores_zero():
    empty = ClassificationReport.from_predictions(LABELS, np.array([], int), np.array([], int))
    assert empty.total == 0 and empty.accuracy == 0.0 and empty.macro_f1() == 0.0
