"""``train`` mode of METHOD spos: SPOS's supernet training (Guo et al., ECCV 2020, "Single Path
One-Shot Neural Architecture Search with Uniform Sampling").

Every step trains one path of the ShuffleNetV2 supernet (``lib.spos``) drawn uniformly -- with
``SPOS.FLOPS_RANGE`` uniformly within a FLOPs window, picking a ``SPOS.FLOPS_BIN`` wide bin first
as the official sampler does -- with label-smoothing cross-entropy (``AUGMENTATION.SMOOTHING``),
``OPT`` with weight decay on weights only, and the learning rate decaying linearly to 0 over
``EPOCHS``. Each epoch ends with validation of ``SUPERNET.VAL_PATHS`` fixed random paths, each
with batch-norm statistics of its own (``SUPERNET.VAL_BN_BATCHES`` training batches), and a
checkpoint holding the path sampler's state, so AUTO_RESUME continues the same run
(``lib.engine.supernet`` does all of this alike for Cream's search). The evolution (mode
``evolve``) then searches the trained supernet.

Differences from the official ``Supernet/train.py`` (megvii-model/SinglePathOneShot), on purpose:

* blocks off the path get no update: their gradients stay None, so the optimizer skips them. The
  official zeroes the gradients and then drops every gradient that sums to 0, which also drops an
  on-path parameter's whose entries happen to cancel;
* the run counts epochs over ``DATA_DIR/train`` (``EPOCHS x len(loader)`` updates); the official
  counts 150,000 iterations of 1024 images, i.e. 120 ImageNet epochs;
* the official validation calls the supernet without a path (it cannot run); here fixed random
  paths are validated with their own batch-norm statistics;
* several processes average each path's gradients over the ranks (same path on every rank); the
  official trains on one machine with ``DataParallel``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, Sequence

from lib.config import ConfigError
from lib.engine.common import RunContext, check_data_splits
from lib.engine.meters import EpochMeters
from lib.engine.retrain import TRAIN_METERS, record_train_batch
from lib.engine.spos import build_spos_supernet, spos_path_sampler, spos_space
from lib.engine.supernet import SupernetTraining, check_supernet_settings, run_supernet_training, update_path
from pimm.utils import count_parameters

__all__ = ["run", "preflight"]


class _SposSupernetTraining(SupernetTraining):
    """SPOS's supernet training: the shared run machinery plus the uniform path sampler."""

    checkpoint_arch = "spos_supernet"
    same_run_hint = " (same classes and SPOS widths)"

    def __init__(self, ctx: RunContext) -> None:
        cfg = ctx.cfg
        self.space = spos_space(cfg)
        self.sampler = spos_path_sampler(cfg, self.space, seed=int(cfg.SEED))
        # drawn once from their own generator (within the window, like the trained paths): the
        # same paths every epoch and after a resume, so the validation curve follows them
        val_sampler = spos_path_sampler(cfg, self.space, seed=int(cfg.SEED) + 1)
        val_paths = [val_sampler.sample() for _ in range(int(cfg.SUPERNET.VAL_PATHS))]
        supernet = build_spos_supernet(cfg)
        ctx.logger.info("SPOS supernet: %d parameters, widths %s; paths %s", count_parameters(supernet),
                        supernet.widths, _window_text(cfg.SPOS.FLOPS_RANGE, cfg.SPOS.FLOPS_BIN))
        super().__init__(ctx, supernet, val_paths)

    def describe_path(self, arch: Sequence[int]) -> str:
        return f"{list(arch)} ({self.space.flops(tuple(arch)):.1f} MFLOPs)"

    def extra_state(self) -> Dict[str, Any]:
        return {"path_sampler": self.sampler.state_dict()}

    def load_extra_state(self, extra: Dict[str, Any], path: str) -> None:
        if "path_sampler" in extra:
            self.sampler.load_state_dict(extra["path_sampler"])
        else:
            self.ctx.logger.warning("%s has no path sampler state (not written by this training): paths "
                                    "are drawn afresh", path)

    def train_epoch(self, epoch: int, skip_batches: int = 0) -> Dict[str, float]:
        ctx = self.ctx
        self.supernet.train()
        self.train_loader.set_epoch(epoch)
        num_batches = len(self.train_loader)
        num_updates = epoch * num_batches + skip_batches
        meters = EpochMeters(ctx, epoch, num_batches, TRAIN_METERS)
        keep_for_validation = self.validation_batches(num_batches)
        for batch_idx, (images, targets) in meters.batches(self.train_loader, skip=skip_batches,
                                                           skipped=keep_for_validation):
            arch = self.sampler.sample()
            lr = self.optimizer.get_lr()
            with self.amp.autocast():
                output = self.supernet(images, arch)
                loss = self.loss_fn(output, targets)
            update_path(self.supernet, self.optimizer, loss, arch, ctx.world_size, self.ema, self.amp)
            num_updates += 1
            self.scheduler.step_update(num_updates)
            record_train_batch(meters, output, targets, loss, lr=lr)
            keep_for_validation(batch_idx, (images, targets))
            if meters.log_due(batch_idx):
                meters.log(batch_idx, lr=self.optimizer.get_lr(), extra=f"Path: {self.describe_path(arch)}")
            self.save_recovery_due(epoch, batch_idx, num_batches, meters)
        return OrderedDict(meters.averages(), sampler_misses=self.sampler.misses)


def _window_text(window: Sequence[float], bin_width: float) -> str:
    if not window:
        return "uniform over the whole space"
    return f"uniform within [{window[0]}, {window[1]}] MFLOPs, bins of {bin_width}"


def preflight(cfg) -> None:
    """The launcher's checks before starting the processes (see ``lib.engine``)."""
    problems = check_supernet_settings(cfg)
    if problems:
        raise ConfigError("; ".join(problems))
    spos_path_sampler(cfg, spos_space(cfg), seed=0)
    check_data_splits(cfg)


def run(ctx: RunContext) -> Dict[str, Any]:
    """Train the SPOS supernet; returns the best eval metric (mean over the validated paths), the
    last epoch's train and eval metrics and per-epoch timings. The weights are the run folder's
    checkpoints (``last.pdparams``): ``tools/main.py evolve`` takes one as ``SPOS.SUPERNET``."""
    preflight(ctx.cfg)
    return run_supernet_training(_SposSupernetTraining(ctx))
