"""What the engines that train a weight-sharing supernet share -- Cream's search
(``lib.engine.search``) and SPOS's supernet training (``lib.engine.spos_train``) -- and what the
evolution (``lib.engine.evolve``) uses to score a path.

* A step trains the sampled path only (:func:`update_path`): gradients are cleared to *None*
  (``clear_grad(set_to_zero=False)``) and Paddle's optimizers skip parameters without a gradient,
  so blocks off the path keep their weights and momentum and get no weight decay, as the Cream and
  SPOS papers describe. Several processes average the path's gradients with one all-reduce
  (:func:`average_gradients`) instead of wrapping the supernet in ``paddle.DataParallel``, whose
  hooks assume every step uses the same parameters and would hand unsampled blocks zero gradients.
  All ranks draw the same path (same sampler seed).
* The learning rate decays linearly to 0 over the run's updates (SPOS's schedule), after a linear
  warm-up over ``SUPERNET.WARMUP_STEPS`` updates (none by default, as in both references).
* A path is judged with batch-norm statistics of its own (:func:`recalibrated_batch_norm`).
* :class:`SupernetTraining` holds one run's loaders, optimizer, schedule, EMA, mixed precision
  (``AMP`` O1; the loss scaler's state in its checkpoints), checkpoints, resume and the validation
  of fixed random paths; :func:`run_supernet_training` is its epoch loop.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import paddle
import paddle.distributed as dist
from paddle import nn

from lib.engine.common import (LoaderPolicy, RunContext, RunError, amp_extra_state, broadcast_buffers,
                               build_loaders, check_replicas, create_amp, create_checkpoint_saver,
                               from_config, resume_amp, resume_training, seed_epoch, skipped_images)
from lib.engine.evaluate import evaluate
from lib.engine.meters import EpochMeters, record_epoch
from lib.models import SupernetPath
from pimm.loss import LabelSmoothingCrossEntropy
from pimm.optim import add_weight_decay, create_optimizer
from pimm.scheduler import LinearDecayLRScheduler
from pimm.utils import ModelEma, reduce_tensor
from pimm.utils.amp import FLOAT32, Amp, parse_amp_level

__all__ = ["EVAL_METRICS", "check_supernet_settings", "search_loader_policy", "create_search_loss",
           "create_search_optimizer", "average_gradients", "update_path", "recalibrated_batch_norm",
           "evaluate_path", "SupernetTraining", "run_supernet_training"]

# validation metrics: means over the SUPERNET.VAL_PATHS random paths
EVAL_METRICS = ("prec1", "prec5", "loss")


def check_supernet_settings(cfg) -> List[str]:
    """The problems of the keys every supernet training reads (an empty list when none)."""
    problems = []
    for key, low in (("VAL_PATHS", 1), ("VAL_BN_BATCHES", 0), ("WARMUP_STEPS", 0)):
        if int(cfg.SUPERNET[key]) < low:
            problems.append(f"SUPERNET.{key} must be >= {low}, got {cfg.SUPERNET[key]}")
    if float(cfg.LR) <= 0:
        problems.append(f"LR must be > 0, got {cfg.LR}")
    if int(cfg.EPOCHS) < 1:
        problems.append(f"EPOCHS must be >= 1, got {cfg.EPOCHS}")
    metrics = [prefix + key for prefix in ("", "ema_")[:1 + bool(cfg.NET.EMA.USE)] for key in EVAL_METRICS]
    if str(cfg.EVAL_METRICS) not in metrics:
        problems.append(f"EVAL_METRICS must be one of {metrics} for supernet training (the mean over the "
                        f"validated paths), got {cfg.EVAL_METRICS!r}")
    if cfg.BATCHNORM.SYNC_BN:
        problems.append("BATCHNORM.SYNC_BN is not supported by supernet training: the paths run on pimm's "
                        "BatchNorm2d (the meta-matching step needs its second-order mode). Set it to False")
    if parse_amp_level(cfg.AMP) == "O2":
        problems.append("AMP O2 is not supported by supernet training: the supernet's weights stay float32 "
                        "(Cream's meta-matching update differentiates through them twice). Use AMP O1")
    return problems


def search_loader_policy(cfg) -> LoaderPolicy:
    """Supernet training's loaders, as the reference's: no RandAugment on training images, and
    the evaluation resize with ``DATASET.INTERPOLATION``."""
    return LoaderPolicy(auto_augment=None, eval_interpolation=str(cfg.DATASET.INTERPOLATION),
                        eval_interpolation_key="DATASET.INTERPOLATION")


def create_search_loss(cfg) -> nn.Layer:
    """Label-smoothing cross-entropy with ``AUGMENTATION.SMOOTHING``, pimm's: Cream's meta step
    differentiates it twice (Paddle's has no double-grad kernel)."""
    return LabelSmoothingCrossEntropy(float(cfg.AUGMENTATION.SMOOTHING))


def create_search_optimizer(cfg, supernet: nn.Layer) -> paddle.optimizer.Optimizer:
    """``OPT`` over the supernet: weights with WEIGHT_DECAY, biases and 1-D parameters without
    (the Cream reference's groups, and SPOS's "weight decay on weights only"). A supernet with
    ``meta_parameters()`` (Cream's meta-matching layer) adds their two groups at META_LR: Paddle's
    group rates multiply the global rate, so they carry META_LR / LR and follow the schedule like
    the reference's did; the reference gives the meta layer no weight decay, nor does this."""
    meta_ids = {id(p) for p in getattr(supernet, "meta_parameters", list)()}
    named = [(n, p) for n, p in supernet.named_parameters() if not p.stop_gradient]
    groups = add_weight_decay([(n, p) for n, p in named if id(p) not in meta_ids], float(cfg.WEIGHT_DECAY))
    if meta_ids:
        groups += add_weight_decay([(n, p) for n, p in named if id(p) in meta_ids], 0.0,
                                   learning_rate=float(cfg.META_LR) / float(cfg.LR))
    return from_config(create_optimizer, cfg, groups)


def average_gradients(params: List[paddle.Tensor], world_size: int) -> None:
    """Average the gradients of ``params`` over the ranks with one all-reduce. Every rank must
    pass the same parameters in the same order with the same ones holding a gradient (all ranks
    train the same path)."""
    if world_size <= 1:
        return
    holders = [p for p in params if p.grad is not None]
    if not holders:
        return
    flat = paddle.concat([p.grad.reshape([-1]) for p in holders])
    dist.all_reduce(flat)
    flat = flat / world_size
    offset = 0
    for p in holders:
        size = int(np.prod(p.shape))
        p.grad = flat[offset:offset + size].reshape(p.shape)
        offset += size


def update_path(supernet: nn.Layer, optimizer: paddle.optimizer.Optimizer, loss: paddle.Tensor, arch: Any,
                world_size: int = 1, ema: Optional[ModelEma] = None, amp: Amp = FLOAT32) -> None:
    """Backward of ``loss`` and an optimizer step on ``arch``'s parameters only (gradients cleared
    to None before and after, averaged over the ranks), then the EMA update. With ``amp``'s loss
    scaler the loss is scaled and the step unscales (and skips a step whose gradients overflowed)."""
    optimizer.clear_grad(set_to_zero=False)
    amp.backward(loss)
    # scaled gradients average like unscaled ones, and an overflow on any rank reaches all
    average_gradients(supernet.path_parameters(arch), world_size)
    amp.step(optimizer)
    optimizer.clear_grad(set_to_zero=False)
    if ema is not None:
        ema.update(supernet)


@contextmanager
def recalibrated_batch_norm(supernet: nn.Layer, arch: Any, batches: Iterable[Any],
                            reduce: Optional[Callable[[paddle.Tensor], paddle.Tensor]] = None
                            ) -> Iterator[None]:
    """Inside the block, every batch norm that ``supernet(images, arch)`` runs holds statistics of
    that path alone: the mean of its batch statistics over ``batches`` (training images, arrays or
    tensors; averaged over the ranks with ``reduce`` when distributed). Everything is restored on
    exit; the caller's train/eval mode is kept.

    The running statistics a supernet accumulates while training mix every path that went through
    a layer (the stem's and the head's batch norms serve them all), so a path evaluated with them
    is judged with the wrong normalisation; SPOS recalibrates them per path (the Cream reference
    did not). The norms are found by running the path (forward pre-hooks), so this works for any
    supernet whose forward takes ``(images, arch)``.

    Estimator: the plain mean over the batches (a norm's momentum is ``i / (i + 1)`` at its i-th
    batch). The official SPOS search resets the statistics to 0 / 1 and runs 200 batches at the
    default momentum 0.1, an exponential average that weighs the last ten or so batches most and
    keeps ``0.9 ** n`` of the reset values (nothing at 200 batches, much at the few batches a small
    run affords); the mean weighs every batch alike -- the lowest variance for a given number of
    batches -- and depends on no reset value. (The official retraining's final batch-norm pass
    uses this mean too: momentum ``1 / iters``.) No ``batches`` keeps the running statistics.
    """
    touched: Dict[int, Tuple[nn.Layer, np.ndarray, np.ndarray, float]] = {}
    calls: Dict[int, int] = {}

    def restart_statistics(layer: nn.Layer, inputs: Any) -> None:
        key = id(layer)
        if key not in touched:
            touched[key] = (layer, layer._mean.numpy(), layer._variance.numpy(), layer._momentum)
            calls[key] = 0
            # momentum 0 on the first batch replaces the old statistics; zeros keep a NaN out
            layer._mean.set_value(paddle.zeros_like(layer._mean))
            layer._variance.set_value(paddle.zeros_like(layer._variance))
        layer._momentum = calls[key] / (calls[key] + 1.0)
        calls[key] += 1

    was_training = supernet.training
    hooks = [m.register_forward_pre_hook(restart_statistics)
             for m in supernet.sublayers(include_self=True) if isinstance(m, nn.BatchNorm2D)]
    try:
        with paddle.no_grad():
            supernet.train()
            for images in batches:
                supernet(images if isinstance(images, paddle.Tensor) else paddle.to_tensor(images), arch)
            for hook in hooks:
                hook.remove()
            if reduce is not None:
                for layer, *_ in touched.values():  # the same norms in the same order on every rank
                    layer._mean.set_value(reduce(layer._mean))
                    layer._variance.set_value(reduce(layer._variance))
        supernet.train(was_training)
        yield
    finally:
        for hook in hooks:
            hook.remove()
        for layer, mean, variance, momentum in touched.values():
            layer._mean.set_value(mean)
            layer._variance.set_value(variance)
            layer._momentum = momentum
        supernet.train(was_training)


def evaluate_path(supernet: nn.Layer, arch: Any, loader: Any, ctx: RunContext, bn_batches: Iterable[Any],
                  log_name: str, verbose: bool = True) -> Dict[str, float]:
    """Loss, Prec@1 and Prec@5 of ``arch``'s path over ``loader`` (``lib.engine.evaluate``), with
    its batch norms recalibrated on ``bn_batches`` (averaged over the ranks when distributed)."""
    reduce = (lambda t: reduce_tensor(t, ctx.world_size)) if ctx.distributed else None
    with recalibrated_batch_norm(supernet, arch, bn_batches, reduce):
        return evaluate(SupernetPath(supernet, arch), loader, ctx, log_name=log_name, verbose=verbose)


class SupernetTraining:
    """One supernet-training run: loaders (``search_loader_policy``), optimizer
    (``create_search_optimizer``), the linear schedule over ``EPOCHS``, EMA (``NET.EMA.USE``), the
    checkpoint saver, resume, and validation of ``val_paths`` (the same random paths every epoch,
    so the curve follows the same networks). Subclasses sample and train paths (``train_epoch``)
    and describe a path (``describe_path``); they keep the epoch's last ``SUPERNET.VAL_BN_BATCHES``
    training batches for validation with :meth:`keep_for_validation`.
    """

    #: the model name in checkpoints, and what a checkpoint that does not fit holds
    checkpoint_arch = "supernet"
    same_run_hint = ""

    def __init__(self, ctx: RunContext, supernet: nn.Layer, val_paths: Sequence[Any]) -> None:
        cfg = ctx.cfg
        self.ctx, self.cfg = ctx, cfg
        self.supernet = supernet
        if ctx.distributed:
            for value in supernet.state_dict().values():
                dist.broadcast(value, src=0)
        self.train_loader, self.eval_loader = build_loaders(cfg, ctx, int(cfg.DATASET.IMAGE_SIZE),
                                                            policy=search_loader_policy(cfg))
        if len(self.train_loader) == 0:
            raise RunError(f"DATA_DIR/train has fewer images per process than DATASET.BATCH_SIZE "
                           f"({cfg.DATASET.BATCH_SIZE}): lower the batch size")
        self.optimizer = create_search_optimizer(cfg, supernet)
        self.scheduler = LinearDecayLRScheduler(self.optimizer, int(cfg.EPOCHS) * len(self.train_loader),
                                                warmup_t=int(cfg.SUPERNET.WARMUP_STEPS))
        self.ema = ModelEma(supernet, decay=float(cfg.NET.EMA.DECAY)) if cfg.NET.EMA.USE else None
        self.loss_fn = create_search_loss(cfg)
        self.amp = create_amp(cfg, ctx.device)  # O1 at most (check_supernet_settings)
        if self.amp.enabled:
            ctx.logger.info("mixed precision: %s", self.amp)
        self.val_paths = list(val_paths)
        self.val_bn_batches = int(cfg.SUPERNET.VAL_BN_BATCHES)
        self.bn_batches: List[np.ndarray] = []  # the epoch's last training batches, for validation
        # the last validation of the supernet's own weights: (path, its results) per validated path
        self.validated: List[Tuple[Any, Dict[str, float]]] = []
        self.saver = None
        if ctx.is_primary:
            self.saver = create_checkpoint_saver(ctx, supernet, self.optimizer, model_ema=self.ema,
                                                 scheduler=self.scheduler, arch=self.checkpoint_arch)

    # ---- hooks of the method -----------------------------------------------------------------
    def train_epoch(self, epoch: int, skip_batches: int = 0) -> Dict[str, float]:
        """Train the epoch's paths: forward passes inside ``self.amp.autocast()``, updates with
        :func:`update_path` given ``self.amp``."""
        raise NotImplementedError

    def extra_state(self) -> Dict[str, Any]:
        """The method's state in checkpoints besides weights, optimizer and schedule."""
        return {}

    def load_extra_state(self, extra: Dict[str, Any], path: str) -> None:
        """Restore :meth:`extra_state` from the checkpoint at ``path``."""

    def describe_path(self, arch: Any) -> str:
        return str(arch)

    def validate_more(self, model: nn.Layer, prefix: str, metrics: Dict[str, float]) -> None:
        """Further validation of ``model`` into ``metrics`` (keys start with ``prefix``)."""

    def after_epoch(self, epoch: int) -> None:
        """On the primary rank, after validation and before the checkpoint."""

    def epoch_note(self, eval_metrics: Dict[str, float]) -> str:
        """Appended to the end-of-epoch log line."""
        return ""

    def result(self) -> Dict[str, Any]:
        """The method's entries of the run's result."""
        return {}

    # ---- shared ------------------------------------------------------------------------------
    def checkpoint_state(self) -> Dict[str, Any]:
        """A checkpoint's extra state: :meth:`extra_state` and the loss scaler's."""
        return {**self.extra_state(), **amp_extra_state(self.amp)}

    def mean_over_ranks(self, tensor: paddle.Tensor) -> paddle.Tensor:
        return reduce_tensor(tensor, self.ctx.world_size) if self.ctx.distributed else tensor

    def validation_batches(self, num_batches: int) -> Callable[[int, Any], None]:
        """Start collecting the epoch's last ``SUPERNET.VAL_BN_BATCHES`` training batches (they
        recalibrate batch norm for validation); returns the callback to give every batch,
        ``(batch_idx, (images, targets))``, those a resumed run skips too (``EpochMeters.batches``'
        ``skipped``), so its validation equals the uninterrupted run's."""
        self.bn_batches = []

        def keep(batch_idx: int, batch: Any) -> None:
            if batch_idx >= num_batches - self.val_bn_batches:
                self.bn_batches.append(batch[0].numpy())

        return keep

    def save_recovery_due(self, epoch: int, batch_idx: int, num_batches: int, meters: EpochMeters) -> None:
        """A mid-epoch recovery point every ``RECOVERY_INTERVAL`` batches (not after the last),
        once every rank has checked that the loss stayed finite (nothing diverged is saved)."""
        interval = int(self.cfg.RECOVERY_INTERVAL)
        if interval and batch_idx != num_batches - 1 and (batch_idx + 1) % interval == 0:
            meters.check_finite()
            if self.saver is not None:
                self.saver.save_recovery(epoch, batch_idx, extra_state=self.checkpoint_state())

    def resume(self) -> Tuple[int, int]:
        """Continue from the run folder's checkpoint when AUTO_RESUME finds one; returns
        ``(start epoch, batches of it already trained)``."""
        point = resume_training(self.ctx, self.supernet, self.optimizer, self.scheduler, self.ema,
                                what="supernet", same_run_hint=self.same_run_hint)
        if point.path is None:
            return 0, 0
        self.load_extra_state(point.extra, point.path)
        resume_amp(self.ctx, self.amp, point)
        return point.start_epoch, point.skip_batches

    def evaluate_path(self, model: nn.Layer, arch: Any, log_name: str) -> Dict[str, float]:
        return evaluate_path(model, arch, self.eval_loader, self.ctx, self.bn_batches, log_name)

    def validate(self, epoch: int) -> Dict[str, float]:
        """Mean loss/Prec@1/Prec@5 of the fixed random paths (and the EMA's), plus
        :meth:`validate_more`; written to TensorBoard as ``val/<key>``."""
        broadcast_buffers(self.supernet, self.ctx)
        check_replicas(self.supernet, self.ctx, f"epoch {epoch}")
        models = [("", self.supernet)] + ([("ema_", self.ema.ema)] if self.ema is not None else [])
        metrics: Dict[str, float] = OrderedDict()
        for prefix, model in models:
            results = [self.evaluate_path(model, arch, f"Test {prefix}path {i}")
                       for i, arch in enumerate(self.val_paths)]
            for i, (arch, result) in enumerate(zip(self.val_paths, results)):
                self.ctx.logger.info("Validation %spath %d %s: Prec@1 %.3f", prefix, i, self.describe_path(arch),
                                     result["prec1"])
            if not prefix:
                self.validated = list(zip(self.val_paths, results))
            for key in EVAL_METRICS:
                metrics[prefix + key] = float(np.mean([r[key] for r in results]))
            self.validate_more(model, prefix, metrics)
        if self.ctx.writer is not None:
            for key, value in metrics.items():
                if np.isfinite(value):  # e.g. Cream's best_prec1 is NaN while the board is empty
                    self.ctx.writer.add_scalar(f"val/{key}", value, epoch)
        return metrics


def run_supernet_training(training: SupernetTraining) -> Dict[str, Any]:
    """The epoch loop: per-epoch seeding, training, validation, ``summary.csv`` and the plots
    (``record_epoch``) and checkpoints;
    returns the best eval metric, the last epoch's train and eval metrics, per-epoch timings and
    :meth:`SupernetTraining.result`."""
    ctx, cfg, log = training.ctx, training.cfg, training.ctx.logger
    start_epoch, skip = training.resume()
    num_epochs = int(cfg.EPOCHS)
    eval_metric = str(cfg.EVAL_METRICS)
    best_metric = best_epoch = None
    train_metrics: Dict[str, float] = {}
    eval_metrics: Dict[str, float] = {}
    epoch_times: List[Dict[str, float]] = []
    for epoch in range(start_epoch, num_epochs):
        seed_epoch(ctx, epoch)
        epoch_start = time.time()
        train_metrics = training.train_epoch(epoch, skip_batches=skip if epoch == start_epoch else 0)
        train_metrics["skipped_images"] = skipped_images(training.train_loader, ctx, f"epoch {epoch}")
        train_seconds = time.time() - epoch_start
        eval_metrics = training.validate(epoch)
        val_seconds = time.time() - epoch_start - train_seconds
        epoch_times.append({"epoch": epoch, "train_seconds": train_seconds, "val_seconds": val_seconds})
        log.info("epoch %d: train %.1fs, validation %.1fs; train Prec@1 %.3f, validation Prec@1 %.3f "
                 "(mean of %d paths)%s", epoch, train_seconds, val_seconds, train_metrics["prec1"],
                 eval_metrics.get("prec1", float("nan")), len(training.val_paths),
                 training.epoch_note(eval_metrics))
        if ctx.is_primary:
            training.saver.check_finite(f"epoch {epoch}")  # no board or summary row of NaN weights
            training.after_epoch(epoch)
            record_epoch(ctx, epoch, train_metrics, eval_metrics)
            best_metric, best_epoch = training.saver.save_checkpoint(
                epoch, metric=eval_metrics[eval_metric], extra_state=training.checkpoint_state())
    return dict({"best_metric": best_metric, "best_epoch": best_epoch, "train": dict(train_metrics),
                 "eval": dict(eval_metrics), "epoch_times": epoch_times, "epochs": num_epochs},
                **training.result())
