"""Where and how the network runs: device choice, precision, and moving packed pairs onto the device."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch

from bertnli.errors import BertnliWarning, ConfigError
from bertnli.text.packing import PackedRows
from bertnli.text.pairs import EncodedPairs


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` → the CUDA GPU when there is one, else the CPU. Other kinds of device are not supported."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unknown or unsupported device {name!r}; choose auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not visible or (device.index or 0) >= visible:
            raise ConfigError(f"device {name!r} was asked for, but {visible} CUDA GPU(s) are visible")
    return device


def device_name(device: torch.device) -> str:
    """What runs the work, in words: ``NVIDIA H200`` or ``x86_64 CPU, 2 threads``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"{platform.processor() or platform.machine()} CPU, {threads} thread{'s' if threads != 1 else ''}"


#: ``--precision`` → autocast dtype (None: plain float32).
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype to use, or None for plain float32. ``auto`` → bf16 on GPUs with bf16 units, fp16
    on older GPUs (training then scales the loss: see `bertnli.training`), fp32 on CPUs."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        # Without bf16 units (before Ampere) bf16 is emulated and slow, while fp16 runs on tensor cores.
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose auto, {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type == "cpu":
        warnings.warn("fp16 on a CPU is emulated and slow; bf16 (on CPUs with bf16 units) or fp32 run faster",
                      BertnliWarning, stacklevel=2)
    return PRECISIONS[precision]


def precision_name(dtype: torch.dtype | None) -> str:
    """The ``--precision`` name of an autocast dtype (None: fp32)."""
    return next(name for name, value in PRECISIONS.items() if value == dtype)


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class DeviceBatch:
    """One batch on the device. ``valid_lens`` is None when no row is padded (no mask needed); packed
    batches carry ``attn_mask``, ``positions`` and ``cls_index`` instead (see `bertnli.text.packing`).
    Copies to a GPU go through pinned memory and do not block the host."""

    token_ids: torch.Tensor
    segments: torch.Tensor
    valid_lens: torch.Tensor | None
    labels: torch.Tensor | None = None
    attn_mask: torch.Tensor | None = None
    positions: torch.Tensor | None = None
    cls_index: torch.Tensor | None = None

    def model_inputs(self) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None],
                                    dict[str, torch.Tensor | None]]:
        """Positional and keyword arguments for `BERTClassifier.forward`."""
        extra = {"attn_mask": self.attn_mask, "positions": self.positions, "cls_index": self.cls_index}
        return (self.token_ids, self.segments, self.valid_lens), extra

    @classmethod
    def from_pairs(cls, pairs: EncodedPairs, device: torch.device, labels: np.ndarray | None = None) -> DeviceBatch:
        move = _mover(device)
        padded = bool((pairs.valid_lens < pairs.token_ids.shape[1]).any())
        return cls(
            token_ids=move(pairs.token_ids),
            segments=move(pairs.segments).int(),
            valid_lens=move(pairs.valid_lens) if padded else None,
            labels=None if labels is None else move(labels),
        )

    @classmethod
    def from_packed(cls, rows: PackedRows, device: torch.device, labels: np.ndarray | None = None,
                    pairs: int | None = None) -> DeviceBatch:
        """``labels`` are those of the packed `EncodedPairs`; the batch's follow ``rows.pair_index``.
        ``pairs`` pads the batch to that many pairs (a fixed shape for compiled code): each extra pair
        reads the first <cls> and has the label -100, which `cross_entropy` ignores and no argmax matches."""
        move = _mover(device)
        cls_index, extra = rows.cls_index, max(0, (pairs or 0) - len(rows.cls_index))
        labels = None if labels is None else labels[rows.pair_index]
        if extra:
            cls_index = np.concatenate([cls_index, np.zeros(extra, dtype=cls_index.dtype)])
            labels = None if labels is None else np.concatenate([labels, np.full(extra, IGNORED_LABEL, labels.dtype)])
        return cls(
            token_ids=move(rows.token_ids),
            segments=move(rows.segments).int(),
            valid_lens=None,
            labels=None if labels is None else move(labels),
            attn_mask=block_diagonal_mask(move(rows.slots)),
            positions=move(rows.positions),
            cls_index=move(cls_index),
        )


#: The label of a pair that only fills a fixed-size batch; `F.cross_entropy`'s default ``ignore_index``.
IGNORED_LABEL = -100


def block_diagonal_mask(slots: torch.Tensor) -> torch.Tensor:
    """(rows, 1, width, width) booleans from packed ``slots``: a token attends to the tokens of its own pair.
    Padding (slot -1) attends to padding, so no query is left with nothing to attend to (which would give
    NaN that a backward pass spreads); no real token ever sees it."""
    return (slots[:, :, None] == slots[:, None, :])[:, None]


def _mover(device: torch.device) -> Callable[[np.ndarray], torch.Tensor]:
    """numpy → device tensor, through pinned memory and without blocking when the device is a GPU."""
    pin = device.type == "cuda"

    def move(array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if pin:
            tensor = tensor.pin_memory()
        return tensor.to(device, non_blocking=pin)

    return move


def compile_network(network: torch.nn.Module, enabled: bool, *, cuda_graphs: bool = False) -> torch.nn.Module:
    """``torch.compile`` the network for a few fixed shapes (the callers feed it packed rows of fixed sizes),
    each compiled once. ``cuda_graphs`` then replays each compiled call as CUDA graphs on a GPU, with no
    per-kernel launch cost on the host. Callers ask for graphs only when no graph output outlives the next
    call: not under DDP (gradient hooks) nor with gradient accumulation (gradients kept across calls)."""
    if not enabled:
        return network
    device = next(network.parameters()).device
    _check_compiler(device)
    on_gpu = device.type == "cuda"
    compiled = torch.compile(network, dynamic=False, mode="reduce-overhead" if cuda_graphs and on_gpu else None)
    return cast(torch.nn.Module, compiled)  # an OptimizedModule, which torch types as a mere callable


def _check_compiler(device: torch.device) -> None:
    """One clear line, instead of a traceback at the first batch, when torch.compile cannot work here:
    a GPU needs Triton and compute capability 7.0 or newer, a CPU a C++ compiler."""
    if device.type == "cuda":
        capability = torch.cuda.get_device_capability(device)
        if capability < (7, 0):
            raise ConfigError(f"--compile needs a GPU of compute capability 7.0 or newer; this one has "
                              f"{capability[0]}.{capability[1]}: run without --compile")
        if importlib.util.find_spec("triton") is None:
            raise ConfigError("--compile needs Triton on GPUs (pip install triton), or run without --compile")
    elif device.type == "cpu" and not any(map(shutil.which, [os.environ.get("CXX", "g++"), "g++", "clang++"])):
        raise ConfigError("--compile needs a C++ compiler on CPUs (g++ or clang++), or run without --compile")
