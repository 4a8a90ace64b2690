"""Batches: every pair once per epoch, a schedule fixed by (seed, epoch), budgets kept, little padding."""

from __future__ import annotations

import numpy as np
import pytest

from bertnli.data.batching import BatchPlan, inference_batches, shard, training_batches

LENGTHS = np.random.default_rng(0).integers(8, 80, 5000)


def padded_tokens(batches: list[np.ndarray]) -> int:
    return sum(len(b) * int(LENGTHS[b].max()) for b in batches)


@pytest.mark.parametrize("plan", [BatchPlan(32), BatchPlan(32, 1024), BatchPlan(32, packed=True),
                                  BatchPlan(32, 800, packed=True)])
def test_every_pair_once_and_the_same_schedule_for_the_same_seed_and_epoch(plan):
    batches = training_batches(LENGTHS, plan, seed=3, epoch=1)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(LENGTHS)))
    assert all(1 <= len(b) <= 32 for b in batches)
    again = training_batches(LENGTHS, plan, seed=3, epoch=1)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    other = training_batches(LENGTHS, plan, seed=3, epoch=2)
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other))


def test_token_budgets_count_padding_unless_packed():
    for batch in training_batches(LENGTHS, BatchPlan(64, 1024), seed=0, epoch=0):
        assert len(batch) * LENGTHS[batch].max() <= 1024
    for batch in training_batches(LENGTHS, BatchPlan(64, 1024, packed=True), seed=0, epoch=0):
        assert LENGTHS[batch].sum() <= 1024


def test_a_budget_holds_for_each_rank_and_micro_batch():
    """2 ranks × 2 micro-batches: every micro-batch, cut as the training loop cuts it, keeps to 300 tokens."""
    plan = BatchPlan(4 * 16, 300, min_size=2, shares=4)
    for batch in training_batches(LENGTHS, plan, seed=0, epoch=0):
        for rank in range(2):
            for micro in np.array_split(shard(batch, rank, 2), 2):
                assert len(micro) * LENGTHS[micro].max(initial=0) <= 300


def test_length_buckets_cut_padding_and_packed_batches_carry_even_token_counts():
    bucketed = training_batches(LENGTHS, BatchPlan(32), seed=0, epoch=0)
    shuffled = [np.random.default_rng(0).permutation(len(LENGTHS))[i : i + 32] for i in range(0, len(LENGTHS), 32)]
    assert padded_tokens(bucketed) < 0.8 * padded_tokens(shuffled)
    # Packing leaves no padding to save; unsorted batches keep the tokens per batch (so the rows) steady.
    full = [LENGTHS[b].sum() for b in training_batches(LENGTHS, BatchPlan(256, packed=True), seed=0, epoch=0)
            if len(b) == 256]
    assert np.std(full) < 0.05 * np.mean(full)


def test_a_short_last_batch_joins_the_one_before_when_ranks_need_a_pair_each():
    lengths = LENGTHS[: 32 * 3 + 1]
    batches = training_batches(lengths, BatchPlan(32, min_size=2), seed=0, epoch=0)
    assert sorted(map(len, batches)) == [32, 32, 33]
    assert all(len(shard(b, rank, 2)) >= 1 for b in batches for rank in range(2))
    # A last bucket of one pair (batches of 2 come 64 to a bucket) joins the bucket before it.
    batches = training_batches(LENGTHS[: 2 * 64 + 1], BatchPlan(2, min_size=2), seed=0, epoch=0)
    assert sorted(map(len, batches)) == [2] * 63 + [3]


@pytest.mark.parametrize("packed", [False, True])
def test_a_token_budget_gives_way_to_a_pair_for_every_rank(packed):
    """A budget too small for 4 long pairs still leaves each of 4 ranks one pair, and only then binds."""
    plan = BatchPlan(64, 100, packed=packed, min_size=4)
    batches = training_batches(LENGTHS, plan, seed=0, epoch=0)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(LENGTHS)))
    assert all(len(b) >= 4 for b in batches)
    tokens = [int(LENGTHS[b].sum() if packed else len(b) * LENGTHS[b].max()) for b in batches]
    # Over the budget: 4 pairs, or 4 joined by the short last batch of their bucket.
    assert all(t <= 100 or len(b) < 8 for t, b in zip(tokens, batches))
    assert any(t > 100 for t in tokens)  # the budget gave way


def test_inference_batches_run_longest_first_within_the_budget():
    batches = inference_batches(LENGTHS, BatchPlan(1000, 4096))
    order = np.concatenate(batches)
    assert sorted(order.tolist()) == list(range(len(LENGTHS)))
    assert (np.diff(LENGTHS[order]) <= 0).all()
    assert all(len(b) * LENGTHS[b].max() <= 4096 for b in batches)
