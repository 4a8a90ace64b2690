"""Accuracy and speed of one fine-tuning run, bertnli beside the Hugging Face Trainer.

Both fine-tune the same checkpoint on the same training slice with the same recipe (AdamW, lr 5e-5,
weight decay 0.01, 10% warm-up then linear decay, batch 32, one epoch, max_len 128) and are scored
on the same held-out validation slice. SNLI train is not at hand, so the data is SNLI dev split 90/10
(seeded, stratified) by bertnli's own splitter.

    python benchmarks/finetune_parity.py                      # minilm, SNLI dev, CPU: about 10 minutes
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HF_LABELS, SHARED_DATA, hardware, hf_rows, hf_trainer, precision_name
from train_throughput import model_folder


def slices(seed: int):
    from bertnli.data import read_dataset, train_validation_split

    return train_validation_split(read_dataset(SHARED_DATA / "snli" / "snli_1.0_dev.jsonl"),
                                  validation_fraction=0.1, seed=seed)


def run_bertnli(folder: str, train_set, eval_set, batch_size: int, seed: int) -> dict:
    from bertnli.training import TrainConfig, train

    cfg = TrainConfig.from_recipe("finetune", model=folder, epochs=1, batch_size=batch_size, seed=seed,
                                  checkpoint_every=0)
    with tempfile.TemporaryDirectory() as run:
        record = train(cfg, train_set, eval_set, run, progress=False).epochs[0]
    return {"name": "bertnli", "accuracy": record["eval_accuracy"], "pairs_per_s": record["pairs_per_second"],
            "seconds": record["train_seconds"]}


def run_trainer(folder: str, train_set, eval_set, batch_size: int) -> dict:
    cpu = not torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as out:
        trainer, _ = hf_trainer(folder, train_set.examples, batch_size, cpu, precision_name("auto"), out)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        rows = hf_rows(trainer.processing_class, eval_set.examples)
        predictions = trainer.predict(rows)
    gold = np.array([HF_LABELS[e.label] for e in eval_set.examples])
    accuracy = float((predictions.predictions.argmax(-1) == gold).mean())
    return {"name": "transformers Trainer", "accuracy": accuracy, "pairs_per_s": len(train_set) / seconds,
            "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", help="minilm or a Hugging Face folder")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = model_folder(args.model, Path(tempfile.gettempdir()) / "bertnli-bench")
    train_set, eval_set = slices(args.seed)
    rows = [run_trainer(folder, train_set, eval_set, args.batch_size),
            run_bertnli(folder, train_set, eval_set, args.batch_size, args.seed)]
    print(f"\nfine-tuning {args.model}, 1 epoch, batch {args.batch_size}, lr 5e-5, {hardware()}")
    print(f"train {train_set.name} ({len(train_set):,} pairs), validation {eval_set.name} ({len(eval_set):,} pairs)")
    print(f"{'':24}{'val. accuracy':>15}{'train pairs/s':>15}{'train s':>10}{'speed ratio':>13}")
    for r in rows:
        print(f"{r['name']:24}{r['accuracy']:>15.4f}{r['pairs_per_s']:>15,.1f}{r['seconds']:>10.0f}"
              f"{r['pairs_per_s'] / rows[0]['pairs_per_s']:>12.2f}x")


if __name__ == "__main__":
    main()
