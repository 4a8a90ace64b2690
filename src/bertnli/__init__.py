"""bertnli: fine-tune pretrained BERT encoders for natural language inference.

    from bertnli import NLIModel
    NLIModel.load("runs/snli").predict([("A man plays a guitar.", "A person makes music.")])
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Imported on first use, so that `bertnli --help` answers without loading torch.
_EXPORTS = {
    "NLIModel": "bertnli.inference",
    "Prediction": "bertnli.inference",
    "TrainConfig": "bertnli.training",
    "train": "bertnli.training",
    "Example": "bertnli.data.example",
    "Dataset": "bertnli.data.example",
    "NLI_LABELS": "bertnli.data.example",
    "BertnliError": "bertnli.errors",
    "evaluate": "bertnli.evaluation",
    "read_dataset": "bertnli.data",
}
#: Subpackages reachable as attributes after a bare `import bertnli` (`bertnli.data.read_dataset`).
_MODULES = ("data", "evaluation", "export", "inference", "model", "serving", "text", "training", "weights")
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _MODULES:
        return importlib.import_module(f"bertnli.{name}")
    raise AttributeError(f"module 'bertnli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_MODULES})
