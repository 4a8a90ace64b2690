"""Training: settings, the loop, optimizers, data parallelism and the run directory."""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use, so that the settings (`bertnli.training.config`) load without torch.
_EXPORTS = {
    "RECIPES": "bertnli.training.config",
    "TrainConfig": "bertnli.training.config",
    "Trainer": "bertnli.training.loop",
    "TrainResult": "bertnli.training.loop",
    "train": "bertnli.training.loop",
    "RunDir": "bertnli.training.run",
    "TrainingInterrupted": "bertnli.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'bertnli.training' has no attribute {name!r}")
