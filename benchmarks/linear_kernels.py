"""The float32 CPU product kernel: PyTorch's `F.linear` against bertnli's `linear` (oneDNN), forward + backward.

Shapes are MiniLM's (hidden 384, feed-forward 1536) and BERT-base's (768, 3072) products over a batch of
SNLI-length pairs (32 pairs x 28 tokens = 896 rows). Each timing is the median of --rounds rounds.

    python benchmarks/linear_kernels.py
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from common import hardware, run_times

from bertnli.model.kernels import _use_onednn, linear

SHAPES = {  # name: (rows, in features, out features)
    "MiniLM query/key/value": (896, 384, 1152),
    "MiniLM feed-forward up": (896, 384, 1536),
    "MiniLM feed-forward down": (896, 1536, 384),
    "BERT-base feed-forward up": (896, 768, 3072),
    "BERT-base feed-forward down": (896, 3072, 768),
}


def seconds(step: Callable[[], None], rounds: int, calls: int = 10) -> float:
    """Median over ``rounds`` of the mean time of ``calls`` steps, after one warm-up step."""
    step()
    return statistics.median(run_times(lambda: [step() for _ in range(calls)], rounds)) / calls


def forward_backward(kernel: Callable, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> Callable:
    def step() -> None:
        x.grad = weight.grad = bias.grad = None
        kernel(x, weight, bias).sum().backward()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"float32 products, forward + backward, {hardware()}")
    print(f"{'':30}{'F.linear GFLOP/s':>18}{'bertnli GFLOP/s':>17}{'ratio':>8}")
    for name, (rows, n_in, n_out) in SHAPES.items():
        x = torch.randn(rows, n_in, requires_grad=True)
        weight = torch.randn(n_out, n_in, requires_grad=True)
        bias = torch.randn(n_out, requires_grad=True)
        if not _use_onednn(x, weight):
            raise SystemExit("bertnli's linear is F.linear here (oneDNN is used on AVX-512 CPUs only)")
        flops = 3 * 2 * rows * n_in * n_out  # forward, input gradient, weight gradient
        peer = flops / seconds(forward_backward(F.linear, x, weight, bias), args.rounds) / 1e9
        ours = flops / seconds(forward_backward(linear, x, weight, bias), args.rounds) / 1e9
        print(f"{name:30}{peer:>18,.0f}{ours:>17,.0f}{ours / peer:>7.2f}x")


if __name__ == "__main__":
    main()
