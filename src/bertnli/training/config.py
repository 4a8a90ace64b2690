"""Training settings as data: one dataclass, two recipes, every value overridable."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from bertnli.errors import ConfigError

#: The two starting points. ``d2l`` is the "Dive into Deep Learning" SNLI chapter; ``finetune`` is the
#: usual recipe for Hugging Face checkpoints (AdamW, linear warm-up then decay).
RECIPES: dict[str, dict[str, Any]] = {
    "d2l": dict(
        optimizer="adam", lr=1e-4, batch_size=512, max_len=128, epochs=5,
        weight_decay=0.0, warmup_ratio=0.0, schedule="constant", grad_clip=0.0,
    ),
    "finetune": dict(
        optimizer="adamw", lr=5e-5, batch_size=32, max_len=128, epochs=3,
        weight_decay=0.01, warmup_ratio=0.1, schedule="linear", grad_clip=1.0,
    ),
}


@dataclass
class TrainConfig:
    """Everything that decides a training run. Saved as the run's ``config.json``.

    Build it with `TrainConfig.from_recipe`, which fills in the recipe's values; ``recipe`` records which
    one, and a new model trained with ``d2l`` numbers its labels in d2l's order. ``max_tokens`` caps each
    batch's tokens as well as its pairs; ``pack`` puts several pairs in each row; ``compile`` (GPUs) trains
    a compiled network on packed rows of fixed shape; ``cache`` keeps encoded data on disk; ``num_heads``
    (d2l checkpoints only) and ``dropout`` replace the checkpoint's values when set; ``eval_batch_tokens``
    sizes validation batches; ``log_every`` and ``checkpoint_every`` count optimizer steps (0: checkpoints at
    epoch ends only)."""

    model: str = "minilm"
    recipe: Literal["d2l", "finetune"] = "finetune"
    epochs: int = 3
    batch_size: int = 32
    lr: float = 5e-5
    max_len: int = 128
    optimizer: Literal["adam", "adamw"] = "adamw"
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    schedule: Literal["constant", "linear"] = "linear"
    max_tokens: int | None = None
    pack: bool = False
    grad_clip: float | None = 1.0
    grad_accum: int = 1
    early_stopping: int | None = None
    seed: int = 0
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    compile: bool = False
    cache: bool = True
    num_heads: int | None = None
    dropout: float | None = None
    eval_batch_tokens: int = 65536
    log_every: int = 50
    checkpoint_every: int | None = 500
    tensorboard: bool = False

    @classmethod
    def from_recipe(cls, recipe: str = "finetune", **overrides: Any) -> TrainConfig:
        """The recipe's values, then ``overrides``. None means "keep the recipe's value", so settings that can
        be off are turned off with 0 (``grad_clip=0``, ``checkpoint_every=0``)."""
        if recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
        values = {**RECIPES[recipe], **{k: v for k, v in overrides.items() if v is not None}}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training settings: {', '.join(unknown)}")
        return cls(recipe=recipe, **values).validated()

    def validated(self) -> TrainConfig:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "max_len": 5 <= self.max_len <= 4096,
            "grad_accum": self.grad_accum >= 1,
            "warmup_ratio": 0 <= self.warmup_ratio < 1,
            "max_tokens": self.max_tokens is None or self.max_tokens >= self.max_len,
            "weight_decay": self.weight_decay >= 0,
            "grad_clip": self.grad_clip is None or self.grad_clip >= 0,  # 0: no clipping
            "early_stopping": self.early_stopping is None or self.early_stopping >= 1,
            "dropout": self.dropout is None or 0 <= self.dropout < 1,
            "eval_batch_tokens": self.eval_batch_tokens >= self.max_len,
            "log_every": self.log_every >= 1,
            "checkpoint_every": self.checkpoint_every is None or self.checkpoint_every >= 0,  # 0: at epoch ends only
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"invalid value for {', '.join(bad)}: " + ", ".join(
                f"{name}={getattr(self, name)!r}" for name in bad))
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

