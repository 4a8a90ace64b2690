"""Shared pieces of the benchmarks: real NLI pairs, the peer's model, hardware description, tables."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

import torch

from bertnli.data.example import Dataset, Example

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


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    cpu = platform.processor() or platform.machine()
    return f"{cpu} CPU, {torch.get_num_threads()} threads (torch {torch.__version__})"


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated, or the process's peak resident memory on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_table(title: str, rows: list[dict], ratio_key: str) -> None:
    """Rows with name, pairs/s, tokens/s, peak memory; the last column is the ratio to the first row."""
    print(f"\n{title}")
    print(f"{'':28}{'pairs/s':>12}{'tokens/s':>14}{'peak MiB':>11}{'ratio':>8}")
    base = rows[0][ratio_key]
    for r in rows:
        print(f"{r['name']:28}{r['pairs_per_s']:>12,.0f}{r['tokens_per_s']:>14,.0f}{r['peak_mb']:>11,.0f}"
              f"{r[ratio_key] / base:>7.2f}x")


def run_sides(script: str, sides: list[str], timeout: float) -> list[dict]:
    """Run ``script --side NAME`` for each side in its own process; a failed or slow side is reported, not fatal."""
    rows = []
    for side in sides:
        command = [sys.executable, script, *sys.argv[1:], "--side", side]
        try:
            out = subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"{side}: gave up after {timeout:.0f} s", file=sys.stderr)
            continue
        if out.returncode:
            print(f"{side} failed:\n{out.stderr[-3000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    if not rows:
        sys.exit("no side finished")
    return rows
