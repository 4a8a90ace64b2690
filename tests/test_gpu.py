"""Checks that need a CUDA GPU; skipped elsewhere."""

from __future__ import annotations

import pytest
import torch
from synthetic import synthetic_dataset, tiny_d2l_checkpoint

from bertnli.training import TrainConfig, Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_a_training_step_never_waits_for_the_gpu(compiled, tmp_path):
    """The host queues step after step while the GPU works: one wait per step (a value copied from the host
    without pinning, a number read back) leaves the GPU idle while the host packs the next batch."""
    model = tiny_d2l_checkpoint(tmp_path / "bert")
    cfg = TrainConfig.from_recipe("d2l", model=str(model), num_heads=4, batch_size=16, device="cuda",
                                  compile=compiled or None, checkpoint_every=0)
    trainer = Trainer(cfg, synthetic_dataset(256, 1), None, tmp_path / "run", progress=False)
    trainer.model.train()
    batches = trainer._epoch_batches(0)
    for batch in batches[:4]:  # compilation, CUDA graph capture, the allocator's first sizes
        trainer.optimizer_step(batch)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for batch in batches[4:8]:
            trainer.optimizer_step(batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
