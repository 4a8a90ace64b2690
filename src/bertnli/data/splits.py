"""Seeded train / validation splits."""

from __future__ import annotations

import random
from collections import defaultdict

from bertnli.data.example import Dataset
from bertnli.errors import ConfigError


def check_validation_fraction(fraction: float) -> None:
    """Refuse a share of the data to hold out that leaves either part nothing."""
    if not 0 < fraction < 1:
        raise ConfigError(f"validation_fraction (--validation-fraction) must be between 0 and 1, not {fraction}")


#: The most pairs held out when no share is asked for: accuracy on 10,000 pairs is known to within about ±1%,
#: and more would cost training data and time (55,000 of SNLI's 550,000 pairs take minutes to score on a CPU).
DEFAULT_VALIDATION_CAP = 10_000


def train_validation_split(
    dataset: Dataset,
    validation_fraction: float | None = None,
    *,
    validation_size: int | None = None,
    seed: int = 0,
    cap: int | None = DEFAULT_VALIDATION_CAP,
) -> tuple[Dataset, Dataset]:
    """Hold out a validation slice: ``validation_size`` examples, else ``validation_fraction``, else 10% up to
    ``cap`` examples (None: no cap, as before there was one).

    Deterministic for a seed, stratified by label (each label keeps its share, to within one example);
    both parts keep the original order, are named like ``snli_1.0_dev[train 90%]``, and skip nothing
    themselves (what the source skipped stays in its own ``skipped``).
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"train_validation_split splits a bertnli Dataset (read_dataset(path), or Dataset(name, "
                        f"[Example(premise, hypothesis, label), ...])), not a {type(dataset).__name__}")
    n = len(dataset)
    if validation_size is not None and validation_fraction is not None:
        raise ConfigError("give validation_fraction or validation_size, not both")
    if validation_size is None and validation_fraction is None and cap is not None and round(n * 0.1) > cap:
        validation_size = cap
    if validation_size is None:
        fraction = 0.1 if validation_fraction is None else validation_fraction
        check_validation_fraction(fraction)
        size = round(n * fraction)
        tags = (f"train {1 - fraction:.0%}", f"validation {fraction:.0%}")
    else:
        size = validation_size
        tags = (f"train {n - size:,}", f"validation {size:,}")
    if not 0 < size < n:
        raise ConfigError(f"cannot hold out {size:,} of {n:,} examples in {dataset.name}: both parts need some")
    held = _stratified_sample(dataset, size, seed)
    positions: tuple[list[int], list[int]] = ([], [])
    for i in range(n):
        positions[i in held].append(i)
    train, validation = (Dataset(f"{dataset.name}[{tag}]", [dataset.examples[i] for i in where],
                                 tokenised=dataset.tokenised, predicted=dataset.predicted,
                                 drawn_from=(dataset, where))
                         for tag, where in zip(tags, positions))
    return train, validation


def _stratified_sample(dataset: Dataset, size: int, seed: int) -> set[int]:
    """``size`` indices drawn per label in proportion to its count (largest remainders get the rest)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, example in enumerate(dataset.examples):
        groups[example.label or ""].append(i)
    labels = sorted(groups)
    exact = {label: size * len(groups[label]) / len(dataset) for label in labels}
    quota = {label: int(exact[label]) for label in labels}
    by_remainder = sorted(labels, key=lambda label: (quota[label] - exact[label], label))
    for label in by_remainder[: size - sum(quota.values())]:
        quota[label] += 1
    rng = random.Random(seed)
    return {i for label in labels for i in rng.sample(groups[label], quota[label])}
