"""The optimizers and learning-rate schedules of the two recipes."""

from __future__ import annotations

import torch

from bertnli.training.config import TrainConfig


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam (d2l, L2 penalty) or AdamW (fine-tuning, decoupled decay); no decay on biases and LayerNorm
    weights."""
    decay = [p for p in model.parameters() if p.ndim >= 2]  # biases and LayerNorm weights are vectors
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # The fused kernels (CUDA, and CPU since torch 2.4) update all parameters in one vectorised pass.
    if cfg.optimizer == "adam":  # one group without decay, as in runs checkpointed before decay was applied
        return torch.optim.Adam(groups if cfg.weight_decay else model.parameters(), lr=cfg.lr, fused=True)
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)


def build_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int
                   ) -> torch.optim.lr_scheduler.LambdaLR:
    """Constant, or linear warm-up over ``warmup_ratio`` of the steps then linear decay to zero."""
    warmup = int(cfg.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if cfg.schedule == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
