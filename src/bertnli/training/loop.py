"""The training loop: fine-tune a pretrained BERT on NLI pairs, evaluate every epoch, keep the best.

Read `Trainer.fit` top to bottom: that is the method. Everything a resumed run needs (model, optimizer,
schedule, RNG, position in the epoch, running sums) is in `Trainer.state_dict`, and the batches of an
epoch are a pure function of (seed, epoch), so a run killed at any step resumes where it stopped.
Under `torchrun`, each rank trains on its share of every global batch and rank 0 alone writes files.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from bertnli.data.batching import BatchPlan, shard, training_batches
from bertnli.data.example import D2L_LABELS, NLI_LABELS, Dataset
from bertnli.data.labels import TWO_CLASS_LABELS, require_labelled
from bertnli.errors import (
    BertnliWarning,
    CheckpointError,
    ConfigError,
    DataError,
    TrainingDiverged,
    TrainingInterrupted,
    stop_signals,
    termination_as_interrupt,
)
from bertnli.inference import batched_logits
from bertnli.metrics import ClassificationReport
from bertnli.model import BERTClassifier
from bertnli.progress import progress_bar, progress_note
from bertnli.runtime import (
    DeviceBatch,
    autocast,
    autocast_dtype,
    compile_network,
    device_name,
    precision_name,
)
from bertnli.text import EncodedPairs, Tokenizer, WordTokenizer, encode_pairs
from bertnli.text.cache import encode_cached
from bertnli.text.packing import fit_rows, pack_rows
from bertnli.training.config import TrainConfig
from bertnli.training.distributed import StopVote, lost_process_as_error, place_process, process_group_scope
from bertnli.training.optim import build_optimizer, build_schedule
from bertnli.training.run import RunDir, describe_dataset, describe_run
from bertnli.weights import load_pretrained, save_classifier
from bertnli.weights.files import read_json_object
from bertnli.weights.pretrained import ClassifierHead

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

#: A new run's opening line and where a resumed run takes up, at INFO (the command line shows them).
logger = logging.getLogger(__name__)

#: Compiled training rounds its packed row counts up to a multiple of this.
ROW_MULTIPLE = 8


@dataclass
class TrainResult:
    """What `train` returns: the run directory (the best model is in ``run_dir / "model"``), one record per
    epoch (losses, accuracies, pairs per second, as in metrics.jsonl) and the best accuracy reached."""

    run_dir: Path
    epochs: list[dict[str, Any]]
    best_accuracy: float | None

    def __repr__(self) -> str:
        best = "None" if self.best_accuracy is None else f"{self.best_accuracy:.4f}"
        return f"TrainResult(run_dir={str(self.run_dir)!r}, epochs={len(self.epochs)}, best_accuracy={best})"


@dataclass
class RunState:
    """Where the run stands, and the running sums of the epoch in progress."""

    epoch: int = 0
    batch: int = 0  # batches of this epoch already trained
    step: int = 0  # optimizer steps in all
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    train_seconds: float = 0.0
    best_accuracy: float | None = None  # the kept model's
    best_score: float | None = None  # the kept model's score by `TrainConfig.select_by`
    best_epoch: int | None = None  # the epoch (from 1) whose validation found the best model
    stale_epochs: int = 0  # epochs in a row in which no validation improved on the best
    pending_validation: bool = False  # stopped on the step where a validation was due: it comes first
    epochs: list[dict[str, Any]] = field(default_factory=list)


def choose_labels(dataset: Dataset, recipe: str) -> list[str]:
    """The label order a new model gets: NLI's three classes (d2l's order for the d2l recipe),
    two-class RTE-style labels, or the sorted names found in the data."""
    require_labelled(dataset)
    found = set(dataset.label_counts())
    if not all(isinstance(label, str) and label == label.lower() for label in found):
        raise DataError(dataset.name, f"labels must be lower-case names such as 'entailment', not "
                                      f"{sorted(map(repr, found))}")
    if found <= set(NLI_LABELS):
        return list(D2L_LABELS if recipe == "d2l" else NLI_LABELS)
    if found <= set(TWO_CLASS_LABELS):
        return list(TWO_CLASS_LABELS)
    if "not_entailment" in found and found & {"neutral", "contradiction"}:
        raise DataError(dataset.name, f"mixes three-class and two-class labels ({', '.join(sorted(found))}); "
                                      "train on one kind of data")
    return sorted(found)


def _warn_about_odd_labels(dataset: Dataset, labels: list[str]) -> None:
    """NLI's label names beside others (a typo, "maybe"): the model gets a class for each, so say so."""
    others = sorted(set(labels) - set(NLI_LABELS) - set(TWO_CLASS_LABELS))
    if others and set(labels) & set(NLI_LABELS):
        counts = dataset.label_counts()
        shown = ", ".join(f"{label!r} ({counts[label]:,} pair{'s' * (counts[label] != 1)})" for label in others)
        warnings.warn(f"labels {shown} stand beside NLI's names: the model gets {len(labels)} classes "
                      f"({', '.join(labels)}); correct them if they are mistakes",
                      BertnliWarning, stacklevel=5)


def _warn_about_missing_labels(dataset: Dataset, labels: list[str]) -> None:
    """A model label that no training pair has is one the model learns never to predict: say so."""
    counts = dataset.label_counts()
    present = [label for label in labels if label in counts]
    missing = " or ".join(label for label in labels if label not in present)
    if len(present) == 1:
        warnings.warn(f"every training pair is {present[0]}; the model will learn nothing else", BertnliWarning,
                      stacklevel=5)
    elif missing:
        warnings.warn(f"no training pair is {missing}; the model keeps the labels {', '.join(labels)} but will "
                      f"learn never to predict {missing}", BertnliWarning, stacklevel=5)


def _warn_about_shared_pairs(train_set: Dataset, eval_set: Dataset | None) -> None:
    """Validation pairs that are also training pairs (the same file given twice, overlapping files) make the
    validation accuracy flatter the model: say so when they are more than a few (5%)."""
    if eval_set is None or not len(eval_set):
        return
    seen = {(e.premise, e.hypothesis) for e in train_set.examples}
    shared = sum((e.premise, e.hypothesis) in seen for e in eval_set.examples)
    if shared > len(eval_set) / 20:
        warnings.warn(f"{shared:,} of the {len(eval_set):,} validation pairs are also training pairs: the validation "
                      "accuracy will flatter the model", BertnliWarning, stacklevel=5)


#: Fine-tuning a pretrained BERT takes learning rates of 1e-5 to 1e-3 (d2l's recipe: 1e-4); far above, the loss
#: grows, often without becoming NaN, which would stop the run.
HIGHEST_USUAL_LR = 1e-2


def _warn_about_learning_rate(lr: float) -> None:
    if lr > HIGHEST_USUAL_LR:
        warnings.warn(f"lr {lr:g} is far above the 1e-5 to 1e-3 that fine-tuning a pretrained BERT takes; the loss "
                      "will likely grow rather than fall", BertnliWarning, stacklevel=5)


def _warn_about_pseudo_labels(train_set: Dataset) -> None:
    """Training on predictions bertnli wrote is self-training or distillation when meant, a mix-up when not."""
    if train_set.predicted:
        warnings.warn(f"{train_set.name} holds predictions written by bertnli: the model learns another model's "
                      "answers (pseudo-labels), not gold labels", BertnliWarning, stacklevel=5)


def _warn_about_ignored_settings(given: TrainConfig, saved: TrainConfig) -> None:
    """A resumed run keeps the settings it started with: say so when the caller passed others."""
    if given == TrainConfig():  # the command line, or a caller who set nothing
        return
    recorded = saved.to_dict()
    changed = [name for name, value in given.to_dict().items() if recorded[name] != value]
    if changed:
        warnings.warn(f"a resumed run keeps the settings it started with; the ones given for {', '.join(changed)} "
                      f"are not used (start a new run to change them)", BertnliWarning, stacklevel=4)


def describe_epoch(record: dict[str, Any]) -> str:
    """One line for an epoch's record: its loss, accuracies, speed and time, and whether it found the best."""
    line = f"epoch {record['epoch']}: loss {record['train_loss']:.4f}, train accuracy {record['train_accuracy']:.4f}"
    if "eval_accuracy" in record:
        line += f", validation accuracy {record['eval_accuracy']:.4f}"
    line += f", {record['pairs_per_second']:,.0f} pairs/s, {record['train_seconds']:.0f} s"
    return line + (" (best so far)" if record["best"] else "")


def logging_interval(steps_in_epoch: int) -> int:
    """Steps between logged records when ``log_every`` is not set: about 20 an epoch, every 50 steps at most."""
    return max(1, min(50, steps_in_epoch // 20))


def gold_indices(dataset: Dataset, labels: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(labels)}
    unknown = {e.label for e in dataset.examples} - set(index)
    if None in unknown:
        missing = sum(e.label is None for e in dataset.examples)
        raise DataError(dataset.name, f"{missing:,} pairs have no label; training and validation pairs need one "
                                      "(name a label column of another name with --columns label=COLUMN; "
                                      "columns={'label': COLUMN} in Python)")
    if unknown:
        raise DataError(dataset.name, f"labels {sorted(map(str, unknown))} are not among the model's {labels}")
    return np.fromiter((index[e.label] for e in dataset.examples),  # type: ignore[index]  # checked above
                       dtype=np.int64, count=len(dataset))


def encode_dataset(dataset: Dataset, tokenizer: Tokenizer, max_len: int, cache: bool = True) -> EncodedPairs:
    """Pack the dataset's pairs, through the on-disk cache unless ``cache`` is False. The parts of a split are
    taken from their whole's entry: one entry a file, whatever the seed or share of the split."""
    if cache and dataset.drawn_from is not None:
        whole, positions = dataset.drawn_from
        return encode_dataset(whole, tokenizer, max_len).take(np.asarray(positions, dtype=np.int64))
    premises, hypotheses = [e.premise for e in dataset.examples], [e.hypothesis for e in dataset.examples]
    if cache:
        return encode_cached(tokenizer, premises, hypotheses, max_len, tokenised=dataset.tokenised)
    return encode_pairs(tokenizer, premises, hypotheses, max_len, dataset.tokenised)


class Trainer:
    """Holds the model, data and optimizer of one run. `fit()` trains; files go to ``run``."""

    #: Steps in a row whose fp16 loss overflowed in every micro-batch (so none changed the weights) that stop
    #: a run.
    OVERFLOW_PATIENCE = 100

    def __init__(self, cfg: TrainConfig, train_set: Dataset, eval_set: Dataset | None, run_dir: str | Path,
                 *, resume: bool = False, overwrite: bool = False, progress: bool = True,
                 source: dict[str, Any] | None = None,
                 on_epoch: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.run = RunDir(run_dir)
        self.on_epoch = on_epoch
        self.source = source  # how the command line chose the data; None for runs started from Python
        self.started_processes: int | None = None  # as recorded by a resumed run (older checkpoints lack it)
        self._overflowed_steps = 0  # see OVERFLOW_PATIENCE
        if resume:
            saved = self.run.read_config()
            given, cfg = cfg, self.run.recorded_settings(saved)
            _warn_about_ignored_settings(given, cfg)
            self.started_processes = (saved.get("hardware") or {}).get("processes")
            self.run.check_resumable(saved, train_set, eval_set, self.started_processes or 1)
            self.source = saved["data"].get("source")
        self.cfg, self.show_progress = cfg, progress
        self.rank, self.world, self.device = place_process(cfg.device)
        self.dtype = autocast_dtype(self.device, cfg.precision)
        torch.manual_seed(cfg.seed)
        self._build_model(train_set, resume)
        if self.rank:  # each rank draws its own dropout masks; the weights are rank 0's, through DDP
            torch.manual_seed(int(np.random.SeedSequence([cfg.seed, self.rank]).generate_state(1)[0]))
        self.vote = StopVote() if self.world > 1 else None
        if resume and isinstance(self.tokenizer, WordTokenizer):  # read raw text as the run began to
            self.tokenizer.split_punctuation = bool(saved["train"].get("split_punctuation", False))
        self._encode_data(train_set, eval_set)
        self.optimizer = build_optimizer(self.model, cfg)
        # fp16 gradients underflow without loss scaling; for other precisions the scaler passes through.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.schedule = build_schedule(self.optimizer, cfg, self.total_steps)
        self.state = RunState()
        self.stop_requested, self.stop_signal = False, signal.SIGINT
        self.board: SummaryWriter | None = None
        if resume:
            self._go_on(train_set)
        elif self.rank == 0:
            self._start(train_set, eval_set, overwrite)
            logger.info("%s: %s, %s", self.run.path, describe_run(self.run.read_config()), _epochs(cfg.epochs))

    def _start(self, train_set: Dataset, eval_set: Dataset | None, overwrite: bool) -> None:
        """Record a new run: its settings, labels, data, hardware (config.json)."""
        _warn_about_odd_labels(train_set, self.labels)
        _warn_about_missing_labels(train_set, self.labels)
        _warn_about_shared_pairs(train_set, eval_set)
        _warn_about_pseudo_labels(train_set)
        _warn_about_learning_rate(self.cfg.lr)
        data = {"train": describe_dataset(train_set), "eval": describe_dataset(eval_set) if eval_set else None,
                "source": self.source}
        hardware = {"device": device_name(self.device), "processes": self.world,
                    "precision": precision_name(self.dtype)}
        rule = {"split_punctuation": self.tokenizer.split_punctuation} \
            if isinstance(self.tokenizer, WordTokenizer) else {}
        self.run.start({**self.cfg.to_dict(), "labels": self.labels, **rule, "max_tokens_per": "process"}, data,
                       hardware, overwrite=overwrite)
        self.run.keep_training_pairs(train_set)

    def _go_on(self, train_set: Dataset) -> None:
        """Take up a stopped run from its checkpoint; a run stopped before its first starts again. A run started
        before runs kept their training pairs (or stopped before it did) keeps them now: its data are checked to be
        the same."""
        if self.rank == 0:
            self.run.remove_leftovers()
            if not self.run.train_pairs_path.is_file():
                self.run.keep_training_pairs(train_set)
        checkpoint = self.run.load_checkpoint()
        if checkpoint is None:  # a model saved before the first checkpoint is made again
            warnings.warn(f"{self.run.path} stopped before its first checkpoint: it starts again from its first "
                          "step", BertnliWarning, stacklevel=4)
        else:
            self.load_state_dict(checkpoint)
        if self.rank == 0:
            self.run.truncate_metrics(self.state.step)
            logger.info(self._resume_note())

    def _stopped_early(self) -> bool:
        """Whether validation has not improved for ``early_stopping`` epochs."""
        return self.cfg.early_stopping is not None and self.state.stale_epochs >= self.cfg.early_stopping

    def _resume_note(self) -> str:
        p, cfg = self.state, self.cfg
        if p.epoch >= cfg.epochs or self._stopped_early():
            return (f"{self.run.path} finished training already ({p.epoch} of {_epochs(cfg.epochs)}): its reports "
                    f"are written again. To train further, start a new run from its model, {self.run.model_dir}")
        return f"resuming {self.run.path} at step {p.step} (epoch {p.epoch + 1} of {cfg.epochs})"

    def _build_model(self, train_set: Dataset, resume: bool) -> None:
        """The classifier on the pretrained encoder; ``wrapped`` for DDP, ``step_model`` as trained."""
        pretrained = load_pretrained(self.cfg.model, num_heads=self.cfg.num_heads)
        heads = pretrained.model.config.num_heads
        if self.cfg.num_heads and pretrained.kind != "d2l" and self.cfg.num_heads != heads:
            raise ConfigError(f"num_heads (--num-heads) is for d2l checkpoints, which do not record it; "
                              f"{self.cfg.model} has {heads} heads")
        positions = pretrained.model.config.max_position
        if self.cfg.max_len > positions:
            raise ConfigError(f"max_len {self.cfg.max_len} (--max-len) is longer than the {positions} positions "
                              f"that {self.cfg.model} has embeddings for; use {positions} or less")
        self.tokenizer = pretrained.tokenizer
        self.labels = choose_labels(train_set, self.cfg.recipe)
        model = BERTClassifier.from_pretrained(pretrained.model, len(self.labels), self.cfg.dropout)
        if pretrained.head is not None and not resume:  # a resumed run's checkpoint holds its own layer
            self._take_over(pretrained.head, model, pretrained.source)
        self.model = model.to(self.device)
        on_gpu = self.device.type == "cuda"
        self.wrapped = (DistributedDataParallel(self.model, device_ids=[self.device] if on_gpu else None)
                        if self.world > 1 else self.model)
        # Compiled training runs on packed rows (see `_device_batch`): a few fixed shapes, each compiled once.
        self.step_model = compile_network(self.wrapped, self.cfg.compile,
                                          cuda_graphs=self.world == 1 and self.cfg.grad_accum == 1)

    def _take_over(self, head: ClassifierHead, model: BERTClassifier, source: str) -> None:
        """Training on from a fine-tuned classifier keeps its output layer, its rows put in the order of this run's
        labels, when it scores the same labels; otherwise the new layer is trained in its place, as said."""
        if sorted(head.labels) != sorted(self.labels):
            if self.rank == 0:
                warnings.warn(f"{source} classifies {', '.join(head.labels)}, and the training data has "
                              f"{', '.join(self.labels)}: its output layer is left behind, and a new one is trained",
                              BertnliWarning, stacklevel=2)
            return
        rows = [head.labels.index(label) for label in self.labels]
        with torch.no_grad():
            model.output.weight.copy_(head.output.weight[rows])
            model.output.bias.copy_(head.output.bias[rows])
        if self.rank == 0:
            logger.info("%s: trains on from %s's output layer (%s)", self.run.path, source, ", ".join(head.labels))

    def _encode_data(self, train_set: Dataset, eval_set: Dataset | None) -> None:
        cfg = self.cfg
        self.train_pairs = encode_dataset(train_set, self.tokenizer, cfg.max_len, cfg.cache)
        self.train_gold = gold_indices(train_set, self.labels)
        self.eval_set = eval_set
        self.eval_pairs = encode_dataset(eval_set, self.tokenizer, cfg.max_len, cfg.cache) if eval_set else None
        self.eval_gold = gold_indices(eval_set, self.labels) if eval_set else None
        # A global batch is what one optimizer step sees: every rank's share, every accumulated micro-batch.
        # --batch-size and --max-tokens are per process and micro-batch; every rank gets at least one pair.
        if len(self.train_pairs) < self.world:
            raise ConfigError(f"{len(self.train_pairs)} training pairs cannot give each of {self.world} processes one")
        shares = self.world * cfg.grad_accum
        self.plan = BatchPlan(cfg.batch_size * shares, cfg.max_tokens, cfg.pack or cfg.compile, min_size=self.world,
                              shares=shares)
        self.eval_plan = BatchPlan(4096, cfg.eval_batch_tokens)
        # Under a token budget the number of batches varies a little from epoch to epoch: count every epoch's,
        # so that the schedule ends exactly at the last step.
        self.total_steps = sum(len(self._epoch_batches(epoch)) for epoch in range(cfg.epochs))
        # Compiled training pads every micro-batch to this many pairs, and its packed rows to the most that any
        # micro-batch of the run needs: the compiled step meets one shape, compiled once.
        self.micro_batch_pairs = math.ceil(math.ceil(self.plan.batch_size / self.world) / cfg.grad_accum)
        self.packed_rows = self._most_packed_rows() if cfg.compile else 0

    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        return training_batches(self.train_pairs.valid_lens, self.plan, self.cfg.seed, epoch)

    def _micro_batches(self, global_batch: np.ndarray) -> list[np.ndarray]:
        """This rank's share of ``global_batch``, cut into ``grad_accum`` micro-batches."""
        share = shard(global_batch, self.rank, self.world)
        return [m for m in np.array_split(share, self.cfg.grad_accum) if len(m)]

    def _most_packed_rows(self) -> int:
        """The packed rows of this rank's largest micro-batch in the whole run, rounded up to ROW_MULTIPLE
        (a pass of `fit_rows` over every epoch: about 1 s for 550,000 pairs)."""
        lengths, width = self.train_pairs.valid_lens, self.cfg.max_len
        most = max(len(fit_rows(lengths[m], width)) for epoch in range(self.cfg.epochs)
                   for batch in self._epoch_batches(epoch) for m in self._micro_batches(batch))
        return math.ceil(most / ROW_MULTIPLE) * ROW_MULTIPLE

    # ---- the method ---------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        p = self.state
        with self._stop_on_signals():
            while p.epoch < self.cfg.epochs:
                # Checked first, so that a run resumed after its last evaluation stops as it would have.
                if self._stopped_early():
                    self.log({"kind": "early_stop", "epoch": p.epoch, "step": p.step})
                    break
                self.train_epoch()
                self.end_epoch()
                if self._agree(self.stop_requested):  # Ctrl-C during the evaluation: the checkpoint is saved
                    raise self._interrupted()
        if self.rank == 0:
            with self._stop_as_interrupted():
                self.write_reports()
        return TrainResult(self.run.path, p.epochs, p.best_accuracy)

    def write_reports(self) -> None:
        """Curves, and the best model's evaluation (Markdown, JSON, confusion matrix, per-class scores)."""
        from bertnli.evaluation import evaluate, write_report
        from bertnli.inference import NLIModel
        from bertnli.plots import plot_curves

        plot_curves(self.run)
        if self.eval_set is not None:
            logger.info("%s: scoring the best model (%s) on the %s validation pairs for evaluation.md",
                        self.run.path, self._best_model_found(), f"{len(self.eval_set):,}")
            best = NLIModel.load(self.run.model_dir, device=str(self.device), precision=self.cfg.precision,
                                 progress=self.show_progress)
            write_report(evaluate(best, self.eval_set), self.run.path)

    def _best_model_found(self) -> str:
        """When the kept model was found: "epoch 2, step 40", as its folder records it."""
        trained = read_json_object(self.run.model_dir / "config.json").get("trained")
        if isinstance(trained, dict) and {"epoch", "step"} <= trained.keys():
            return f"epoch {trained['epoch']}, step {trained['step']}"
        p = self.state  # checkpoints made before best_epoch was kept: the last epoch found best
        return f"epoch {p.best_epoch or max(r['epoch'] for r in p.epochs if r['best'])}"

    def train_epoch(self) -> None:
        p, cfg = self.state, self.cfg
        batches = self._epoch_batches(p.epoch)
        if p.pending_validation:  # saved at once: a crash now must not find it pending, and log it twice
            self.validate_within_epoch()
            self.save_checkpoint()
        self.model.train()
        bar = progress_bar(enabled=self.show_progress and self.rank == 0, total=len(batches), initial=p.batch,
                           desc=f"epoch {p.epoch + 1}/{cfg.epochs}", unit="batch", leave=False)
        log_every = cfg.log_every or logging_interval(len(batches))
        running = torch.zeros(4, device=self.device, dtype=torch.float64)  # see `optimizer_step`
        seen, steps, started = 0, 0, time.perf_counter()
        while p.batch < len(batches):
            running += self.optimizer_step(batches[p.batch])
            seen += len(shard(batches[p.batch], self.rank, self.world))
            steps += 1
            p.batch += 1
            p.step += 1
            bar.update(1)
            periodic = bool(cfg.checkpoint_every) and p.step % cfg.checkpoint_every == 0
            validating = self._validation_due(within_epoch=p.batch < len(batches))
            boundary = periodic or validating or p.step % log_every == 0 or p.batch == len(batches)
            stop = self._stop_now(end_of_epoch=p.batch == len(batches))
            if boundary or stop:
                self._absorb(running, seen, steps, time.perf_counter() - started)
                running.zero_()
                seen = steps = 0
                bar.set_postfix(loss=f"{p.loss_sum / max(p.seen, 1):.4f}", acc=f"{p.correct / max(p.seen, 1):.3f}",
                                refresh=False)  # shown at the next redraw: a log file gets no extra line
            if validating and stop:  # a stop asked for comes first; the resumed run validates before its first step
                p.pending_validation = True
            elif validating:
                self.validate_within_epoch()
                stop = self._agree(self.stop_requested)  # asked during the validation
            # The checkpoint at the end of an epoch comes after its evaluation (`end_epoch`), unless the run stops here.
            if (periodic and p.batch < len(batches)) or stop:
                self.save_checkpoint()
            if stop:
                bar.close()
                raise self._interrupted()
            if boundary:
                started = time.perf_counter()  # after any checkpoint: saving is not training time
        bar.close()

    def optimizer_step(self, global_batch: np.ndarray) -> torch.Tensor:
        """One update from one global batch: this rank's share of it, in ``grad_accum`` micro-batches whose
        gradients add up to the gradient of the whole. Returns (loss sum, correct, fp16 micro-batches whose loss
        overflowed, micro-batches) on the device: nothing here waits for the GPU."""
        scale = self.world / len(global_batch)  # DDP averages over ranks: the result is the global mean
        micro_batches = self._micro_batches(global_batch)
        sums = torch.zeros(4, device=self.device, dtype=torch.float64)
        sums[3].fill_(len(micro_batches))  # `sums[3] = n` would copy n from the host, waiting for the GPU
        for i, index in enumerate(micro_batches):
            batch = self._device_batch(index)
            with self._maybe_no_sync(i == len(micro_batches) - 1), autocast(self.device, self.dtype):
                args, kwargs = batch.model_inputs()
                logits = self.step_model(*args, **kwargs)
                loss_sum = F.cross_entropy(logits.float(), batch.labels,  # type: ignore[arg-type]  # labelled
                                           reduction="sum")
            self.scaler.scale(loss_sum * scale).backward()
            loss_value = loss_sum.detach().double()
            if self.scaler.is_enabled():  # fp16: a loss that overflows is a step the scaler skips; counted apart
                overflowed = ~torch.isfinite(loss_value)
                sums[2] += overflowed.double()
                loss_value = torch.where(overflowed, torch.zeros_like(loss_value), loss_value)
            sums[:2] += torch.stack([loss_value, (logits.argmax(-1) == batch.labels).sum().double()])
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)  # skipped, with a smaller scale next time, if fp16 overflowed
        self.scaler.update()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        return sums

    def _device_batch(self, index: np.ndarray) -> DeviceBatch:
        """The pairs at ``index`` on the device: padded to their longest, or packed into rows of max_len
        (always when compiled, then with fixed shapes: see ``micro_batch_pairs``)."""
        pairs, gold, cfg = self.train_pairs.take(index), self.train_gold[index], self.cfg
        if not (cfg.pack or cfg.compile):
            return DeviceBatch.from_pairs(pairs, self.device, gold)
        if not cfg.compile:
            return DeviceBatch.from_packed(pack_rows(pairs, cfg.max_len, self.tokenizer.pad_id), self.device, gold)
        packed = pack_rows(pairs, cfg.max_len, self.tokenizer.pad_id, num_rows=self.packed_rows)
        return DeviceBatch.from_packed(packed, self.device, gold, pairs=self.micro_batch_pairs)

    def end_epoch(self) -> dict[str, Any]:
        p = self.state
        record: dict[str, Any] = {
            "kind": "epoch", "epoch": p.epoch + 1, "step": p.step,
            "train_loss": p.loss_sum / max(p.seen, 1), "train_accuracy": p.correct / max(p.seen, 1),
            "pairs_per_second": p.seen / max(p.train_seconds, 1e-9), "train_seconds": p.train_seconds,
        }
        if self.eval_pairs is not None:
            started = time.perf_counter()
            report = self.validate()
            record.update(eval_accuracy=report.accuracy, eval_macro_f1=report.macro_f1(),
                          eval_seconds=time.perf_counter() - started)
        record["best"] = self._keep_if_best(record.get("eval_accuracy", record["train_accuracy"]),
                                            record.get("eval_macro_f1"))
        p.stale_epochs = 0 if p.best_epoch == p.epoch + 1 else p.stale_epochs + 1
        p.epochs.append(record)
        self.log(record)
        p.epoch, p.batch = p.epoch + 1, 0
        p.loss_sum, p.correct, p.seen, p.train_seconds = 0.0, 0, 0, 0.0
        self.save_checkpoint()
        # Told once saved: a reader that has gone (`2>&1 | head`) or a failing callback costs no training.
        if self.rank == 0 and self.on_epoch is not None:
            self.on_epoch(record)
        elif self.rank == 0 and self.show_progress:  # a notebook's bertnli.train: the scores, not bars alone
            progress_note(describe_epoch(record))
        return record

    def _validation_due(self, within_epoch: bool) -> bool:
        """Whether this step ends an ``eval_every`` interval counted from the epoch's start (its end validates
        anyway)."""
        every = self.cfg.eval_every
        return bool(every) and within_epoch and self.eval_pairs is not None and self.state.batch % every == 0

    def validate_within_epoch(self) -> None:
        """A validation between two steps of an epoch (``eval_every``): logged, and the model saved if it is
        the best yet."""
        p = self.state
        started = time.perf_counter()
        report = self.validate()
        seconds = time.perf_counter() - started
        macro_f1 = report.macro_f1()
        best = self._keep_if_best(report.accuracy, macro_f1)
        self.log({"kind": "eval", "epoch": p.epoch + 1, "step": p.step, "eval_accuracy": report.accuracy,
                  "eval_macro_f1": macro_f1, "eval_seconds": seconds, "best": best})
        p.pending_validation = False
        if self.rank == 0:
            logger.info("step %d (epoch %d of %d): validation accuracy %.4f%s", p.step, p.epoch + 1,
                        self.cfg.epochs, report.accuracy, " (best so far)" if best else "")

    def _keep_if_best(self, accuracy: float, macro_f1: float | None = None) -> bool:
        """Save the model if its score (``macro_f1`` when the run selects by it and there is one, else
        ``accuracy``) beats the best so far; returns whether it did."""
        p = self.state
        score = macro_f1 if self.cfg.select_by == "macro_f1" and macro_f1 is not None else accuracy
        if p.best_score is not None and score <= p.best_score:
            return False
        p.best_accuracy, p.best_score, p.best_epoch = accuracy, score, p.epoch + 1
        scores = {"accuracy": accuracy, **({"macro_f1": macro_f1} if macro_f1 is not None else {})}
        if self.rank == 0:
            save_classifier(self.run.model_dir, self.model, self.tokenizer, self.labels, self.cfg.max_len,
                            extra={"trained": {"epoch": p.epoch + 1, "step": p.step, **scores}})
        return True

    def validate(self) -> ClassificationReport:
        """Validation scores. Under DDP each rank scores every world-th pair and the counts are summed."""
        assert self.eval_pairs is not None and self.eval_gold is not None, "validation needs an eval_set"
        index = np.arange(self.rank, len(self.eval_pairs), self.world)
        with progress_bar(enabled=self.show_progress and self.rank == 0, total=len(index), unit="pair",
                          desc="validating", leave=False) as bar:
            logits = batched_logits(self.model, self.eval_pairs.take(index), self.device, self.dtype,
                                    self.eval_plan, done=bar.update)
        report = ClassificationReport.from_predictions(self.labels, self.eval_gold[index], logits.argmax(-1))
        if self.world > 1:
            counts = torch.from_numpy(report.confusion).to(self.device)
            dist.all_reduce(counts)
            report = ClassificationReport(self.labels, counts.cpu().numpy())
        return report

    # ---- bookkeeping ---------------------------------------------------------------------------
    def _stop_now(self, end_of_epoch: bool) -> bool:
        """Whether to stop after this step. One process stops at once; data-parallel ranks one step after any
        of them is asked, all together, and with no vote left outstanding past a stop or an epoch's end."""
        if self.vote is None:
            return self.stop_requested
        stop = self.vote.cast(self.stop_requested)
        if stop or end_of_epoch:
            stop = self.vote.settle() or stop
        return stop

    def _agree(self, flag: bool) -> bool:
        """``flag`` of any rank (a no-op in a single process)."""
        if self.vote is None:
            return flag
        self.vote.cast(flag)
        return self.vote.settle()

    def _interrupted(self) -> TrainingInterrupted:
        return TrainingInterrupted(self.run.path, command_line=self.source is not None, processes=self.world,
                                   signum=self.stop_signal)

    @contextlib.contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """The first Ctrl-C, SIGTERM (a scheduler's notice, or torchrun passing either on) or SIGHUP (the
        terminal closed; not under nohup, which ignores it) asks the loop to stop after the current step and
        save; a second one acts as it would have."""
        self.stop_requested, self.stop_signal = False, signal.SIGINT
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum, frame):
            self.stop_requested, self.stop_signal = True, signum
            signal.signal(signum, previous[signum])

        # A handler set outside Python reads as None, and cannot be set back: the default takes its place.
        previous = {signum: signal.signal(signum, request_stop) or signal.SIG_DFL
                    for signum in stop_signals()}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    @contextlib.contextmanager
    def _stop_as_interrupted(self) -> Iterator[None]:
        """Ctrl-C or SIGTERM after the last checkpoint (while the reports are written): `TrainingInterrupted`,
        whose message says how to resume, which writes them; SIGTERM would otherwise end the process unsaid."""
        try:
            with termination_as_interrupt():
                yield
        except KeyboardInterrupt as stop:
            self.stop_signal = getattr(stop, "signum", signal.SIGINT)
            raise self._interrupted() from None

    def _absorb(self, running: torch.Tensor, seen: int, steps: int, seconds: float) -> None:
        """Fold the running sums of the last ``steps`` steps (read from the device here, every ``log_every``
        steps) into the epoch. Stop when the loss is no longer a number; in fp16 (whose scaler skips the steps
        that overflow), when the weights are not, or when no step has changed them for `OVERFLOW_PATIENCE`
        steps (counted a log interval at a time)."""
        if self.world > 1:
            totals = torch.cat([running, torch.tensor([float(seen)], dtype=torch.float64, device=self.device)])
            dist.all_reduce(totals)
            running, seen = totals[:4], int(totals[4].item())
        loss_sum, correct, overflows, micro_batches = running.tolist()
        p = self.state
        if not math.isfinite(loss_sum) or (overflows and not all(bool(w.isfinite().all()) for w in
                                                                 self.model.parameters())):
            fp16 = "; or train in bf16 or fp32 (--precision)" if overflows else ""
            self._diverged(f"the training loss became {loss_sum if not overflows else math.nan}",
                           f"the weights overflowed. Lower the learning rate (lr={self.cfg.lr:g}, --lr) or clip the "
                           f"gradients (--grad-clip){fp16}")
        self._overflowed_steps = self._overflowed_steps + steps if overflows == micro_batches else 0
        if self._overflowed_steps >= self.OVERFLOW_PATIENCE:
            self._diverged(f"the fp16 loss overflowed in each of the last {self._overflowed_steps} steps",
                           "the loss scaler skipped them all, so no step changed the weights. Train in bf16 or "
                           f"fp32 (--precision), or lower the learning rate (lr={self.cfg.lr:g}, --lr)")
        p.loss_sum, p.correct, p.seen = p.loss_sum + loss_sum, p.correct + int(correct), p.seen + int(seen)
        p.train_seconds += seconds
        self.log({"kind": "step", "epoch": p.epoch + 1, "step": p.step, "loss": loss_sum / max(seen, 1),
                  "accuracy": correct / max(seen, 1), "lr": self.schedule.get_last_lr()[0],
                  "pairs_per_second": seen / max(seconds, 1e-9)})

    def _diverged(self, what: str, advice: str) -> None:
        """Stop, before a checkpoint or model holds the overflowed weights."""
        p = self.state
        kept = f"; the best model so far stays in {self.run.model_dir}" if p.best_accuracy is not None else ""
        raise TrainingDiverged(f"{what} by step {p.step} (epoch {p.epoch + 1}): {advice}{kept}")

    def _maybe_no_sync(self, sync: bool) -> contextlib.AbstractContextManager:
        if sync or not isinstance(self.wrapped, DistributedDataParallel):
            return contextlib.nullcontext()
        return self.wrapped.no_sync()

    def log(self, record: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        self.run.log(record)
        if self.cfg.tensorboard:
            if self.board is None:
                from torch.utils.tensorboard import SummaryWriter

                self.board = SummaryWriter(str(self.run.path / "tensorboard"))
            for key, value in record.items():
                if isinstance(value, float):
                    self.board.add_scalar(f"{record['kind']}/{key}", value, record["step"])
            self.board.flush()

    def save_checkpoint(self) -> None:
        state = self.state_dict()  # on every rank: it gathers each rank's random state
        if self.rank == 0:
            self.run.save_checkpoint(state)
        if self.world > 1:
            dist.barrier()

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint: the weights, the optimizer's, schedule's and loss scaler's states, where the run
        stands ("progress", a `RunState`), the number of processes, and every rank's random state (gathered
        to rank 0, which writes it)."""
        p = self.state
        rng = {"cpu": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None}
        ranks_rng = [rng]
        if self.vote is not None:
            ranks_rng = [{}] * self.world
            dist.all_gather_object(ranks_rng, rng, group=self.vote.group)
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "progress": {k: v for k, v in vars(p).items()},
            "processes": self.world,
            "rng": ranks_rng,  # one per rank: each draws its own dropout masks
        }

    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:
        """Go on from ``checkpoint`` (see `state_dict`), in as many processes as it was saved by."""
        processes = checkpoint.get("processes") or self.started_processes or self.world
        if processes != self.world:
            raise ConfigError(f"{self.run.path} was trained by {processes} process{'es' * (processes > 1)} and "
                              f"cuts its batches for as many; resume it with {processes}, not {self.world}")
        try:
            self.model.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        except (RuntimeError, ValueError) as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            first = lines[min(1, len(lines) - 1)][:200]  # past torch's "Error(s) in loading state_dict for ..."
            raise CheckpointError(self.run.checkpoint_path, f"does not fit this model or optimizer ({first}); to go "
                                  f"on from its weights, fine-tune --model {self.run.path} in a new run") from None
        self.schedule.load_state_dict(checkpoint["schedule"])
        if checkpoint.get("scaler"):  # absent from checkpoints of runs without fp16, and from older ones
            self.scaler.load_state_dict(checkpoint["scaler"])
        progress = {"best_score": checkpoint["progress"].get("best_accuracy"),  # runs that kept by accuracy alone
                    **checkpoint["progress"]}
        self.state = RunState(**progress)
        if isinstance(checkpoint["rng"], torch.Tensor):  # checkpoints from before one state per rank: rank 0's
            cuda = checkpoint.get("cuda_rng") or []
            mine = cuda[self.device.index or 0] if self.device.type == "cuda" and cuda else None
            checkpoint["rng"] = [{"cpu": checkpoint["rng"], "cuda": mine}] * self.world
        rng = checkpoint["rng"][self.rank]
        torch.set_rng_state(rng["cpu"])
        if rng["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)


def train(
    cfg: TrainConfig,
    train_set: Dataset,
    eval_set: Dataset | None,
    run_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    source: dict[str, Any] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Fine-tune ``cfg.model`` on ``train_set``, evaluating on ``eval_set`` each epoch (and every
    ``cfg.eval_every`` steps); files in ``run_dir``.

    ``source`` records how the data was chosen (the CLI's options), so `--resume` can read it again.
    ``on_epoch`` is called with each epoch's record once its checkpoint is saved.
    With ``resume``, the settings come from the run's config.json and ``cfg`` is ignored.

    The best model is chosen by validation accuracy (or macro F1: ``cfg.select_by``), or by training accuracy
    (at epoch ends) without ``eval_set``. The run seeds torch's global generator with ``cfg.seed``. Ctrl-C,
    SIGTERM or SIGHUP (unless ignored, as under nohup) stops it after the current step (or evaluation), saves a
    checkpoint and raises `TrainingInterrupted`; ``resume=True`` then continues where it stopped."""
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, e.g. TrainConfig(epochs=1), not a {type(cfg).__name__}")
    for role, dataset in (("train_set", train_set), ("eval_set", eval_set)):
        if not (isinstance(dataset, Dataset) or (role == "eval_set" and dataset is None)):
            raise TypeError(f"{role} must be a bertnli.data.Dataset, e.g. Dataset('name', [Example(premise, "
                            f"hypothesis, label), ...]), not {type(dataset).__name__}")
    if len(train_set) == 0:
        raise ConfigError(f"the training data {train_set.name} is empty")
    # Rank 0 alone writes the run's files and warns, and holds its folder (a group the caller started, or torchrun's).
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else int(os.environ.get("RANK", "0"))
    if eval_set is not None and eval_set.predicted:  # a model's answers: its report would fail at the end too
        held_out = "is held out from" if eval_set.drawn_from is not None else "holds"
        raise DataError(eval_set.name, f"{held_out} predictions written by bertnli: validating on a model's answers "
                        "would measure agreement with that model, not accuracy; give gold-labelled validation data "
                        "(--eval; eval_set in Python)")
    if eval_set is None and cfg.eval_every and not resume:
        raise ConfigError(f"eval_every={cfg.eval_every} validates on eval_set, and none was given")
    if eval_set is None and not resume and rank == 0:
        warnings.warn("no eval_set: the model kept is the one with the best training accuracy, which measures "
                      "memory more than skill; hold pairs out with bertnli.train_validation_split(data), as the "
                      "command line does", BertnliWarning, stacklevel=2)
    if not resume:
        cfg = cfg.validated()  # settings changed since the config was made
    held = RunDir(run_dir).lock() if rank == 0 else contextlib.nullcontext()
    lost = lost_process_as_error(Path(run_dir), RunDir(run_dir).checkpoint_path, command_line=source is not None)
    with process_group_scope(), held, lost:
        # No name keeps the Trainer: once fit returns, it and its DDP wrapper (which holds the process group)
        # can go before the group is destroyed.
        return Trainer(cfg, train_set, eval_set, run_dir, resume=resume, overwrite=overwrite,
                       progress=progress, source=source, on_epoch=on_epoch).fit()


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")
