"""Training settings as data: one dataclass, two recipes, every value overridable."""

from __future__ import annotations

import math
import numbers
import os
import types
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from bertnli.errors import ConfigError
from bertnli.text.pairs import MIN_MAX_LEN

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

#: The default of a recipe's setting: None, filled in from `RECIPES` as the config is made (typed Any, so that
#: type checkers see the value a made config holds, an int or a float, rather than ``int | None``).
_RECIPES_VALUE: Any = None


@dataclass
class TrainConfig:
    """Everything that decides a training run. Saved as the run's ``config.json``.

    ``recipe`` fills in the settings left unset (None) from `RECIPES`: ``TrainConfig(recipe="d2l", lr=3e-4)``
    is d2l's recipe with another learning rate. A new model trained with ``d2l`` numbers its labels in d2l's
    order. ``grad_clip=0`` turns clipping off. ``max_tokens`` caps each batch's tokens as well as its pairs;
    ``pack`` puts several pairs in each row; ``compile`` (GPUs) trains a compiled network on packed rows of
    fixed shape; ``cache`` keeps encoded data on disk; ``num_heads`` (d2l checkpoints only) and ``dropout``
    replace the checkpoint's values when set; ``eval_batch_tokens`` sizes validation batches; ``log_every``,
    ``checkpoint_every`` and ``eval_every`` count optimizer steps, ``eval_every`` from each epoch's start
    (``log_every=None``: every 50 steps, or often enough for about 20 records in a shorter epoch, so a short run
    still draws a curve;
    ``checkpoint_every=0``: checkpoints at epoch ends only; ``eval_every=0``: validation at epoch ends only).
    ``early_stopping`` counts epochs in which no validation improved on the best. ``select_by`` is the validation
    score that decides the best (``macro_f1`` for data where one label dominates: accuracy rewards a model that
    answers it always)."""

    model: str = "minilm"
    recipe: Literal["d2l", "finetune"] = "finetune"
    # The recipe's settings: left unset (or None), the recipe's value, so a made config always holds one.
    epochs: int = _RECIPES_VALUE
    batch_size: int = _RECIPES_VALUE
    lr: float = _RECIPES_VALUE
    max_len: int = _RECIPES_VALUE
    optimizer: Literal["adam", "adamw"] = _RECIPES_VALUE
    weight_decay: float = _RECIPES_VALUE
    warmup_ratio: float = _RECIPES_VALUE
    schedule: Literal["constant", "linear"] = _RECIPES_VALUE
    grad_clip: float = _RECIPES_VALUE
    # Settings of every recipe.
    max_tokens: int | None = None
    pack: bool = False
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
    log_every: int | None = None
    checkpoint_every: int = 500
    eval_every: int = 0
    select_by: Literal["accuracy", "macro_f1"] = "accuracy"
    tensorboard: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):  # numpy's numbers and path objects, as plain values (config.json holds them)
            value = getattr(self, f.name)
            if isinstance(value, bool):
                continue
            if isinstance(value, numbers.Integral):
                setattr(self, f.name, int(value))
            elif isinstance(value, numbers.Real):
                setattr(self, f.name, float(value))
            elif isinstance(value, os.PathLike):
                setattr(self, f.name, os.fspath(value))
        if self.recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {self.recipe!r}; choose one of {', '.join(RECIPES)}")
        for name, value in RECIPES[self.recipe].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        self.validated()  # a wrong setting is named where it is made, not when training starts

    @classmethod
    def from_recipe(cls, recipe: Literal["d2l", "finetune"] = "finetune", **overrides: Any) -> TrainConfig:
        """The recipe's values, then ``overrides``, checked. None means "keep the default", so settings that
        can be off are turned off with 0 (``grad_clip=0``, ``checkpoint_every=0``)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown training settings: {', '.join(unknown)}")
        return cls(recipe=recipe, **{k: v for k, v in overrides.items() if v is not None})

    def validated(self) -> TrainConfig:
        """This config, once every value has its type and range; else `ConfigError` naming the bad ones."""
        hints = get_type_hints(type(self))
        wrong = [f"{f.name}={getattr(self, f.name)!r} ({_expected(hints[f.name])})" for f in fields(self)
                 if not _fits(getattr(self, f.name), hints[f.name])]
        if wrong:
            raise ConfigError("invalid training settings: " + ", ".join(wrong))
        rules = {  # name: (holds, what it must be)
            "epochs": (self.epochs >= 1, "at least 1"),
            "batch_size": (self.batch_size >= 1, "at least 1"),
            "lr": (0 < self.lr < math.inf, "above 0 and finite"),
            "max_len": (MIN_MAX_LEN <= self.max_len <= 4096, f"from {MIN_MAX_LEN} to 4096"),
            "grad_accum": (self.grad_accum >= 1, "at least 1"),
            "warmup_ratio": (0 <= self.warmup_ratio < 1, "at least 0 and below 1"),
            "max_tokens": (self.max_tokens is None or self.max_tokens >= self.max_len,
                           f"at least max_len ({self.max_len})"),
            "weight_decay": (0 <= self.weight_decay < math.inf, "0 or more, and finite"),
            "grad_clip": (self.grad_clip >= 0, "0 (no clipping) or more"),
            "early_stopping": (self.early_stopping is None or self.early_stopping >= 1, "at least 1"),
            "dropout": (self.dropout is None or 0 <= self.dropout < 1, "at least 0 and below 1"),
            "eval_batch_tokens": (self.eval_batch_tokens >= self.max_len, f"at least max_len ({self.max_len})"),
            "log_every": (self.log_every is None or self.log_every >= 1, "at least 1"),
            "checkpoint_every": (self.checkpoint_every >= 0, "0 (at epoch ends only) or more"),
            "eval_every": (self.eval_every >= 0, "0 (at epoch ends only) or more"),
            "seed": (0 <= self.seed < 2**32, "from 0 to 2**32 - 1"),
        }
        bad = [f"{name}={getattr(self, name)!r} (must be {rule})" for name, (holds, rule) in rules.items()
               if not holds]
        if bad:
            raise ConfigError("invalid value for " + ", ".join(bad))
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """The settings a run recorded. Runs recorded before None meant "the recipe's value" wrote None for
        "off": read as 0."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.update({k: 0 for k in ("grad_clip", "checkpoint_every") if k in values and values[k] is None})
        return cls(**values)


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of the annotated type (ints count as floats; bools count as neither)."""
    for option in _options(hint):
        if get_origin(option) is Literal:
            if value in get_args(option):
                return True
        elif option is type(None):
            if value is None:
                return True
        elif option is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return True
        elif option is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return True
        elif isinstance(value, option):
            return True
    return False


def _expected(hint: Any) -> str:
    """The annotated type in words ("one of 'adam', 'adamw'", "an int"), None left unsaid."""
    names = {int: "an int", float: "a number", bool: "True or False", str: "a string"}
    words = [("one of " + ", ".join(map(repr, get_args(o)))) if get_origin(o) is Literal else names[o]
             for o in _options(hint) if o is not type(None)]
    return "expected " + " or ".join(words)


def _options(hint: Any) -> tuple[Any, ...]:
    """The types a union allows (``int | None`` → int, NoneType), or the one type."""
    return get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)
