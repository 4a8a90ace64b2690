"""The run directory: the unit of work. Every file in it is written atomically (temporary file, rename).

    RUN/config.json          every setting, the hardware, library versions, data fingerprints
    RUN/metrics.jsonl        one JSON object per logged step, validation within an epoch, and epoch
    RUN/checkpoint.pt        the last training state (model, optimizer, schedule, RNG, position)
    RUN/model/               the best model so far, in bertnli's own format (`NLIModel.load(RUN)`)
    RUN/curves.png           loss and accuracy curves
    RUN/evaluation.md, .json, confusion.png, class_scores.png, accuracy.png   the best model on the validation data
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertnli.data.example import Dataset, Example
from bertnli.errors import CheckpointError, ConfigError
from bertnli.paths import TEMPORARY_PREFIX, atomic_write, remove_dead_leftovers, write_text
from bertnli.text.cache import text_record
from bertnli.training.config import TrainConfig
from bertnli.weights.files import clear_dead_swaps, reason


def describe_run(config: dict) -> str:
    """Model, data, settings and hardware of a run, in one line."""
    train, data, hardware = config.get("train", {}), config.get("data", {}), config.get("hardware")
    batch, accum = train.get("batch_size", "?"), train.get("grad_accum", 1)
    processes = (hardware or {}).get("processes", 1)
    if isinstance(batch, int) and processes * accum > 1:  # what a step takes, over processes and micro-batches
        shares = [f"{processes} processes"] * (processes > 1) + [f"{accum} micro-batches"] * (accum > 1)
        batch = f"{batch} ({batch * processes * accum} a step: {' x '.join(shares)})"
    parts = [f"{_model_name(train)}, {train.get('recipe', '?')} recipe",
             f"trained on {data.get('train', {}).get('name', '?')}", f"batch {batch}, lr {train.get('lr', '?')}"]
    if train.get("select_by", "accuracy") != "accuracy" and data.get("eval"):  # else by training accuracy
        parts.append(f"kept by validation {train['select_by'].replace('_', ' ').replace('f1', 'F1')}")
    if hardware:  # runs started before the hardware was recorded have none
        parts.append(f"{hardware['precision']} on {hardware['device']}" + f" x {processes}" * (processes > 1))
    return " · ".join(parts)


def runs_table(runs: Sequence[RunDir]) -> str:
    """Each run's settings, how far it went, and its kept model's validation, one line each (as `bertnli plot`
    prints it for several runs)."""
    rows = [("run", "model", "recipe", "batch", "lr", "epochs", "best validation", "kept at", "training")]
    for run in runs:
        config, records = run.read_config(), list(run.metrics())
        train = config.get("train", {})
        done = sum(r["kind"] == "epoch" for r in records)
        kept = run.kept_validation(records)
        seconds = sum(r.get("train_seconds", 0) for r in records if r["kind"] == "epoch")
        rows.append((str(run.path), _model_name(train), str(train.get("recipe", "?")),
                     str(train.get("batch_size", "?")), str(train.get("lr", "?")),
                     f"{done} of {train.get('epochs', '?')}", f"{kept['eval_accuracy']:.4f}" if kept else "-",
                     f"epoch {kept['epoch']}, step {kept['step']}" if kept else "(no validation)",
                     f"{seconds:,.0f} s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _model_name(train: dict[str, Any]) -> str:
    """The model a run started from, by its last name (``minilm``, ``bert.small``, a folder's name)."""
    return Path(str(train.get("model", "?"))).name


def pair_hashes(examples: Sequence[Example]) -> np.ndarray:
    """A 64-bit hash of each pair's two texts, in order: what a run keeps of its training pairs
    (``train_pairs.npy``), so that data scored later can be checked for them."""
    def hashed(e: Example) -> int:
        return int.from_bytes(hashlib.blake2b(text_record(e.premise, e.hypothesis), digest_size=8).digest(), "little")

    return np.fromiter(map(hashed, examples), dtype=np.uint64, count=len(examples))


def dataset_fingerprint(dataset: Dataset) -> str:
    """sha256 of the examples' text and labels: the same data gives the same fingerprint."""
    digest = hashlib.sha256()
    for e in dataset.examples:
        digest.update(f"{e.premise}\t{e.hypothesis}\t{e.label}\n".encode())
    return digest.hexdigest()


def describe_dataset(dataset: Dataset) -> dict[str, Any]:
    """What config.json records of a dataset: its name, size, labels, skipped rows and fingerprint."""
    return {"name": dataset.name, "pairs": len(dataset), "labels": dict(dataset.label_counts()),
            "skipped": dict(dataset.skipped), "sha256": dataset_fingerprint(dataset)}


def library_versions() -> dict[str, str]:
    import tokenizers

    import bertnli

    return {
        "bertnli": bertnli.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "tokenizers": tokenizers.__version__,
        "python": platform.python_version(),
    }


#: What a run writes into its folder (all of it goes when a run starts over with ``overwrite``).
RUN_FILES = ("checkpoint.pt", "metrics.jsonl", "model", "curves.png", "confusion.png", "class_scores.png",
             "accuracy.png", "evaluation.md", "evaluation.json", "train_pairs.npy")


#: What every checkpoint holds (see `Trainer.state_dict`).
CHECKPOINT_KEYS = frozenset({"model", "optimizer", "schedule", "progress", "rng"})


class RunDir:
    """Reads and writes the files of one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def train_pairs_path(self) -> Path:
        """The hashes of the pairs the run trains on (`pair_hashes`), sorted."""
        return self.path / "train_pairs.npy"

    def keep_training_pairs(self, dataset: Dataset) -> None:
        hashes = np.sort(pair_hashes(dataset.examples))

        def save(tmp: Path) -> None:
            with tmp.open("wb") as f:
                np.save(f, hashes)

        atomic_write(self.train_pairs_path, save)

    def trained_on(self, examples: Sequence[Example]) -> list[int]:
        """The positions of the ``examples`` that are pairs the run trained on, as `keep_training_pairs` kept them
        (none for a run that kept none, as runs before it did)."""
        try:
            seen = np.load(self.train_pairs_path)
        except (OSError, ValueError):
            return []
        return np.flatnonzero(np.isin(pair_hashes(examples), seen)).tolist()

    def start(self, config: dict[str, Any], data: dict[str, Any], hardware: dict[str, Any] | None = None,
              overwrite: bool = False) -> None:
        """Create the run, in a new or empty folder or over an earlier run: one that already has a checkpoint or
        model only with ``overwrite``, and then everything the old run wrote goes, so nothing of it can be
        resumed, served or plotted. Call it holding the folder (`lock`)."""
        self.refuse_existing(overwrite)
        self.path.mkdir(parents=True, exist_ok=True)
        self.remove_leftovers()
        for name in (*RUN_FILES, "tensorboard"):
            path = self.path / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

        record = {"train": config, "data": data, "hardware": hardware, "versions": library_versions()}
        self.write_json(self.config_path, record)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run folder for this process, so that a second process training into it is refused
        rather than mixing its files with ours. Released when the block ends or the process dies."""
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            with self._flock():
                yield
        finally:
            if created and not any(self.path.iterdir()):  # a run refused before writing anything
                self.path.rmdir()

    @contextlib.contextmanager
    def _flock(self) -> Iterator[None]:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks
            yield
            return
        folder = os.open(self.path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConfigError(f"another process is training in {self.path}; wait for it, or train "
                                  "elsewhere") from None
            yield
        finally:
            os.close(folder)

    def refuse_existing(self, overwrite: bool = False) -> None:
        """A `ConfigError` unless a new run can start here: nothing in the folder bears a name that a run
        writes, or it holds a run that has no checkpoint or model yet (or, with ``overwrite``, any run). Files
        of other names (a job's log, notes) stay as they are; files a run would replace or delete (a
        config.json of another kind, model/, ...) are never written over."""
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"{self.path} is a file; a run goes in a folder (--out)")
        taken = sorted(name for name in ("config.json", *RUN_FILES, "tensorboard") if (self.path / name).exists())
        if not taken:
            return
        if not self.holds_run_record():
            raise ConfigError(f"{self.path} holds {', '.join(taken)} but no run, which a run would write over; "
                              "train into another folder")
        if not overwrite and (self.checkpoint_path.exists() or self.model_dir.exists()):
            raise ConfigError(f"{self.path} already holds a run; resume it (--resume {self.path}; resume=True "
                              "in Python), train elsewhere, or start over (--overwrite; overwrite=True)")

    def remove_leftovers(self) -> None:
        """Clear what a process killed while writing left in the folder: its temporary files and half-written
        model folders go; a model folder set aside to be replaced comes back if the new one had not yet taken
        its place. Only for the holder of the folder (`lock`): no other writer is left, on any machine."""
        remove_dead_leftovers(self.path, f"{TEMPORARY_PREFIX}*", any_owner=True)
        clear_dead_swaps(self.model_dir, any_owner=True)

    def holds_run_record(self) -> bool:
        """Whether config.json is a run's record (of a run, or one stopped before its first checkpoint)."""
        try:
            self.read_config()
        except (ConfigError, CheckpointError, OSError):
            return False
        return True

    def read_config(self) -> dict[str, Any]:
        """config.json, checked to be a run's record: its training settings and its data."""
        if self.path.is_file():
            raise ConfigError(f"{self.path} is a file, not a run directory")
        try:
            record = json.loads(self.config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{self.path} is not a run directory (no config.json)") from None
        except ValueError as exc:
            raise CheckpointError(self.config_path, f"not valid JSON: {exc}") from None
        if not (isinstance(record, dict) and isinstance(record.get("train"), dict)
                and isinstance(record.get("data"), dict)):
            inside = f"; {self.path.parent} is the run" if RunDir(self.path.parent).config_path.is_file() else ""
            raise ConfigError(f"{self.path} is not a run directory: its config.json is not a run's record of "
                              f"settings and data{inside}")
        return record

    def recorded_settings(self, record: dict[str, Any]) -> TrainConfig:
        """The training settings of ``record`` (as `read_config` returns it), checked as a new run's are."""
        try:
            return TrainConfig.from_dict(record["train"])  # checked as it is made
        except (ConfigError, TypeError) as exc:
            raise CheckpointError(self.config_path, f"the recorded training settings do not hold: {exc}") from None

    def check_resumable(self, record: dict[str, Any], train_set: Dataset, eval_set: Dataset | None,
                        processes: int) -> None:
        """A `ConfigError` unless the run can go on as it began: on the data it started with (its batches,
        labels and scores depend on them), with batches that can be cut again as they were."""
        for role, dataset in (("training", train_set), ("validation", eval_set)):
            before = record["data"].get("train" if role == "training" else "eval")
            recorded = before["sha256"] if before else None
            if recorded != (None if dataset is None else dataset_fingerprint(dataset)):
                raise ConfigError(f"the {role} data differ from those this run started with; a resumed run must "
                                  "see the same data (start a new run with --out to train on other data)")
        # Runs started before ``max_tokens`` was per process and micro-batch read it per optimizer step.
        train = record["train"]
        if train.get("max_tokens") and (processes > 1 or train.get("grad_accum", 1) > 1) \
                and train.get("max_tokens_per") != "process":
            raise ConfigError("this run was started by an earlier bertnli, which read --max-tokens per optimizer "
                              "step rather than per process and micro-batch, so its batches cannot be cut again "
                              "as they were; start it anew")

    @staticmethod
    def write_json(path: Path, data: Any) -> None:
        write_text(path, json.dumps(data, indent=2) + "\n")

    def log(self, record: dict[str, Any]) -> None:
        """Append one line to metrics.jsonl (one write call: a crash leaves whole lines)."""
        with self.metrics_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def metrics(self) -> Iterator[dict[str, Any]]:
        """The logged records. A last line cut off by a crash is left out (a resume logs that step again)."""
        if not self.metrics_path.exists():
            return
        try:
            text = self.metrics_path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise CheckpointError(self.metrics_path, f"not UTF-8 text (byte {exc.start:,})") from None
        lines = [line for line in text.splitlines() if line.strip()]
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except ValueError:
                if number < len(lines):
                    raise CheckpointError(self.metrics_path, f"line {number} is not valid JSON") from None
                return
            if not (isinstance(record, dict) and isinstance(record.get("step"), int)
                    and isinstance(record.get("kind"), str)):
                raise CheckpointError(self.metrics_path,
                                      f"line {number} is not a record of a step, validation or epoch")
            yield record

    def validations(self, records: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Every validation logged (at epoch ends, and every ``eval_every`` steps), in step order: among
        ``records`` when the caller has read them already (`metrics`)."""
        logged = self.metrics() if records is None else records
        return sorted((r for r in logged if r["kind"] in ("epoch", "eval") and "eval_accuracy" in r),
                      key=lambda r: r["step"])

    def kept_validation(self, records: Sequence[dict[str, Any]] | None = None) -> dict[str, Any] | None:
        """The validation whose model was kept: the last that beat every one before it (None without any)."""
        return next((r for r in reversed(self.validations(records)) if r.get("best")), None)

    def truncate_metrics(self, keep_step: int) -> None:
        """Drop records logged after ``keep_step`` (they belong to work a resume will redo)."""
        kept = [r for r in self.metrics() if r.get("step", 0) <= keep_step]
        write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    def require_metrics(self) -> None:
        if not self.metrics_path.is_file():
            raise ConfigError(f"{self.path} is not a run directory (no metrics.jsonl)")

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write checkpoint.pt whole, or leave the previous one."""
        try:
            atomic_write(self.checkpoint_path, lambda tmp: torch.save(state, tmp))
        except RuntimeError as exc:  # torch's writer reports a failed write (a full disk, a file size limit) so
            raise CheckpointError(self.checkpoint_path, f"could not be written, the previous one is kept "
                                  f"({reason(exc)}); is the disk full?") from None

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The last training state; None for a run stopped before its first checkpoint."""
        if not self.checkpoint_path.exists():
            return None
        try:
            state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for a damaged file
            raise CheckpointError(self.checkpoint_path, f"cannot read checkpoint: {reason(exc)}") from None
        if not (isinstance(state, dict) and state.keys() >= CHECKPOINT_KEYS):
            raise CheckpointError(self.checkpoint_path, "not a bertnli training checkpoint")
        return state
