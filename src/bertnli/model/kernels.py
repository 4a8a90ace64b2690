"""The network's hot operations, each on the fastest kernel for where it runs.

``linear``: in float32 on a CPU, PyTorch multiplies matrices with MKL; oneDNN's linear is faster (on a
2-core AVX-512 AMD EPYC, 370–410 against 180–195 GFLOP/s forward and backward for MiniLM-sized
products of 896 tokens: `benchmarks/linear_kernels.py`). So float32
products on AVX-512 CPUs, forward and backward, go through oneDNN. Everywhere else (other CPUs, GPUs,
bf16 autocast, which already runs on oneDNN, `torch.compile`, and tracing for export) it is `F.linear`.

``dropout``: on a CPU, PyTorch draws dropout masks from its one-threaded Mersenne Twister, about 1.6 ms for
a batch of 900 MiniLM token vectors, 16% of a bf16 training step. Masks drawn from numpy's SFC64 generator,
seeded from PyTorch's generator at each call (so `torch.manual_seed` and saved RNG states still decide
them), take 0.7 ms. Elsewhere, and under `torch.compile`, it is `F.dropout`.

``attention``: `F.scaled_dot_product_attention`, except on CPUs in bf16 (two bf16 products around an fp32
softmax are faster for short sequences) or with dropout (which then takes the faster mask). On GPUs, outside
`torch.compile`, it may use any kernel but cuDNN's: cuDNN builds a plan for each new shape (70 to 80 ms
for a backward pass on an H200), and length-bucketed batches bring a hundred shapes or so.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

# AVX-512 CPUs only: held to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2), oneDNN is no faster
# than MKL on the same EPYC (0.75x to 1.06x), and ARM CPUs keep PyTorch's own BLAS.
_ONEDNN = (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
           and torch.backends.cpu.get_cpu_capability() == "AVX512")


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ weight.T + bias on oneDNN (strided operands allowed)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn_linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        flat_grad = grad.reshape(-1, grad.shape[-1])
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn_linear(grad, weight.t(), None)  # grad @ weight
        if ctx.needs_input_grad[1]:
            grad_weight = _onednn_linear(flat_grad.t(), x.reshape(-1, x.shape[-1]).t(), None)  # grad.T @ x
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = flat_grad.sum(0)
        return grad_x, grad_weight, grad_bias


def _tracing() -> bool:
    return torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting()


def _use_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (_ONEDNN and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and not _tracing())


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear`, on oneDNN for float32 on CPUs."""
    if _use_onednn(x, weight):
        return _OneDNNLinear.apply(x.contiguous(), weight, bias)
    return F.linear(x, weight, bias)


class Linear(torch.nn.Linear):
    """`nn.Linear` (same parameters and state-dict keys) computed by `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def _keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    """Boolean mask of ``shape``, each element True with probability 1 - ``p`` (in steps of 2**-32)."""
    count = math.prod(shape)
    seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
    bits = np.random.SFC64(seed).random_raw((count + 1) // 2).view(np.uint32)[:count]
    return torch.from_numpy(bits >= round(p * 2**32)).view(shape)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """`F.dropout`, with a faster mask on CPUs."""
    if not training or p == 0:
        return x
    if x.device.type != "cpu" or p >= 1 or x.numel() < 4096 or _tracing():  # small: seeding would cost more
        return F.dropout(x, p, training)
    return x * _keep_mask(x.shape, p) * (1 / (1 - p))


class Dropout(torch.nn.Dropout):
    """`nn.Dropout` computed by `dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def attention_bias(keep: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The boolean mask ``keep`` (True where a query may attend to a key) as what `attention` adds to its
    scores: 0 or -inf, in the dtype the products run in (``like``'s, or autocast's). The encoder builds it
    once for all its blocks: given a boolean mask, SDPA would convert it in every block. On GPUs each row
    of keys is stored at a multiple of 8 elements, which the memory-efficient kernel takes as it is rather
    than copying it in every block."""
    device = keep.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else like.dtype
    length = keep.shape[-1]
    stored = length if device == "cpu" or _tracing() else -(-length // 8) * 8
    bias = torch.zeros((*keep.shape[:-1], stored), dtype=dtype, device=keep.device)[..., :length]
    return bias.masked_fill_(~keep, float("-inf"))


def _shape_free_backends() -> list[SDPBackend]:
    """The SDPA kernels enabled (`torch.backends.cuda`, `sdpa_kernel`) less cuDNN's, for batches of varying
    shapes: cuDNN's per-shape plans cost more than they win. On an H200 (bf16, MiniLM, batch 1024, SNLI pairs)
    a first epoch of 200,000 pairs took 12.1 s with cuDNN and 5.0 s without; the second, with every shape met
    once already, 4.3 s and 4.6 s."""
    enabled = {SDPBackend.FLASH_ATTENTION: torch.backends.cuda.flash_sdp_enabled(),
               SDPBackend.EFFICIENT_ATTENTION: torch.backends.cuda.mem_efficient_sdp_enabled(),
               SDPBackend.MATH: torch.backends.cuda.math_sdp_enabled()}
    return [backend for backend, on in enabled.items() if on]


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, dropout_p: float
              ) -> torch.Tensor:
    """Scaled dot-product attention; ``bias`` (see `attention_bias`) is added to the scores.

    `F.scaled_dot_product_attention`, except on CPUs in bf16 or with dropout. In bf16 its kernels are slow
    for short sequences, and two bf16 products around an fp32 softmax run faster (for SNLI-length pairs at
    batch 32, attention about 3 times faster, prediction about 9%). With dropout it draws its mask from
    PyTorch's generator: 7.9 ms against 6.1 ms here for attention forward and backward in fp32 (32 pairs of
    28 tokens, 12 heads)."""
    if q.device.type == "cuda" and not _tracing() and (backends := _shape_free_backends()):
        with sdpa_kernel(backends):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)
    if q.device.type != "cpu" or (q.dtype != torch.bfloat16 and not dropout_p):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-1, -2)).float()
    if bias is not None:
        scores = scores + bias
    weights = scores.softmax(-1)
    return torch.matmul(dropout(weights, dropout_p, True).to(v.dtype), v)
