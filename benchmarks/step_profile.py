"""Where a training step's time goes: host or device, and which operations.

Builds bertnli's training loop on real pairs (SNLI dev, repeated to reach --pairs), trains --warmup steps
(compilation, CUDA graph capture, the allocator's first sizes), then --steps more twice: once timed with one
synchronisation at the end, once under `torch.profiler`. Prints the wall time per step, the host's time per
step (Python and kernel launches: the step returns before the GPU is done, so a host time near the wall time
means the GPU waits on the host), the device's busy time, and the operations that take the most time.

    python benchmarks/step_profile.py --batch-size 32                                     # 2-core CPU
    python benchmarks/step_profile.py --batch-size 1024 --steps 20 --trace $OUT/step.json # GPU
    python benchmarks/step_profile.py --batch-size 1024 --compile                         # GPU, CUDA graphs
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware, real_pairs, synchronizer
from train_throughput import model_folder

from bertnli.runtime import precision_name
from bertnli.training import TrainConfig
from bertnli.training.loop import Trainer


def timed_steps(trainer: Trainer, batches: list, synchronize) -> tuple[float, float]:
    """(wall seconds, host seconds) for one optimizer step on each of ``batches``."""
    synchronize()
    started = time.perf_counter()
    for batch in batches:
        trainer.optimizer_step(batch)
    host = time.perf_counter() - started
    synchronize()
    return time.perf_counter() - started, host


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", help="minilm, bert-base-random, or a Hugging Face folder")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pairs", type=int, help="pairs to draw batches from (default: enough for every step)")
    parser.add_argument("--warmup", type=int, default=5, help="steps before measuring")
    parser.add_argument("--steps", type=int, default=10, help="steps measured, and then profiled")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--compile", action="store_true", help="bertnli's --compile (packed rows, CUDA graphs)")
    parser.add_argument("--pack", action="store_true", help="bertnli's --pack")
    parser.add_argument("--top", type=int, default=15, help="operations listed")
    parser.add_argument("--trace", type=Path, help="also write a Chrome trace (chrome://tracing, Perfetto)")
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "bertnli-bench")
    args = parser.parse_args()

    steps = args.warmup + 2 * args.steps
    data = real_pairs(args.pairs or steps * args.batch_size)
    cfg = TrainConfig.from_recipe("finetune", model=model_folder(args.model, args.scratch),
                                  batch_size=args.batch_size, device=args.device, precision=args.precision,
                                  compile=args.compile or None, pack=args.pack or None, checkpoint_every=0)
    with tempfile.TemporaryDirectory() as run:
        trainer = Trainer(cfg, data, None, run, progress=False)
        trainer.model.train()
        batches = trainer._epoch_batches(0)
        if len(batches) < steps:
            sys.exit(f"{len(batches)} batches in {len(data)} pairs; --steps and --warmup need {steps}")
        on_gpu = trainer.device.type == "cuda"
        synchronize = synchronizer(trainer.device)
        timed_steps(trainer, batches[:args.warmup], synchronize)
        measured = batches[args.warmup:args.warmup + args.steps]
        wall, host = timed_steps(trainer, measured, synchronize)
        activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if on_gpu else [])]
        with profile(activities=activities) as profiler:
            timed_steps(trainer, batches[args.warmup + args.steps:steps], synchronize)

    pairs = sum(len(b) for b in measured)
    events = profiler.key_averages()
    sort_key = "self_device_time_total" if on_gpu else "self_cpu_time_total"
    print(f"\none training step, {args.model}, batch {args.batch_size}, {precision_name(trainer.dtype)}, "
          f"{'compiled' if args.compile else 'packed' if args.pack else 'eager'}, {hardware()}; "
          f"data {data.name}")
    print(f"  wall {1e3 * wall / args.steps:.2f} ms per step ({pairs / wall:,.0f} pairs/s), "
          f"host {1e3 * host / args.steps:.2f} ms per step")
    if on_gpu:
        # Kernels only: an operator's row repeats the device time of the kernels it launched.
        launched = [e for e in events if e.device_type.name == "CUDA" and not getattr(e, "is_user_annotation", 0)]
        busy = sum(e.self_device_time_total for e in launched) / 1e3 / args.steps
        kernels = sum(e.count for e in launched) / args.steps
        print(f"  device busy {busy:.2f} ms per step (profiled), {kernels:,.0f} kernels per step")
    print(events.table(sort_by=sort_key, row_limit=args.top, max_name_column_width=60))
    if args.trace:
        profiler.export_chrome_trace(str(args.trace))
        print(f"trace: {args.trace}")


if __name__ == "__main__":
    main()
