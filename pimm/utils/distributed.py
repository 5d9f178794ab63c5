"""Process-group helpers that also work in a single, unlaunched process.

Launch with ``python -m paddle.distributed.launch --nproc_per_node=N script.py``: on GPU machines
each rank drives one GPU over NCCL, on CPU-only builds the ranks talk over gloo. Paddle picks the
backend from the build and the launcher's environment, so nothing here touches CUDA directly.
"""
from __future__ import annotations

from typing import Tuple

import paddle
import paddle.distributed as dist

__all__ = ["init_distributed", "get_rank", "get_world_size", "is_primary", "barrier",
           "reduce_tensor"]


def get_rank() -> int:
    """This process's rank (0 when not launched)."""
    return dist.get_rank()


def get_world_size() -> int:
    """Number of processes in the job (1 when not launched)."""
    return dist.get_world_size()


def is_primary() -> bool:
    """True on rank 0, the process that logs and writes checkpoints."""
    return get_rank() == 0


def init_distributed() -> Tuple[int, int]:
    """Join the process group when launched with more than one process; a no-op otherwise and
    when already initialised. Returns ``(rank, world_size)``."""
    world_size = get_world_size()
    if world_size > 1 and not dist.is_initialized():
        dist.init_parallel_env()
    return get_rank(), world_size


def _group_active() -> bool:
    return get_world_size() > 1 and dist.is_initialized()


def barrier() -> None:
    """Wait for every rank; returns at once in a single process."""
    if _group_active():
        dist.barrier()


def reduce_tensor(tensor: paddle.Tensor, world_size: int) -> paddle.Tensor:
    """Mean of ``tensor`` over ``world_size`` ranks (a copy; the input is unchanged)."""
    reduced = tensor.clone()
    if world_size <= 1:
        return reduced
    if not _group_active():
        raise RuntimeError(
            f"reduce_tensor(world_size={world_size}) needs the process group: launch with "
            "paddle.distributed.launch and call pimm.utils.init_distributed() first"
        )
    dist.all_reduce(reduced)
    return reduced / world_size
