"""The network's two hot operations, each on the fastest exact kernel for where it runs.

``linear``: in float32 on a CPU, PyTorch multiplies matrices with MKL; oneDNN's linear is faster (on a
2-core AVX-512 AMD EPYC, 450 against 200 GFLOP/s for MiniLM-sized products of 900 tokens). So float32 CPU
products, forward and backward, go through oneDNN. Everywhere else (GPUs, bf16 autocast, which already
runs on oneDNN, `torch.compile`, and tracing for export) it is `F.linear`.

``attention``: `F.scaled_dot_product_attention`, except for bf16 on CPUs, where two bf16 products around an
fp32 softmax are faster for short sequences.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


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


def _use_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (_ONEDNN and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing() and not torch.jit.is_scripting())


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear`, on oneDNN for float32 on CPUs."""
    if _use_onednn(x, weight):
        return _OneDNNLinear.apply(x.contiguous(), weight, bias)
    return F.linear(x, weight, bias)


class Linear(torch.nn.Linear):
    """`nn.Linear` (same parameters and state-dict keys) computed by `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, dropout: float
              ) -> torch.Tensor:
    """Scaled dot-product attention; ``mask`` is boolean, True where a query may attend to a key.

    `F.scaled_dot_product_attention`, except for bf16 on CPUs: there its kernels are slow for short
    sequences, and two bf16 products around an fp32 softmax run faster (for SNLI-length pairs at batch 32,
    attention about 3 times faster, prediction about 9%)."""
    if q.device.type != "cpu" or q.dtype != torch.bfloat16:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(-1)
    if dropout:
        weights = F.dropout(weights, dropout)
    return torch.matmul(weights.to(v.dtype), v)
