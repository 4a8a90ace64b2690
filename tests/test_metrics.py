"""Accuracy, per-class scores and macro F1 against counts made pair by pair."""

import numpy as np

from bertnli.metrics import ClassificationReport, wilson_interval

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


def test_the_score_to_beat_is_always_answering_the_most_frequent_gold_label():
    """80% entailment: a model that answers entailment every time is 0.8 accurate, and learned nothing."""
    from bertnli.evaluation import Evaluation

    gold = np.array([0] * 8 + [1, 2])
    lazy = ClassificationReport.from_predictions(LABELS, gold, np.zeros(10, int))
    assert lazy.majority() == ("entailment", 0.8) and lazy.accuracy == 0.8
    assert lazy.to_dict()["majority"] == {"label": "entailment", "accuracy": 0.8}
    told = Evaluation("claims", lazy, {}, [], []).describe_majority()
    assert told == "always answering entailment, the most frequent gold label, scores 0.8000: the model does no better"
    better = ClassificationReport.from_predictions(LABELS, gold, np.array([0] * 8 + [1, 1]))
    assert Evaluation("claims", better, {}, [], []).describe_majority().endswith("scores 0.8000")


def test_an_empty_report_scores_zero():
    empty = ClassificationReport.from_predictions(LABELS, np.array([], int), np.array([], int))
    assert empty.total == 0 and empty.accuracy == 0.0 and empty.macro_f1() == 0.0


def test_the_accuracy_interval_holds_the_true_accuracy_95_times_in_100():
    """Simulated test sets of a model whose true accuracy is known: the interval holds it about 95% of the time,
    for small groups of pairs as for large ones, and narrows as they grow."""
    rng = np.random.default_rng(0)
    for true, n in ((0.8, 12), (0.5, 40), (0.95, 300)):
        measured = rng.binomial(n, true, size=4000) / n
        intervals = np.array([wilson_interval(a, n) for a in measured])
        assert 0.91 < np.mean((intervals[:, 0] <= true) & (true <= intervals[:, 1])) < 0.99  # discrete: not exact
        assert ((intervals[:, 0] <= measured) & (measured <= intervals[:, 1])).all()
    widths = [np.subtract(*wilson_interval(0.7, n)[::-1]) for n in (5, 50, 500)]
    assert widths[0] > widths[1] > widths[2] > 0
    for n in range(1, 200):  # all right or all wrong: the interval reaches the accuracy itself, past rounding
        assert wilson_interval(1.0, n)[1] == 1.0 and wilson_interval(0.0, n)[0] == 0.0
