"""Training: settings, the loop, metrics and the run directory."""

from bertnli.errors import TrainingInterrupted
from bertnli.training.config import RECIPES, TrainConfig
from bertnli.training.loop import Trainer, TrainResult, train
from bertnli.training.metrics import ClassificationReport
from bertnli.training.run import RunDir

__all__ = [
    "RECIPES",
    "ClassificationReport",
    "RunDir",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingInterrupted",
    "train",
]
