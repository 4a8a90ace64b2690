"""Evaluate a fine-tuned model on labelled data: scores, confident mistakes, accuracy by pair length and by
genre (MultiNLI's fiction, government, ...); reports."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bertnli.data.example import Dataset, Example, describe_skipped
from bertnli.data.labels import TWO_CLASS_LABELS, TWO_CLASS_MAP, merge_to_two_classes
from bertnli.errors import BertnliWarning, CheckpointError, DataError, some_of
from bertnli.inference import NLIModel
from bertnli.metrics import ClassificationReport, wilson_interval
from bertnli.paths import write_text
from bertnli.weights.files import read_json_object

LENGTH_EDGES = (16, 24, 32, 48, 64, 96, 128)


@dataclass
class Evaluation:
    """The outcome of evaluating one model on one dataset."""

    dataset: str
    report: ClassificationReport
    skipped: dict[str, int]
    confident_errors: list[dict]
    by_length: list[dict]
    by_genre: list[dict] = field(default_factory=list)  # empty when the data name no genres
    notes: list[str] = field(default_factory=list)  # how the scores were made, where a reader must know
    skipped_lines: dict[str, list[int]] = field(default_factory=dict)  # the first few lines skipped, by reason

    @property
    def accuracy(self) -> float:
        return self.report.accuracy

    @property
    def accuracy_interval(self) -> tuple[float, float]:
        """The 95% (Wilson) interval of the accuracy: where the accuracy on data of this kind lies, with 95%
        confidence (a sample of few pairs gives a wide one)."""
        return wilson_interval(self.accuracy, self.report.total)

    def describe_accuracy(self) -> str:
        """"0.6600 on 100 pairs (95% interval 0.5628–0.7450)"."""
        low, high = self.accuracy_interval
        return f"{self.accuracy:.4f} on {self.report.total:,} pairs (95% interval {low:.4f}–{high:.4f})"

    def describe_majority(self) -> str:
        """"always answering entailment, the most frequent gold label, scores 0.7786", and whether the model does
        no better: on data where one label dominates, accuracy alone hides a model that learned only that."""
        label, accuracy = self.report.majority()
        said = f"always answering {label}, the most frequent gold label, scores {accuracy:.4f}"
        return said + (": the model does no better" if self.accuracy <= accuracy else "")

    def __repr__(self) -> str:
        return (f"<Evaluation on {self.dataset}: accuracy {self.accuracy:.4f}, macro F1 "
                f"{self.report.macro_f1():.4f}, {self.report.total:,} pairs>")

    def _repr_markdown_(self) -> str:
        """A notebook shows the whole report."""
        return self.to_markdown()

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, **self.report.to_dict(), "accuracy_interval": list(self.accuracy_interval),
                "skipped": self.skipped, "skipped_lines": self.skipped_lines,
                "confident_errors": self.confident_errors, "accuracy_by_length": self.by_length,
                "accuracy_by_genre": self.by_genre, "notes": self.notes}

    def to_markdown(self) -> str:
        r = self.report
        lines = [f"# Evaluation on {self.dataset}", "",
                 f"Accuracy **{self.describe_accuracy()}**, macro F1 {r.macro_f1():.4f}; "
                 f"{self.describe_majority()}.", ""]
        lines += [*self.notes, ""] if self.notes else []
        if self.skipped:
            lines += ["Skipped: " + describe_skipped(self.skipped, self.skipped_lines), ""]
        lines += ["| label | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {k} | {v['precision']:.4f} | {v['recall']:.4f} | {v['f1']:.4f} | {v['support']:,} |"
                  for k, v in r.per_class().items()]
        lines += ["", "## Confusion matrix (rows gold, columns predicted)", "",
                  "| gold \\ predicted | " + " | ".join(r.labels) + " |", "|---|" + "---:|" * len(r.labels)]
        lines += [f"| {g} | " + " | ".join(f"{c:,}" for c in row) + " |" for g, row in zip(r.labels, r.confusion)]
        lines += ["", "## Accuracy by pair length (tokens with specials)", "",
                  "| length | pairs | accuracy |", "|---|---:|---:|"]
        lines += [f"| {b['range']} | {b['pairs']:,} | {b['accuracy']:.4f} |" for b in self.by_length]
        if self.by_genre:
            lines += ["", "## Accuracy by genre", "", "| genre | pairs | accuracy |", "|---|---:|---:|"]
            lines += [f"| {_cell(g['genre'])} | {g['pairs']:,} | {g['accuracy']:.4f} |" for g in self.by_genre]
        if self.confident_errors:
            lines += ["", "## Most confidently wrong", "", "| line | premise | hypothesis | gold | predicted | p |",
                      "|---:|---|---|---|---|---:|"]
            lines += [f"| {e['line'] or ''} | {_cell(e['premise'])} | {_cell(e['hypothesis'])} | {e['gold']} | "
                      f"{e['predicted']} | {e['confidence']:.3f} |" for e in self.confident_errors]
        return "\n".join(lines) + "\n"


def write_report(evaluation: Evaluation, directory: str | Path, stem: str = "") -> list[Path]:
    """Write ``{stem}evaluation.md`` and ``.json``, and the figures of `bertnli.plots.plot_evaluation`; returns
    the paths of all of them."""
    from bertnli.plots import plot_evaluation

    directory = Path(directory)
    markdown, record = directory / f"{stem}evaluation.md", directory / f"{stem}evaluation.json"
    write_text(markdown, evaluation.to_markdown())
    write_text(record, json.dumps(evaluation.to_dict(), indent=2) + "\n")
    return [markdown, record, *plot_evaluation(evaluation, directory, stem)]


def write_reports(evaluations: Sequence[Evaluation], directory: str | Path) -> list[Path]:
    """`write_report` for each evaluation, and for several a ``comparison.md`` of their scores; each file name
    starts with its dataset's name then (the same name twice is numbered)."""
    directory = Path(directory)
    paths = []
    for evaluation, stem in zip(evaluations, _report_stems([e.dataset for e in evaluations])):
        paths += write_report(evaluation, directory, stem)
    if len(evaluations) > 1:
        lines = ["# Comparison", "", "| dataset | pairs | accuracy | 95% interval | macro F1 |",
                 "|---|---:|---:|---|---:|"]
        lines += [f"| {_cell(e.dataset)} | {e.report.total:,} | {e.accuracy:.4f} | {_interval(e)} | "
                  f"{e.report.macro_f1():.4f} |" for e in evaluations]
        write_text(directory / "comparison.md", "\n".join(lines) + "\n")
        paths.append(directory / "comparison.md")
    _note_older_reports(directory, paths)
    return paths


#: The ends of the names of the files a report writes (see `write_report`, `plot_evaluation`).
_REPORT_FILE_ENDS = ("evaluation.md", "evaluation.json", "confusion.png", "class_scores.png", "accuracy.png",
                    "comparison.md")


def _note_older_reports(directory: Path, written: list[Path]) -> None:
    """Warn of report files in ``directory`` that this report did not write: an earlier report's, left as they
    are (they may be the user's), but not to be read as this one's."""
    if not directory.is_dir():  # no report written, and none there before
        return
    older = sorted(p.name for p in directory.iterdir() if p.name.endswith(_REPORT_FILE_ENDS) and p not in written)
    if older:
        warnings.warn(f"{directory} also holds report files from an earlier evaluation, left as they are: "
                      f"{some_of(older, 4)}", BertnliWarning, stacklevel=3)


def _report_stems(names: list[str]) -> list[str]:
    """File-name prefixes for the reports of several datasets (none for one); the same name twice is numbered."""
    if len(names) == 1:
        return [""]
    stems: list[str] = []
    for name in names:
        base = re.sub(r"[^\w.-]+", "_", name)
        stem, n = f"{base}_", 1
        while stem in stems:
            n += 1
            stem = f"{base}_{n}_"
        stems.append(stem)
    return stems


def read_report(path: str | Path) -> Evaluation:
    """The evaluation saved in an ``evaluation.json`` (reports written before genres were scored have none)."""
    path = Path(path)
    data = read_json_object(path)
    labels, confusion = data.get("labels"), np.array(data.get("confusion"))
    if not isinstance(labels, list) or confusion.shape != (len(labels), len(labels)):
        raise CheckpointError(path, "not an evaluation report (no labels and confusion matrix of their size)")
    return Evaluation(str(data.get("dataset", path.parent.name)), ClassificationReport(labels, confusion),
                      dict(data.get("skipped", {})), list(data.get("confident_errors", [])),
                      list(data.get("accuracy_by_length", [])), list(data.get("accuracy_by_genre", [])),
                      list(data.get("notes", [])), dict(data.get("skipped_lines", {})))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _merge_to_two_classes(labels: list[str], probs: np.ndarray) -> np.ndarray:
    """Each label's probability goes to its 2-class label, by the same map the readers use for gold labels."""
    merged = np.zeros((len(probs), len(TWO_CLASS_LABELS)), dtype=probs.dtype)
    for column, label in enumerate(labels):
        merged[:, TWO_CLASS_LABELS.index(TWO_CLASS_MAP[label])] += probs[:, column]
    return merged


def require_gold_labels(dataset: Dataset, source: str | Path | None = None) -> None:
    """Refuse predictions bertnli wrote (``source``: the file as the user named it): their labels are the
    model's own answers, and scoring them would measure nothing."""
    if dataset.predicted:
        raise DataError(source or dataset.name, "holds predictions written by bertnli (its columns include the "
                        "probabilities and 'truncated'): its labels are a model's answers, not gold labels; "
                        "evaluate the file the predictions were made from")


def check_scorable(model_labels: Sequence[str], dataset: Dataset, two_class: bool = False) -> None:
    """Raise the `DataError` that `evaluate` would for ``dataset`` (no labelled pairs, gold labels the model
    does not have), without scoring anything: several datasets can be checked before the first is scored."""
    _scoring_plan(model_labels, dataset, two_class)


def _scoring_plan(model_labels: Sequence[str], dataset: Dataset, two_class: bool
                  ) -> tuple[Dataset, list[Example], list[str], bool]:
    """What `evaluate` scores: the dataset (merged to two classes for ``two_class``), its labelled pairs, the
    labels of the score, and whether the model's labels are merged into two."""
    if two_class:
        dataset = merge_to_two_classes(dataset)
    examples = [e for e in dataset.examples if e.label is not None]
    if not examples:
        raise DataError(dataset.name, "has no labelled pairs to evaluate on")
    merge = two_class and tuple(model_labels) != TWO_CLASS_LABELS
    labels = list(TWO_CLASS_LABELS) if merge else list(model_labels)
    if merge and not set(model_labels) <= set(TWO_CLASS_MAP):
        raise DataError(dataset.name, f"cannot merge the model's labels {list(model_labels)} into two classes")
    gold_names = {e.label for e in examples}
    if not gold_names <= set(labels):
        two_class_somewhere = "not_entailment" in gold_names or tuple(labels) == TWO_CLASS_LABELS
        hint = " (merge neutral and contradiction with --two-class; two_class=True in Python)" \
            if two_class_somewhere else ""
        raise DataError(dataset.name, f"labels {sorted(map(str, gold_names - set(labels)))} are not among the model's "
                                      f"{labels}{hint}")
    return dataset, examples, labels, merge


def evaluate(model: NLIModel | str | Path, dataset: Dataset, *, two_class: bool = False,
             top_errors: int | None = 10) -> Evaluation:
    """Score ``model`` (an `NLIModel`, or a run or model folder to load) on the labelled pairs of ``dataset``
    (a `Dataset`, as `read_dataset` returns). ``two_class`` merges neutral and contradiction
    into not_entailment, in the model's predictions and in 3-class gold labels (for RTE-style data, or a
    2-class score on 3-class data); it must be asked for, never guessed. ``top_errors``: how many of the most
    confidently wrong pairs to keep (None: all of them, most confident first)."""
    if not isinstance(dataset, Dataset):
        raise TypeError(f"evaluate scores a bertnli Dataset (read_dataset(path), or Dataset(name, [Example(premise, "
                        f"hypothesis, label), ...])), not a {type(dataset).__name__}")
    if top_errors is not None and top_errors < 0:
        raise ValueError(f"top_errors is how many confident mistakes to keep (None: all of them), not {top_errors}")
    require_gold_labels(dataset)
    if not isinstance(model, NLIModel):
        model = NLIModel.load(model)
    dataset, examples, labels, merge = _scoring_plan(model.labels, dataset, two_class)
    pairs = model.encode([e.premise for e in examples], [e.hypothesis for e in examples], dataset.tokenised)
    probs = model.probabilities(pairs)
    if merge:
        probs = _merge_to_two_classes(list(model.labels), probs)
    gold = np.array([labels.index(e.label) for e in examples])  # type: ignore[arg-type]  # all labelled
    predicted = probs.argmax(axis=1)
    report = ClassificationReport.from_predictions(labels, gold, predicted)
    notes = []
    if merge:
        notes.append("Two classes: the model's neutral and contradiction are merged into not_entailment, so a pair "
                     "is entailment when the model gives entailment a probability over 0.5.")
    cut = int(pairs.truncated.sum()) if pairs.truncated is not None else 0
    if cut:
        notes.append(f"{model.describe_truncation(cut, len(examples))}.")
    return Evaluation(dataset.name, report, dict(dataset.skipped),
                      _confident_errors(examples, labels, gold, predicted, probs, top_errors),
                      _accuracy_by_length(pairs.valid_lens, gold == predicted, pairs.truncated, model.max_len),
                      _accuracy_by_genre([e.genre for e in examples], gold == predicted), notes,
                      {reason: list(lines) for reason, lines in dataset.skipped_lines.items()})


def _interval(evaluation: Evaluation) -> str:
    low, high = evaluation.accuracy_interval
    return f"{low:.4f}–{high:.4f}"


def _confident_errors(examples: list[Example], labels: list[str], gold: np.ndarray, predicted: np.ndarray,
                      probs: np.ndarray, top: int | None) -> list[dict]:
    wrong = np.flatnonzero(gold != predicted)
    confidence = probs[wrong, predicted[wrong]]
    worst = wrong[np.argsort(-confidence, kind="stable")[:top]]
    return [{"line": examples[i].line, "premise": examples[i].premise, "hypothesis": examples[i].hypothesis,
             "gold": labels[gold[i]], "predicted": labels[predicted[i]], "confidence": float(probs[i, predicted[i]])}
            for i in worst]


def _accuracy_by_length(lengths: np.ndarray, correct: np.ndarray, truncated: np.ndarray | None = None,
                        max_len: int | None = None) -> list[dict]:
    """Accuracy by length bins (`LENGTH_EDGES`); pairs longer than ``max_len``, which the model read cut,
    come last in a bin of their own."""
    cut = np.zeros(len(lengths), dtype=bool) if truncated is None else np.asarray(truncated, dtype=bool)
    rows: list[dict] = []
    low: float = 0
    for high in (*LENGTH_EDGES, np.inf):
        inside = (lengths > low) & (lengths <= high) & ~cut
        if inside.any():
            label = f"{low + 1}–{int(high)}" if np.isfinite(high) else f">{low}"
            rows.append({"range": label, "pairs": int(inside.sum()), "accuracy": float(correct[inside].mean())})
        low = high
    if cut.any():
        rows.append({"range": f">{max_len} (cut)", "pairs": int(cut.sum()), "accuracy": float(correct[cut].mean())})
    return rows


def _accuracy_by_genre(genres: list[str | None], correct: np.ndarray) -> list[dict]:
    """Accuracy of each genre, by name; pairs without one count as "(none)". Empty when no pair has one."""
    if not any(genres):
        return []
    names = np.array([g or "(none)" for g in genres])
    return [{"genre": str(name), "pairs": int((names == name).sum()), "accuracy": float(correct[names == name].mean())}
            for name in sorted(set(names))]
