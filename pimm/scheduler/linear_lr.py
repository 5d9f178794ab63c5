"""Linear decay to zero over a run's updates (SPOS's and Cream's supernet schedule)."""
from __future__ import annotations

import paddle

from .scheduler import Scheduler

__all__ = ["LinearDecayLRScheduler"]


class LinearDecayLRScheduler(Scheduler):
    """``lr(t) = base_lr * max(0, 1 - t / total_updates)`` after warmup, stepped after every update
    (``step_update``); ``t`` counts updates from the start of the run, warmup included."""

    def __init__(self, optimizer: paddle.optimizer.Optimizer, total_updates: int, warmup_t: float = 0,
                 warmup_lr_init: float = 0.0) -> None:
        if total_updates < 1:
            raise ValueError(f"total_updates must be >= 1, got {total_updates}")
        self.total_updates = int(total_updates)
        super().__init__(optimizer, t_in_epochs=False, warmup_t=warmup_t, warmup_lr_init=warmup_lr_init)

    def _schedule(self, t: float) -> float:
        return self.base_lr * max(0.0, 1.0 - t / self.total_updates)
