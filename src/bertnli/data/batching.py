"""Which pairs go together in a batch: length buckets, token budgets, and shards for data parallelism.

Batches are numpy arrays of indices into an `EncodedPairs`. The schedule of an epoch is a pure function of
(seed, epoch), so a resumed run replays the same batches and a data-parallel rank can take its share
without talking to the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bertnli.errors import ConfigError

#: How many batches are drawn together, sorted by length and cut: bigger means less padding, less mixing.
BUCKET_BATCHES = 64


@dataclass(frozen=True)
class BatchPlan:
    """How to cut batches: at most ``batch_size`` pairs and, if set, ``max_tokens`` tokens: padded tokens,
    or with ``packed`` (several pairs to a row, no padding to speak of) the pairs' own tokens. A batch split
    into ``shares`` parts (ranks × micro-batches, each of at most ceil(pairs / shares) pairs) keeps each part
    within ``max_tokens``. No batch has fewer than ``min_size`` pairs unless the pairs run out (data-parallel
    runs need a pair for every rank): the token budget gives way first."""

    batch_size: int
    max_tokens: int | None = None
    packed: bool = False
    min_size: int = 1
    shares: int = 1

    def __post_init__(self) -> None:
        if self.batch_size < 1 or (self.max_tokens is not None and self.max_tokens < 1):
            raise ConfigError(f"batches need at least one pair and one token; got batch_size {self.batch_size}, "
                              f"max_tokens {self.max_tokens}")
        if not 1 <= self.min_size <= self.batch_size:
            raise ConfigError(f"a batch of at most {self.batch_size} pairs cannot hold {self.min_size}")

    def cut(self, order: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
        """Cut ``order`` (indices, ideally sorted by length) into consecutive batches."""
        if self.max_tokens is None:
            return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        batches, start = [], 0
        while start < len(order):
            stop, longest, total = start, 0, 0
            while stop < len(order) and stop - start < self.batch_size:
                longest = max(longest, int(lengths[order[stop]]))
                total += int(lengths[order[stop]])
                part = -(-(stop - start + 1) // self.shares)  # pairs in the largest part
                over = (total / self.shares if self.packed else part * longest) > self.max_tokens
                if over and stop - start >= self.min_size:
                    break
                stop += 1
            batches.append(order[start:stop])
            start = stop
        return batches


def training_batches(lengths: np.ndarray, plan: BatchPlan, seed: int, epoch: int) -> list[np.ndarray]:
    """One epoch's batches: shuffle, sort within buckets of ``BUCKET_BATCHES`` batches, shuffle batches.
    Packed batches skip the sorting, which would only save padding that packing leaves out anyway: each
    batch then holds about as many tokens as any other, and its packed rows keep one shape.

    Every pair appears exactly once. Same (seed, epoch) → same batches. A batch smaller than the plan's
    ``min_size`` (a bucket's last, or a last bucket's only one) joins the batch before it.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    bucket = max(1, len(order)) if plan.packed else plan.batch_size * BUCKET_BATCHES
    batches: list[np.ndarray] = []
    for start in range(0, len(order), bucket):
        chunk = order[start : start + bucket]
        cut = plan.cut(chunk if plan.packed else chunk[np.argsort(lengths[chunk], kind="stable")], lengths)
        batches.extend(cut)
        if len(batches) > 1 and len(batches[-1]) < plan.min_size:  # a bucket's short last batch, or last bucket
            batches[-2:] = [np.concatenate(batches[-2:])]
    return [batches[i] for i in rng.permutation(len(batches))]


def inference_batches(lengths: np.ndarray, plan: BatchPlan) -> list[np.ndarray]:
    """Batches for evaluation and prediction: all pairs sorted by length, longest first."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return plan.cut(order, lengths)


def shard(batch: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This rank's share of a global batch (interleaved, so shares have similar lengths)."""
    return batch[rank::world_size]

