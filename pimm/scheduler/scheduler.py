"""Learning-rate scheduler base: timm's stateless-by-design schedulers, driving a Paddle optimizer.

The training loop owns the counters and passes them in: ``step(epoch)`` at the end of each epoch
with the index of the *next* epoch (and optionally the eval metric), ``step_update(num_updates)``
after every optimizer update. Schedules with ``t_in_epochs`` react to the first, the others to the
second.

What is scheduled is the optimizer's global learning rate (``optimizer.set_lr``). Parameter
groups keep their ``learning_rate`` multipliers, so ratios between groups hold while the schedule
moves (Paddle's semantics; timm instead rewrote every torch group's absolute ``lr``).
"""
from __future__ import annotations

import abc
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np
import paddle

__all__ = ["Scheduler"]

NoiseRange = Optional[Union[float, int, Sequence[Union[float, int]]]]


class Scheduler(abc.ABC):
    """Linear warmup from ``warmup_lr_init`` to the optimizer's initial rate (``base_lr``, its
    rate when the first scheduler was attached) over ``warmup_t``
    steps, then the subclass's schedule, optionally with multiplicative noise.

    Noise (``noise_range_t``: a start ``t`` or ``[start, end)``): at every active ``t`` the rate
    is multiplied by ``1 + n``, with ``n`` drawn from N(0, ``noise_std``) resampled until
    ``|n| < noise_pct`` (``noise_type='normal'``) or from U(-noise_pct, noise_pct)
    (``'uniform'``). The generator is seeded with ``noise_seed + t``: the same ``t`` gives the
    same rate in every run and after every resume.
    """

    def __init__(
        self,
        optimizer: paddle.optimizer.Optimizer,
        t_in_epochs: bool = True,
        warmup_t: float = 0,
        warmup_lr_init: float = 0.0,
        noise_range_t: NoiseRange = None,
        noise_type: str = "normal",
        noise_pct: float = 0.67,
        noise_std: float = 1.0,
        noise_seed: Optional[int] = 42,
    ) -> None:
        if isinstance(getattr(optimizer, "_learning_rate", None), paddle.optimizer.lr.LRScheduler):
            raise TypeError(
                f"{type(self).__name__} sets the rate with optimizer.set_lr(); create the "
                "optimizer with a float learning_rate, not a paddle.optimizer.lr scheduler"
            )
        if noise_type not in ("normal", "uniform"):
            raise ValueError(f"noise_type must be 'normal' or 'uniform', got {noise_type!r}")
        if noise_range_t is not None and noise_pct <= 0:
            raise ValueError(f"noise_pct must be > 0 when noise is on, got {noise_pct}")
        if warmup_t < 0:
            raise ValueError(f"warmup_t must be >= 0, got {warmup_t}")
        self.optimizer = optimizer
        # Remembered on the optimizer (timm kept `initial_lr` in each group): a scheduler built
        # later, e.g. a replacement after a config change, still starts from the original rate
        # rather than from whatever the previous schedule had set.
        if not hasattr(optimizer, "initial_lr"):
            optimizer.initial_lr = float(optimizer.get_lr())
        self.base_lr = optimizer.initial_lr
        self.t_in_epochs = t_in_epochs
        self.warmup_t = warmup_t
        self.warmup_lr_init = float(warmup_lr_init)
        self.noise_range_t = noise_range_t
        self.noise_type = noise_type
        self.noise_pct = noise_pct
        self.noise_std = noise_std
        self.noise_seed = 42 if noise_seed is None else int(noise_seed)
        self.metric: Optional[float] = None
        self._apply(self.warmup_lr_init if warmup_t else self.base_lr)

    # ---- schedule -------------------------------------------------------------------------
    @abc.abstractmethod
    def _schedule(self, t: float) -> float:
        """The rate at ``t`` once warmup is over."""

    def lr_at(self, t: float) -> float:
        """The rate at ``t`` (warmup and schedule, without noise)."""
        if t < self.warmup_t:
            return self.warmup_lr_init + t * (self.base_lr - self.warmup_lr_init) / self.warmup_t
        return self._schedule(t)

    def _noise_active(self, t: float) -> bool:
        if self.noise_range_t is None:
            return False
        if isinstance(self.noise_range_t, (list, tuple)):
            return self.noise_range_t[0] <= t < self.noise_range_t[1]
        return t >= self.noise_range_t

    def _add_noise(self, lr: float, t: float) -> float:
        if not self._noise_active(t):
            return lr
        rng = np.random.default_rng(self.noise_seed + int(t))
        if self.noise_type == "normal":
            # timm 0.1.20 accepts noise_std but never applies it; it scales the draw here
            while True:
                noise = rng.standard_normal() * self.noise_std
                if abs(noise) < self.noise_pct:
                    break
        else:
            noise = rng.uniform(-self.noise_pct, self.noise_pct)
        return lr * (1.0 + noise)

    def _apply(self, lr: float) -> None:
        self.last_lr = float(lr)
        self.optimizer.set_lr(self.last_lr)

    # ---- stepping -------------------------------------------------------------------------
    def step(self, epoch: int, metric: Optional[float] = None) -> None:
        """End of an epoch: ``epoch`` is the index of the epoch about to start."""
        self.metric = metric
        if self.t_in_epochs:
            self._apply(self._add_noise(self.lr_at(epoch), epoch))

    def step_update(self, num_updates: int, metric: Optional[float] = None) -> None:
        """After an optimizer update: ``num_updates`` counts updates since the run began."""
        self.metric = metric
        if not self.t_in_epochs:
            self._apply(self._add_noise(self.lr_at(num_updates), num_updates))

    # ---- state ----------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """What changes while training (the configuration comes from the constructor)."""
        return {"type": type(self).__name__, "last_lr": self.last_lr, "metric": self.metric}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore the state and put the optimizer back at the rate it had when saved."""
        saved_type = state_dict.get("type")
        if saved_type != type(self).__name__:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: the state was saved by {saved_type}; "
                "use the same SCHED as the run that saved it"
            )
        self.metric = state_dict["metric"]
        self._apply(state_dict["last_lr"])
