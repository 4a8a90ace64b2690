"""PNG figures: training curves, confusion matrix, per-class scores, accuracy by pair length and genre.

Drawn on `matplotlib.figure.Figure` directly, without pyplot: nothing here changes the backend or the open
figures of a notebook that trains a model."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from bertnli.metrics import ClassificationReport
from bertnli.paths import atomic_write
from bertnli.training.run import RunDir, describe_run

if TYPE_CHECKING:
    from bertnli.evaluation import Evaluation


def plot_curves(run: RunDir | str | Path, path: str | Path | None = None) -> Path:
    """Loss and accuracy per logged step (thin) and per epoch (markers), with every validation (at epoch ends,
    and within epochs with ``eval_every``), side by side: ``path``, by default the run's ``curves.png``."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    records = list(run.metrics())
    steps = [r for r in records if r.get("kind") == "step"]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    validations = sorted((r["step"], r["eval_accuracy"]) for r in records  # at epoch ends, and every eval_every
                         if r.get("kind") in ("epoch", "eval") and "eval_accuracy" in r)
    fig = Figure(figsize=(11, 4))
    loss_ax, acc_ax = fig.subplots(1, 2)
    if steps:
        x = [r["step"] for r in steps]
        marker = "." if len(steps) < 20 else None  # a line of one or two points would not show
        loss_ax.plot(x, [r["loss"] for r in steps], lw=1, alpha=0.6, marker=marker,
                     label="train loss (mean since the last log)")
        acc_ax.plot(x, [r["accuracy"] for r in steps], lw=1, alpha=0.6, marker=marker,
                    label="train accuracy (mean since the last log)")
    if epochs:
        x = [r["step"] for r in epochs]
        loss_ax.plot(x, [r["train_loss"] for r in epochs], "o-", label="train loss (mean over the epoch)")
        acc_ax.plot(x, [r["train_accuracy"] for r in epochs], "o-", label="train accuracy (mean over the epoch)")
    if validations:
        acc_ax.plot(*zip(*validations), "s-", label="validation accuracy")
    loss_ax.set(xlabel="optimizer step", ylabel="cross-entropy", title="Loss")
    acc_ax.set(xlabel="optimizer step", ylabel="accuracy", title="Accuracy", ylim=(0, 1))
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        if ax.lines:
            ax.legend(fontsize=8)
    fig.suptitle(f"{run.path.name}\n{describe_run(run.read_config())}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path or run.path / "curves.png")


def plot_confusion(report: ClassificationReport, path: str | Path, title: str = "") -> Path:
    """Confusion matrix, each row normalised to the gold label's share, counts in the cells."""
    counts = report.confusion
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    k = len(report.labels)
    fig = Figure(figsize=(1.6 * k + 2, 1.4 * k + 1.5))
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), n in np.ndenumerate(counts):
        ax.text(j, i, f"{n:,}\n{share[i, j]:.0%}", ha="center", va="center",
                color="white" if share[i, j] > 0.5 else "black", fontsize=9)
    ax.set_xticks(range(k), report.labels, rotation=20)
    ax.set_yticks(range(k), report.labels)
    scores = f"accuracy {report.accuracy:.3f} on {report.total:,} pairs"
    ax.set(xlabel="predicted", ylabel="gold", title=f"{_wrapped(title, 36)}\n{scores}" if title else scores)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the gold row")
    fig.tight_layout()
    return _save(fig, path)


def plot_class_scores(report: ClassificationReport, path: str | Path, title: str = "") -> Path:
    """Precision, recall and F1 of each label as grouped bars."""
    scores = report.per_class()
    x = np.arange(len(scores))
    fig = Figure(figsize=(2 + 1.8 * len(scores), 3.8))
    ax = fig.subplots()
    for offset, metric in zip((-0.27, 0, 0.27), ("precision", "recall", "f1")):
        values = [s[metric] for s in scores.values()]
        bars = ax.bar(x + offset, values, width=0.26, label=metric if metric != "f1" else "F1")
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, list(scores))
    ax.set(ylim=(0, 1.18), ylabel="score", title=_wrapped(title, 36 + 12 * len(scores)) if title
           else "per-class scores")
    ax.legend(fontsize=8, loc="upper center", ncol=3)
    fig.tight_layout()
    return _save(fig, path)


def plot_accuracy_breakdown(by_length: list[dict], by_genre: list[dict], path: str | Path, title: str = "") -> Path:
    """Accuracy by pair length, and by genre when the data name genres: bars, each with its pair count."""
    panels = [("pair length (tokens with specials)", by_length, "range")]
    panels += [("genre", by_genre, "genre")] if by_genre else []
    widths = [max(6, 0.55 * len(rows) + 1) for _, rows, _ in panels]  # room for every genre's name
    fig = Figure(figsize=(sum(widths), 4.2))
    axes = fig.subplots(1, len(panels), squeeze=False, width_ratios=widths)
    for ax, (xlabel, rows, key) in zip(axes[0], panels):
        bars = ax.bar(range(len(rows)), [r["accuracy"] for r in rows], color="tab:blue")
        ax.bar_label(bars, labels=[f"{r['accuracy']:.2f}\n{r['pairs']:,}" for r in rows], fontsize=7)
        slanted = key == "genre" or len(rows) > 8
        ax.set_xticks(range(len(rows)), [r[key] for r in rows], rotation=40 if slanted else 0,
                      ha="right" if slanted else "center")
        ax.set(xlabel=xlabel, ylabel="accuracy", ylim=(0, 1.25), yticks=np.arange(0, 1.01, 0.2))  # room for labels
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{_wrapped(title)}\naccuracy, with the pairs below each value" if title else
                 "accuracy, with the pairs below each value", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_evaluation(evaluation: Evaluation, directory: str | Path, stem: str = "") -> list[Path]:
    """``{stem}confusion.png``, ``{stem}class_scores.png`` and ``{stem}accuracy.png`` in ``directory``."""
    directory = Path(directory)
    title = evaluation.dataset
    return [plot_confusion(evaluation.report, directory / f"{stem}confusion.png", title=title),
            plot_class_scores(evaluation.report, directory / f"{stem}class_scores.png", title=title),
            plot_accuracy_breakdown(evaluation.by_length, evaluation.by_genre, directory / f"{stem}accuracy.png",
                                    title=title)]


def _wrapped(title: str, width: int = 48) -> str:
    """A title on as many lines as it needs: long dataset names are not cut at the figure's edges."""
    return "\n".join(textwrap.wrap(title, width, break_on_hyphens=False)) or title


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".")))
    return path
