"""bertnli: fine-tune pretrained BERT encoders for natural language inference.

    from bertnli import NLIModel
    NLIModel.load("runs/snli").predict([("A man plays a guitar.", "A person makes music.")])
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Imported on first use, so that `bertnli --help` answers without loading torch.
_EXPORTS = {
    "NLIModel": "bertnli.inference",
    "Prediction": "bertnli.inference",
    "TrainConfig": "bertnli.training.config",
    "train": "bertnli.training.loop",
    "TrainResult": "bertnli.training.loop",
    "Example": "bertnli.data.example",
    "Dataset": "bertnli.data.example",
    "NLI_LABELS": "bertnli.data.example",
    "read_dataset": "bertnli.data",
    "train_validation_split": "bertnli.data",
    "evaluate": "bertnli.evaluation",
    "Evaluation": "bertnli.evaluation",
    "BertnliError": "bertnli.errors",
    "BertnliWarning": "bertnli.errors",
    "CheckpointError": "bertnli.errors",
    "ConfigError": "bertnli.errors",
    "DataError": "bertnli.errors",
    "DownloadError": "bertnli.errors",
    "TrainingInterrupted": "bertnli.errors",
}
if TYPE_CHECKING:  # what type checkers and editors see: the same names, imported at once
    from bertnli.data import read_dataset, train_validation_split
    from bertnli.data.example import NLI_LABELS, Dataset, Example
    from bertnli.errors import (
        BertnliError,
        BertnliWarning,
        CheckpointError,
        ConfigError,
        DataError,
        DownloadError,
        TrainingInterrupted,
    )
    from bertnli.evaluation import Evaluation, evaluate
    from bertnli.inference import NLIModel, Prediction
    from bertnli.training.config import TrainConfig
    from bertnli.training.loop import TrainResult, train
#: Subpackages reachable as attributes after a bare `import bertnli` (`bertnli.data.read_dataset`).
_MODULES = ("data", "errors", "evaluation", "export", "inference", "model", "plots", "serving", "text",
            "training", "weights")
__all__ = [  # the keys of _EXPORTS, spelled out for static tools
    "NLI_LABELS",
    "BertnliError",
    "BertnliWarning",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "Dataset",
    "DownloadError",
    "Evaluation",
    "Example",
    "NLIModel",
    "Prediction",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "evaluate",
    "read_dataset",
    "train",
    "train_validation_split",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(_importlib.import_module(_EXPORTS[name]), name)
    if name in _MODULES:
        return _importlib.import_module(f"bertnli.{name}")
    raise AttributeError(f"module 'bertnli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({"__version__", *_EXPORTS, *_MODULES})
