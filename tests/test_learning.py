"""Learning shown by learning: a tiny random BERT masters a small NLI task with a real signal."""

from __future__ import annotations

import json

import pytest
import torch
from synthetic import synthetic_dataset, tiny_d2l_checkpoint

from bertnli import NLIModel
from bertnli.training import TrainConfig, train


def test_tiny_bert_learns_synthetic_nli(tmp_path):
    checkpoint = tiny_d2l_checkpoint(tmp_path / "tiny")
    cfg = TrainConfig.from_recipe("d2l", model=str(checkpoint), epochs=30, batch_size=32, lr=1e-3,
                                  num_heads=4, log_every=20)
    train_set, eval_set = synthetic_dataset(3000, seed=1), synthetic_dataset(300, seed=2, name="held-out")
    result = train(cfg, train_set, eval_set, tmp_path / "run", progress=False)

    accuracies = [e["eval_accuracy"] for e in result.epochs]
    assert accuracies[-1] > 0.9, accuracies
    assert accuracies[0] < accuracies[-1]
    # The run directory holds what it promises, and the saved model predicts like the trained one.
    run = tmp_path / "run"
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["kind"] == "epoch"]
    assert [e["epoch"] for e in epochs] == list(range(1, 31))
    assert (run / "curves.png").stat().st_size > 0 and (run / "confusion.png").is_file()
    model = NLIModel.load(run, device="cpu")
    assert model.labels == ["entailment", "contradiction", "neutral"]  # the d2l recipe keeps d2l's order
    # "no dog" could be read off the hypothesis alone; "dog" and "cat" need the premise.
    predictions = model.predict([("red dog runs big", "no dog"), ("red dog runs big", "dog"),
                                 ("red dog runs big", "cat")])
    assert [p.label for p in predictions] == ["contradiction", "entailment", "neutral"]
    assert all(abs(sum(p.probabilities.values()) - 1) < 1e-5 for p in predictions)


def test_fp16_with_loss_scaling_learns_too(tmp_path):
    """The fall-back for GPUs without bf16: fp16 autocast, with the loss scaled so that small gradients do
    not underflow; the scaler's state is saved for resuming."""
    checkpoint = tiny_d2l_checkpoint(tmp_path / "tiny")
    cfg = TrainConfig.from_recipe("d2l", model=str(checkpoint), epochs=24, batch_size=32, lr=1e-3,
                                  num_heads=4, log_every=20, precision="fp16", device="cpu")
    train_set, eval_set = synthetic_dataset(3000, seed=1), synthetic_dataset(300, seed=2, name="held-out")
    with pytest.warns(UserWarning, match="fp16 on a CPU is emulated and slow"):
        result = train(cfg, train_set, eval_set, tmp_path / "run", progress=False)
    assert result.best_accuracy > 0.9, [e["eval_accuracy"] for e in result.epochs]  # the model one gets
    scaler = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["scaler"]
    # Saved, and in use: a disabled scaler saves nothing; an enabled one counts its steps since the last change.
    assert scaler["scale"] >= 1 and scaler["_growth_tracker"] >= 1
