"""PNG figures: training curves, confusion matrix, per-class scores, accuracy by pair length and genre, and
several runs compared.

Drawn on `matplotlib.figure.Figure` directly, without pyplot: nothing here changes the backend or the open
figures of a notebook that trains a model."""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from bertnli.metrics import ClassificationReport, wilson_interval
from bertnli.paths import atomic_write
from bertnli.training.run import RunDir, describe_run

if TYPE_CHECKING:
    from bertnli.evaluation import Evaluation


#: Dots per inch of the figures written and shown.
DPI = 110


class ShownFigure(Figure):
    """A `Figure` that a notebook shows as a PNG: drawn without pyplot, a plain one shows as text until pyplot's
    inline backend has been loaded."""

    def _repr_png_(self) -> bytes:
        png = io.BytesIO()
        self.savefig(png, dpi=DPI, format="png")
        return png.getvalue()


def plot_curves(run: RunDir | str | Path, path: str | Path | None = None) -> Path:
    """`curves_figure` saved to ``path``, by default the run's ``curves.png``."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    return _save(curves_figure(run), path or run.path / "curves.png")


def curves_figure(run: RunDir | str | Path) -> Figure:
    """Loss and accuracy per logged step (thin) and per epoch (markers), with every validation (at epoch ends,
    and within epochs with ``eval_every``) and the one whose model was kept (a star), side by side, over the
    whole run from step 0, epoch ends dotted and chance dashed."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    config = run.read_config()
    records = list(run.metrics())
    steps = [r for r in records if r.get("kind") == "step"]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    validated = run.validations(records)
    fig = ShownFigure(figsize=(11, 4))
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
    if validated:
        acc_ax.plot([r["step"] for r in validated], [r["eval_accuracy"] for r in validated], "s-",
                    label="validation accuracy")
        kept = run.kept_validation(records)
        if kept:
            _star(acc_ax, kept["step"], kept["eval_accuracy"], label="the kept model")
    _chance(loss_ax, acc_ax, _classes(config))
    loss_ax.set(xlabel="optimizer step", ylabel="cross-entropy", title="Loss")
    loss_ax.set_ylim(bottom=0)
    acc_ax.set(xlabel="optimizer step", ylabel="accuracy", title="Accuracy", ylim=(0, 1))
    for ax in (loss_ax, acc_ax):
        for r in epochs[:-1]:  # where each epoch ended, but for the last
            ax.axvline(r["step"], color="grey", ls=":", lw=0.8)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        ax.legend(fontsize=8)
    fig.suptitle(f"{run.path.name}\n{describe_run(config)}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_comparison(runs: Sequence[RunDir | str | Path], path: str | Path) -> Path:
    """`comparison_figure` saved to ``path``."""
    return _save(comparison_figure(runs), path)


def comparison_figure(runs: Sequence[RunDir | str | Path]) -> Figure:
    """Several runs on one figure, against epochs, so that runs of other batch sizes line up: the training loss
    as logged, and every validation, each run's kept model starred. Each run is named as given, and described
    below the axes."""
    dirs = [run if isinstance(run, RunDir) else RunDir(run) for run in runs]
    configs = [run.read_config() for run in dirs]
    fig = ShownFigure(figsize=(11, 4.4 + 0.22 * len(dirs)))
    loss_ax, acc_ax = fig.subplots(1, 2)
    for run, config, color in zip(dirs, configs, _colours(len(dirs))):
        records = list(run.metrics())
        at = _in_epochs(records, config)
        steps = [r for r in records if r["kind"] == "step"]
        loss_ax.plot([at(r) for r in steps], [r["loss"] for r in steps], color=color, lw=1,
                     marker="." if len(steps) < 20 else None, label=str(run.path))
        validated = run.validations(records)
        acc_ax.plot([at(r) for r in validated], [r["eval_accuracy"] for r in validated], "s-", color=color,
                    markersize=4, label=str(run.path))
        kept = run.kept_validation(records)
        if kept:
            _star(acc_ax, at(kept), kept["eval_accuracy"], color)
    classes = {_classes(config) for config in configs}
    if len(classes) == 1:  # the same task: one chance level
        _chance(loss_ax, acc_ax, classes.pop())
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="Training loss (mean since the last log)")
    loss_ax.set_ylim(bottom=0)
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="Validation accuracy (\u2605 the kept model)", ylim=(0, 1))
    for ax in (loss_ax, acc_ax):
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    described = "\n".join(f"{run.path}: {describe_run(config)}" for run, config in zip(dirs, configs))
    fig.text(0.01, 0.01, described, fontsize=8, va="bottom", family="monospace")
    fig.tight_layout(rect=(0, 0.03 + 0.03 * len(dirs), 1, 1))
    return fig


def _in_epochs(records: list[dict], config: dict) -> Callable[[dict], float]:
    """Where a logged record falls, in epochs: step 100 of an epoch of 400 steps is 0.25 into it. An epoch not
    finished is taken to be as long as the one before; a first epoch not finished, as its data and batch make it
    (about as long: batches cut by --max-tokens or packed rows are more or fewer)."""
    ends = {r["epoch"]: r["step"] for r in records if r["kind"] == "epoch"}
    train, hardware = config.get("train", {}), config.get("hardware") or {}
    pairs_a_step = train.get("batch_size", 1) * train.get("grad_accum", 1) * hardware.get("processes", 1)
    planned = max(1, math.ceil(config.get("data", {}).get("train", {}).get("pairs", 1) / pairs_a_step))

    def position(record: dict) -> float:
        epoch = record["epoch"]
        start = ends.get(epoch - 1, 0)
        if epoch in ends:
            length = ends[epoch] - start
        elif epoch > 1:
            length = start - ends.get(epoch - 2, 0)  # as long as the one before
        else:
            length = planned
        return epoch - 1 + (record["step"] - start) / max(length, 1)

    return position


def _classes(config: dict) -> int:
    """How many labels a run's model tells apart (as its config.json records them)."""
    return len(config.get("train", {}).get("labels") or []) or 3


def _chance(loss_ax: Axes, acc_ax: Axes, classes: int) -> None:
    """Dashed lines at the loss and accuracy of guessing among ``classes`` labels."""
    loss_ax.axhline(np.log(classes), color="grey", ls="--", lw=1, label=f"chance (ln {classes})")
    acc_ax.axhline(1 / classes, color="grey", ls="--", lw=1, label=f"chance (1/{classes})")


def _star(ax: Axes, x: float, y: float, color: str | tuple = "gold", label: str | None = None) -> None:
    """The mark of a kept model: large and behind the lines, so that the validation it marks shows on it."""
    ax.plot(x, y, "*", color=color, markeredgecolor="black", markersize=18, label=label, zorder=1.5)


def _colours(n: int) -> list:
    """``n`` colours that tell runs apart: matplotlib's ten, then a colour map's evenly spaced."""
    if n <= 10:
        return [f"C{i}" for i in range(n)]
    return [colormaps["viridis"](i / (n - 1)) for i in range(n)]


def plot_confusion(report: ClassificationReport, path: str | Path, title: str = "") -> Path:
    """Confusion matrix, each row normalised to the gold label's share, counts in the cells."""
    counts = report.confusion
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    k = len(report.labels)
    fig = ShownFigure(figsize=(1.6 * k + 2, 1.4 * k + 1.5))
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
    fig = ShownFigure(figsize=(2 + 1.8 * len(scores), 3.8))
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
    """Accuracy by pair length, and by genre when the data name genres: a bar for each group with its pair
    count and a 95% interval (groups of few pairs get wide ones), beside the accuracy over all pairs."""
    panels = [("pair length (tokens with specials)", by_length, "range")]
    panels += [("genre", by_genre, "genre")] if by_genre else []
    widths = [max(6, 0.55 * len(rows) + 1) for _, rows, _ in panels]  # room for every genre's name
    fig = ShownFigure(figsize=(sum(widths), 4.2))
    axes = fig.subplots(1, len(panels), squeeze=False, width_ratios=widths)
    pairs = sum(r["pairs"] for r in by_length)
    overall = sum(r["accuracy"] * r["pairs"] for r in by_length) / max(pairs, 1)
    for ax, (xlabel, rows, key) in zip(axes[0], panels):
        accuracy = np.array([r["accuracy"] for r in rows])
        low, high = np.array([wilson_interval(r["accuracy"], r["pairs"]) for r in rows]).reshape(-1, 2).T
        ax.bar(range(len(rows)), accuracy, color="tab:blue", yerr=[accuracy - low, high - accuracy],
               error_kw={"elinewidth": 1, "capsize": 3, "ecolor": "black"})
        for i, r in enumerate(rows):
            ax.text(i, high[i] + 0.02, f"{r['accuracy']:.2f}\nn={r['pairs']:,}", ha="center", va="bottom",
                    fontsize=7)
        ax.axhline(overall, color="tab:orange", ls="--", lw=1, label=f"all {pairs:,} pairs: {overall:.2f}")
        slanted = key == "genre" or len(rows) > 7
        ax.set_xticks(range(len(rows)), [r[key] for r in rows], rotation=40 if slanted else 0,
                      ha="right" if slanted else "center")
        ax.set(xlabel=xlabel, ylabel="accuracy", ylim=(0, 1.3), yticks=np.arange(0, 1.01, 0.2))  # room for labels
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    caption = "accuracy of each group of pairs (n of them), with its 95% interval"
    fig.suptitle(f"{_wrapped(title)}\n{caption}" if title else caption, fontsize=10)
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
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format=path.suffix.lstrip(".")))
    return path
