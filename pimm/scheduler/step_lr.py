"""Step decay: the rate is multiplied by ``decay_rate`` every ``decay_t`` (may be fractional)."""
from __future__ import annotations

import paddle

from .scheduler import NoiseRange, Scheduler

__all__ = ["StepLRScheduler"]


class StepLRScheduler(Scheduler):
    """``lr(t) = base_lr * decay_rate ** (t // decay_t)`` after warmup.

    ``t`` is not shifted by the warmup (timm): with ``decay_t=2.4, warmup_t=3`` epoch 3 already
    runs at ``base_lr * decay_rate``. A fractional ``decay_t`` (EfficientNet's 2.4 epochs) simply
    makes the steps fall at ``t = 2.4, 4.8, 7.2, ...``.
    """

    def __init__(
        self,
        optimizer: paddle.optimizer.Optimizer,
        decay_t: float,
        decay_rate: float = 1.0,
        warmup_t: float = 0,
        warmup_lr_init: float = 0.0,
        t_in_epochs: bool = True,
        noise_range_t: NoiseRange = None,
        noise_type: str = "normal",
        noise_pct: float = 0.67,
        noise_std: float = 1.0,
        noise_seed: int = 42,
    ) -> None:
        if decay_t <= 0:
            raise ValueError(f"StepLRScheduler: decay_t (DECAY_EPOCHS) must be > 0, got {decay_t}")
        self.decay_t = decay_t
        self.decay_rate = decay_rate
        super().__init__(
            optimizer, t_in_epochs=t_in_epochs, warmup_t=warmup_t, warmup_lr_init=warmup_lr_init,
            noise_range_t=noise_range_t, noise_type=noise_type, noise_pct=noise_pct,
            noise_std=noise_std, noise_seed=noise_seed,
        )

    def _schedule(self, t: float) -> float:
        return self.base_lr * self.decay_rate ** (t // self.decay_t)
