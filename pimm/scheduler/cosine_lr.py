"""Cosine annealing with warm restarts (SGDR, arXiv:1608.03983), timm 0.1.20 semantics."""
from __future__ import annotations

import math

import paddle

from .scheduler import NoiseRange, Scheduler

__all__ = ["CosineLRScheduler"]


class CosineLRScheduler(Scheduler):
    """Cycle ``i`` lasts ``t_initial * t_mul**i`` and anneals from ``base_lr * decay_rate**i`` to
    ``lr_min * decay_rate**i`` along half a cosine. After ``cycle_limit`` cycles (0 = no limit) the
    rate stays at ``lr_min``. With ``warmup_prefix`` the cycles start after the warmup; otherwise
    the warmup overlaps the first cycle (timm's default).
    """

    def __init__(
        self,
        optimizer: paddle.optimizer.Optimizer,
        t_initial: float,
        t_mul: float = 1.0,
        lr_min: float = 0.0,
        decay_rate: float = 1.0,
        warmup_t: float = 0,
        warmup_lr_init: float = 0.0,
        warmup_prefix: bool = False,
        cycle_limit: int = 0,
        t_in_epochs: bool = True,
        noise_range_t: NoiseRange = None,
        noise_type: str = "normal",
        noise_pct: float = 0.67,
        noise_std: float = 1.0,
        noise_seed: int = 42,
    ) -> None:
        if t_initial <= 0:
            raise ValueError(f"CosineLRScheduler: t_initial (EPOCHS) must be > 0, got {t_initial}")
        if lr_min < 0:
            raise ValueError(f"CosineLRScheduler: lr_min (MIN_LR) must be >= 0, got {lr_min}")
        if t_mul <= 0:
            raise ValueError(f"CosineLRScheduler: t_mul must be > 0, got {t_mul}")
        self.t_initial = t_initial
        self.t_mul = t_mul
        self.lr_min = lr_min
        self.decay_rate = decay_rate
        self.warmup_prefix = warmup_prefix
        self.cycle_limit = cycle_limit
        super().__init__(
            optimizer, t_in_epochs=t_in_epochs, warmup_t=warmup_t, warmup_lr_init=warmup_lr_init,
            noise_range_t=noise_range_t, noise_type=noise_type, noise_pct=noise_pct,
            noise_std=noise_std, noise_seed=noise_seed,
        )

    def _cycle(self, t: float):
        """(cycle index, cycle length, position inside the cycle)."""
        if self.t_mul == 1:
            i = int(t // self.t_initial)
            return i, self.t_initial, t - i * self.t_initial
        # cycles end at t_initial * (t_mul**n - 1) / (t_mul - 1): invert for the index
        i = math.floor(math.log(1 - t / self.t_initial * (1 - self.t_mul), self.t_mul))
        start = (1 - self.t_mul ** i) / (1 - self.t_mul) * self.t_initial
        return i, self.t_mul ** i * self.t_initial, t - start

    def _schedule(self, t: float) -> float:
        if self.warmup_prefix:
            t = t - self.warmup_t
        i, length, t_cur = self._cycle(t)
        if self.cycle_limit and i >= self.cycle_limit:
            return self.lr_min
        gamma = self.decay_rate ** i
        lr_max, lr_min = self.base_lr * gamma, self.lr_min * gamma
        return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * t_cur / length))

    def get_cycle_length(self, cycles: int = 0) -> int:
        """Length of the first ``cycles`` cycles (default: ``cycle_limit``)."""
        cycles = cycles or self.cycle_limit
        if cycles <= 0:
            raise ValueError("get_cycle_length needs cycles > 0 (or a cycle_limit)")
        if self.t_mul == 1:
            return int(self.t_initial * cycles)
        return int(math.floor(-self.t_initial * (self.t_mul ** cycles - 1) / (1 - self.t_mul)))
