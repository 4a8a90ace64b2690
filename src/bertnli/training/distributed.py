"""Data parallelism on PyTorch's DDP: where each process runs, how ranks agree to stop, and the end of the
process group that torchrun starts."""

from __future__ import annotations

import contextlib
import gc
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from bertnli.errors import ProcessLost
from bertnli.runtime import pick_device


def place_process(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device). Under torchrun this starts the process group, and each rank on a
    GPU machine takes the GPU of its local rank."""
    device = pick_device(device_name)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return rank, world, device


class StopVote:
    """Data-parallel ranks agree to stop at the same step. Each step's requests (Ctrl-C, SIGTERM) are combined
    across ranks on the CPU, through gloo, while the next step trains, and read one step later: no step
    waits on the vote, and a stop comes within two steps, well inside torchrun's grace before it kills."""

    def __init__(self) -> None:
        self.group = dist.new_group(backend="gloo")
        self.pending: tuple[Any, torch.Tensor] | None = None

    def cast(self, requested: bool) -> bool:
        """This step's vote; returns whether any rank asked to stop by the previous vote."""
        agreed = self.settle()
        flag = torch.tensor([float(requested)])
        self.pending = dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.group, async_op=True), flag
        return agreed

    def settle(self) -> bool:
        """Waits for the outstanding vote: whether any rank asked to stop."""
        if self.pending is None:
            return False
        work, flag = self.pending
        self.pending = None
        work.wait()
        return bool(flag.item())


@contextlib.contextmanager
def process_group_scope() -> Iterator[None]:
    """Ends the process group that a run under torchrun starts, before the interpreter shuts down: left to
    interpreter exit, Gloo's worker threads can abort the process (SIGABRT) after training succeeded.
    The objects that hold the group (the DDP wrapper and its reducer) are collected first, so that destroying
    it really frees it rather than leaving the last reference to interpreter exit."""
    started_before = dist.is_available() and dist.is_initialized()
    try:
        yield
    finally:
        if not started_before and dist.is_available() and dist.is_initialized():
            gc.collect()
            dist.destroy_process_group()


@contextlib.contextmanager
def lost_process_as_error(run_dir: Path, checkpoint: Path, command_line: bool) -> Iterator[None]:
    """A collective that fails because another process of the run is gone (crashed, killed) raises `ProcessLost`:
    one line that says so and how to resume, where gloo or NCCL would leave their own traceback."""
    try:
        yield
    except RuntimeError as exc:
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 and _lost_peer(exc)):
            raise
        raise ProcessLost(run_dir, _reason(exc), dist.get_world_size(), command_line, checkpoint.exists()) from exc


#: What gloo and NCCL say when a peer's end of the group is gone (not a timeout, which a slow peer also meets).
PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "remote process exited")


def _lost_peer(exc: RuntimeError) -> bool:
    """A collective that failed because a peer's connection is gone, as gloo (in plain RuntimeErrors) and NCCL
    (in torch.distributed's own errors) say it."""
    return any(sign in str(exc) for sign in PEER_GONE)


def _reason(exc: RuntimeError) -> str:
    """The first sentence of a backend's message, without the source file it names: "Connection closed by peer"."""
    text = str(exc).strip() or type(exc).__name__
    return re.sub(r"^\[[^\]]*\]\s*", "", text.splitlines()[0]).split(". ")[0].rstrip(".")
