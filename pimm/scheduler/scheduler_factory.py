"""Scheduler factory with timm 0.1.20's option names and epoch accounting."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import paddle

from pimm.utils.options import REQUIRED, read_options

from .cosine_lr import CosineLRScheduler
from .linear_lr import LinearDecayLRScheduler
from .plateau_lr import PlateauLRScheduler
from .scheduler import NoiseRange, Scheduler
from .step_lr import StepLRScheduler

__all__ = ["create_scheduler", "SCHEDULER_NAMES"]

SCHEDULER_NAMES = ("step", "cosine", "plateau", "linear")

# Missing options take the defaults of timm's train.py (which Cream's config repeats).
_OPTIONS = {
    "sched": REQUIRED, "epochs": REQUIRED, "decay_epochs": 30.0, "decay_rate": 0.1,
    "warmup_lr": 1e-4, "warmup_epochs": 3, "min_lr": 1e-5, "cooldown_epochs": 10,
    "patience_epochs": 10, "lr_noise": None, "lr_noise_pct": 0.67, "lr_noise_std": 1.0,
    "seed": 42, "eval_metric": None, "eval_metrics": "top1", "sched_on_updates": False,
}


def _noise_range(lr_noise: Any, num_epochs: int, per_epoch: int = 1) -> NoiseRange:
    # LR_NOISE is given in fractions of the run: 0.5 -> from half the epochs on, [a, b) -> range;
    # in the scheduler's unit of t (per_epoch of them in an epoch)
    if lr_noise is None:
        return None
    if isinstance(lr_noise, (list, tuple)):
        scaled = [n * num_epochs * per_epoch for n in lr_noise]
        return scaled[0] if len(scaled) == 1 else scaled
    return lr_noise * num_epochs * per_epoch


def _updates_per_epoch(name: str, on_updates: bool, updates_per_epoch: Optional[int]) -> int:
    if not on_updates:
        return 1
    if name == "plateau":
        raise ValueError("create_scheduler: SCHED='plateau' reacts to the eval metric once per "
                         "epoch; set SCHED_ON_UPDATES False, or use SCHED 'cosine' or 'step'")
    if not updates_per_epoch or int(updates_per_epoch) < 1:
        raise ValueError("create_scheduler: SCHED_ON_UPDATES steps the schedule after every update "
                         f"and needs updates_per_epoch >= 1, got {updates_per_epoch}")
    return int(updates_per_epoch)


def create_scheduler(
    cfg_or_args: Any,
    optimizer: paddle.optimizer.Optimizer,
    decreasing: Optional[bool] = None,
    updates_per_epoch: Optional[int] = None,
) -> Tuple[Scheduler, int]:
    """Return ``(scheduler, num_epochs)`` for ``sched``/``SCHED`` in :data:`SCHEDULER_NAMES`.

    Reads ``EPOCHS, DECAY_EPOCHS, DECAY_RATE, WARMUP_LR, WARMUP_EPOCHS, MIN_LR, COOLDOWN_EPOCHS,
    PATIENCE_EPOCHS, LR_NOISE, LR_NOISE_PCT, LR_NOISE_STD, SEED`` (or timm's lower-case args).
    ``num_epochs`` is ``EPOCHS`` except for cosine: one cycle plus ``COOLDOWN_EPOCHS`` (timm).
    The plateau scheduler's direction comes from ``decreasing`` (lower metric is better); when it
    is None it is inferred from the eval metric's name (``loss`` in it means decreasing).
    ``linear`` (SPOS's schedule) decays per update to 0 at the end of ``EPOCHS``, with
    ``WARMUP_EPOCHS`` of linear warmup first; it needs ``updates_per_epoch`` (the loader's length).

    ``SCHED_ON_UPDATES`` (cosine and step): the schedule moves after every optimizer update
    rather than once per epoch (the training loop calls ``step_update``); its epoch-valued
    options (``EPOCHS``, ``WARMUP_EPOCHS``, ``DECAY_EPOCHS``, ``LR_NOISE``) are then counted in
    updates, ``updates_per_epoch`` (the training loader's length) each.
    """
    opts = read_options(cfg_or_args, _OPTIONS, "create_scheduler")
    name = str(opts.sched).lower()
    num_epochs = int(opts.epochs)
    # the unit of the scheduler's t: one epoch, or one update with SCHED_ON_UPDATES
    per_epoch = _updates_per_epoch(name, bool(opts.sched_on_updates), updates_per_epoch)
    noise = dict(
        noise_range_t=_noise_range(opts.lr_noise, num_epochs, per_epoch), noise_pct=opts.lr_noise_pct,
        noise_std=opts.lr_noise_std, noise_seed=opts.seed,
    )
    warmup = dict(warmup_lr_init=opts.warmup_lr, warmup_t=opts.warmup_epochs * per_epoch)
    t_in_epochs = not opts.sched_on_updates
    if name == "cosine":
        scheduler = CosineLRScheduler(
            optimizer, t_initial=num_epochs * per_epoch, t_mul=1.0, lr_min=opts.min_lr,
            decay_rate=opts.decay_rate, cycle_limit=1, t_in_epochs=t_in_epochs, **warmup, **noise,
        )
        num_epochs += int(opts.cooldown_epochs)  # after the one cycle (timm)
    elif name == "step":
        scheduler = StepLRScheduler(
            optimizer, decay_t=opts.decay_epochs * per_epoch, decay_rate=opts.decay_rate,
            t_in_epochs=t_in_epochs, **warmup, **noise,
        )
    elif name == "linear":
        if not updates_per_epoch or updates_per_epoch < 1:
            raise ValueError("create_scheduler: SCHED='linear' steps per update and needs "
                             f"updates_per_epoch >= 1, got {updates_per_epoch}")
        scheduler = LinearDecayLRScheduler(
            optimizer, total_updates=num_epochs * int(updates_per_epoch),
            warmup_t=opts.warmup_epochs * int(updates_per_epoch), warmup_lr_init=opts.warmup_lr,
        )
    elif name == "plateau":
        if decreasing is None:
            metric_name = opts.eval_metric if opts.eval_metric is not None else opts.eval_metrics
            decreasing = "loss" in str(metric_name).lower()
        # timm never passed a mode, so accuracy metrics were treated as losses ('min')
        scheduler = PlateauLRScheduler(
            optimizer, decay_rate=opts.decay_rate, patience_t=opts.patience_epochs,
            lr_min=opts.min_lr, cooldown_t=opts.cooldown_epochs,
            mode="min" if decreasing else "max", **warmup,
        )
    else:
        raise ValueError(
            f"create_scheduler: unknown scheduler SCHED={opts.sched!r}; choose one of "
            f"{SCHEDULER_NAMES}"
        )
    return scheduler, num_epochs
