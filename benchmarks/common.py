"""Shared pieces of the benchmarks: real NLI pairs, the peer's model, hardware description, tables."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bertnli.data.example import NLI_LABELS, Dataset, Example

SHARED_DATA = Path(os.environ.get("BERTNLI_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SOURCES = [SHARED_DATA / "snli" / "snli_1.0_dev.jsonl", SHARED_DATA / "mnli" / "multinli_1.0_dev_matched.jsonl"]


def real_pairs(count: int, sources: list[Path] = SOURCES[:1]) -> Dataset:
    """``count`` labelled pairs from the shared SNLI dev file, repeated in order to reach ``count``."""
    examples = []
    for path in sources:
        if not path.is_file():
            sys.exit(f"benchmark data missing: {path} (the shared data folder sits beside the repository)")
        with path.open(encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                if row["gold_label"] != "-":
                    examples.append(Example(row["sentence1"], row["sentence2"], row["gold_label"]))
    repeated = [examples[i % len(examples)] for i in range(count)]
    return Dataset(f"{'+'.join(p.stem for p in sources)} x{count / len(examples):.2f}", repeated)


def run_times(work: Callable[[], object], runs: int) -> list[float]:
    """Seconds taken by each of ``runs`` calls of ``work``."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return times


def hardware() -> str:
    from bertnli.runtime import device_name, pick_device

    return f"{device_name(pick_device())} (torch {torch.__version__})"


def synchronizer(device: torch.device) -> Callable[[], None]:
    """What waits for ``device`` to finish its queued work (nothing to wait for on a CPU)."""
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated, or the process's peak resident memory on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_table(title: str, rows: list[dict], ratio_key: str) -> None:
    """Rows with name, pairs/s, tokens/s, peak memory; the last column is the ratio to the first row.
    Rows measured more than once show their median and, below the table, every run's figure."""
    print(f"\n{title}")
    print(f"{'':28}{'pairs/s':>12}{'tokens/s':>14}{'peak MiB':>11}{'ratio':>8}")
    base = rows[0][ratio_key]
    for r in rows:
        print(f"{r['name']:28}{r['pairs_per_s']:>12,.0f}{r['tokens_per_s']:>14,.0f}{r['peak_mb']:>11,.0f}"
              f"{r[ratio_key] / base:>7.2f}x")
    for r in rows:
        if len(r.get("runs", [])) > 1:
            print(f"  {r['name']}: median of {len(r['runs'])} runs, pairs/s "
                  + ", ".join(f"{x:,.0f}" for x in r["runs"]))


def run_sides(script: str, sides: list[str], timeout: float, repeat: int = 1) -> list[dict]:
    """Run ``script --side NAME`` for each side in its own process, ``repeat`` rounds with the sides
    interleaved (so a slow spell on a shared machine hits every side alike); each side's row is its
    median round. A failed or slow side is reported, not fatal; each side's figure is printed (to stderr)
    as it comes, so a run cut short still leaves what it measured."""
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for _ in range(repeat):
        for side in sides:
            row = _run_side(script, side, timeout)
            if row is not None:
                runs[side].append(row)
                print(f"{side}: {json.dumps(row)}", file=sys.stderr, flush=True)
    rows = [_median_row(side_runs) for side_runs in runs.values() if side_runs]
    if not rows:
        sys.exit("no side finished")
    return rows


def _run_side(script: str, side: str, timeout: float) -> dict | None:
    command = [sys.executable, script, *sys.argv[1:], "--side", side]
    try:
        out = subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"{side}: gave up after {timeout:.0f} s", file=sys.stderr)
        return None
    if out.returncode:
        print(f"{side} failed:\n{out.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median_row(side_runs: list[dict]) -> dict:
    """The run with the median pairs/s (the lower middle one for an even count), plus every run's pairs/s."""
    ordered = sorted(side_runs, key=lambda r: r["pairs_per_s"])
    return {**ordered[(len(ordered) - 1) // 2], "runs": [r["pairs_per_s"] for r in side_runs]}


#: GLUE's numbering, which `AutoModelForSequenceClassification` heads use: bertnli's default label order.
HF_LABELS = {label: i for i, label in enumerate(NLI_LABELS)}


def hf_rows(tokenizer, examples: list[Example]) -> list[dict]:
    """The pairs as the Trainer takes them: tokenised (truncated to 128), labels as GLUE numbers."""
    encoded = tokenizer([e.premise for e in examples], [e.hypothesis for e in examples], truncation=True,
                        max_length=128)
    return [{"input_ids": i, "token_type_ids": t, "attention_mask": m, "labels": HF_LABELS[e.label]}
            for i, t, m, e in zip(encoded["input_ids"], encoded["token_type_ids"], encoded["attention_mask"],
                                  examples)]


def hf_trainer(folder: str, examples: list[Example], batch_size: int, cpu: bool, precision: str, out: str,
               epochs: int = 1):
    """The peer: `AutoModelForSequenceClassification` + `Trainer` with dynamic padding, set up with the
    usual fine-tuning recipe (AdamW 5e-5, weight decay 0.01, 10% warm-up then linear decay)."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(folder)
    rows = hf_rows(tokenizer, examples)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=len(HF_LABELS))
    arguments = TrainingArguments(
        output_dir=out, per_device_train_batch_size=batch_size, per_device_eval_batch_size=batch_size,
        num_train_epochs=epochs, learning_rate=5e-5, weight_decay=0.01,
        warmup_steps=len(rows) * epochs // batch_size // 10,
        logging_steps=10**9, save_strategy="no", report_to=[], bf16=precision == "bf16", fp16=precision == "fp16",
        use_cpu=cpu,
        disable_tqdm=True, seed=0,
    )
    trainer = Trainer(model=model, args=arguments, train_dataset=rows, processing_class=tokenizer,
                      data_collator=DataCollatorWithPadding(tokenizer))
    return trainer, rows


def add_common_arguments(parser) -> None:
    """The options every side-by-side benchmark takes."""
    import argparse
    import tempfile

    parser.add_argument("--model", default="minilm", help="minilm, bert-base-random, or a Hugging Face folder")
    parser.add_argument("--tokenizer-from", default="minilm", help="tokenizer folder for bert-base-random")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--side-timeout", type=float, default=1800, help="seconds allowed to each side")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of all sides, interleaved; each side reports its median round")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "bertnli-bench")


def device_of(args) -> torch.device:
    """The device that ``--device`` names, as bertnli picks it (``auto``: the GPU when there is one)."""
    from bertnli.runtime import pick_device

    return pick_device(args.device)


def resolved_precision(args) -> str:
    return precision_name(args.device, args.precision)


def precision_name(device: str, precision: str = "auto") -> str:
    """``auto`` as bertnli resolves it: bf16 on GPUs with bf16 units, fp16 on older GPUs, fp32 on CPUs."""
    from bertnli.runtime import autocast_dtype, pick_device, precision_name

    return precision if precision != "auto" else precision_name(autocast_dtype(pick_device(device), "auto"))
