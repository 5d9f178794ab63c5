"""Reduce the rate when the eval metric stops improving (torch's ReduceLROnPlateau rules)."""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

import paddle

from .scheduler import Scheduler

__all__ = ["PlateauLRScheduler"]

# a reduction smaller than this is skipped (torch's default eps)
_MIN_CHANGE = 1e-8


class PlateauLRScheduler(Scheduler):
    """Multiply the rate by ``decay_rate`` once the metric has not improved for more than
    ``patience_t`` epochs, then wait ``cooldown_t`` epochs before counting again; never below
    ``lr_min``. Improvement is relative: by more than ``threshold`` times the best value.

    ``mode='max'`` for metrics where higher is better (accuracy), ``'min'`` for losses. Warmup
    (if any) covers epochs ``0..warmup_t`` inclusive and ignores the metric (timm). Epoch-based
    only (``t_in_epochs``): ``step_update`` leaves the rate alone.
    """

    def __init__(
        self,
        optimizer: paddle.optimizer.Optimizer,
        decay_rate: float = 0.1,
        patience_t: int = 10,
        threshold: float = 1e-4,
        cooldown_t: int = 0,
        warmup_t: float = 0,
        warmup_lr_init: float = 0.0,
        lr_min: float = 0.0,
        mode: str = "max",
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"PlateauLRScheduler: mode must be 'min' or 'max', got {mode!r}")
        if not 0 < decay_rate < 1:
            raise ValueError(f"PlateauLRScheduler: decay_rate must be in (0, 1), got {decay_rate}")
        self.decay_rate = decay_rate
        self.patience_t = patience_t
        self.threshold = threshold
        self.cooldown_t = cooldown_t
        self.lr_min = lr_min
        self.mode = mode
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch: Optional[int] = None
        super().__init__(optimizer, t_in_epochs=True, warmup_t=warmup_t,
                         warmup_lr_init=warmup_lr_init)
        self.plateau_lr = self.base_lr

    def _schedule(self, t: float) -> float:
        return self.plateau_lr  # after warmup the rate is whatever the plateau rule left

    def _is_better(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best * (1.0 - self.threshold)
        return value > self.best * (1.0 + self.threshold)

    def step(self, epoch: int, metric: Optional[float] = None) -> None:
        self.metric = metric
        if self.warmup_t and epoch <= self.warmup_t:
            self._apply(self.lr_at(epoch))
            return
        if metric is None:
            raise ValueError(
                "PlateauLRScheduler.step needs the eval metric after warmup: "
                "step(epoch + 1, eval_metrics[EVAL_METRICS])"
            )
        metric = float(metric)
        self.last_epoch = epoch
        if self._is_better(metric):
            self.best = metric
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience_t:
            reduced = max(self.plateau_lr * self.decay_rate, self.lr_min)
            if self.plateau_lr - reduced > _MIN_CHANGE:
                self.plateau_lr = reduced
            self.cooldown_counter = self.cooldown_t
            self.num_bad_epochs = 0
        self._apply(self.plateau_lr)

    def state_dict(self) -> Dict[str, Any]:
        # timm kept only `best` and `last_epoch`; the counters and the reduced rate are needed
        # too, or a resumed run forgets a reduction and its patience/cooldown progress
        state = super().state_dict()
        state.update(best=self.best, num_bad_epochs=self.num_bad_epochs,
                     cooldown_counter=self.cooldown_counter, last_epoch=self.last_epoch,
                     plateau_lr=self.plateau_lr)
        return state

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.best = state_dict["best"]
        self.num_bad_epochs = state_dict["num_bad_epochs"]
        self.cooldown_counter = state_dict["cooldown_counter"]
        self.last_epoch = state_dict["last_epoch"]
        self.plateau_lr = state_dict["plateau_lr"]
