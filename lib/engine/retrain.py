"""``retrain`` mode: train a Cream child network from scratch with the published recipe (timm 0.1.20
semantics: RMSpropTF, step/cosine LR with warmup, label smoothing, dropout, EMA, RandAugment and
random erasing), validating every epoch and checkpointing through ``CheckpointSaver``.

Differences from the reference, on purpose: checkpoints are actually written (the reference never
created its saver); resume restores model, EMA, optimizer, scheduler and epoch, and per-epoch
seeding (``seed_epoch``) replays the random draws, so a run continued at an epoch boundary matches
the uninterrupted run; batch-norm running statistics are broadcast from rank 0 before every
evaluation so all ranks evaluate (and rank 0 saves) the same model; logged train loss/accuracy are
reduced over ranks with sample weights.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Dict, Optional, Tuple

import paddle

from lib.config import ConfigError
from lib.engine.common import (RunContext, broadcast_buffers, build_loaders, check_data_splits,
                               create_checkpoint_saver, resume_training, seed_epoch, unwrap_model,
                               wrap_model)
from lib.engine.child import child_cost, child_loader_policy, create_child_model, resolve_child
from lib.engine.evaluate import EVAL_METRIC_NAMES, evaluate, topk_correct
from lib.engine.meters import EpochMeters, Meter, record_epoch
from pimm.loss import LabelSmoothingCrossEntropy
from pimm.optim import create_optimizer
from pimm.scheduler import create_scheduler
from pimm.utils import CheckpointSaver, ModelEma

__all__ = ["run", "preflight", "create_train_loss", "train_one_epoch", "train_step"]


def train_step(model: paddle.nn.Layer, images: paddle.Tensor, labels: paddle.Tensor, optimizer,
               loss_fn, model_ema: Optional[ModelEma] = None
               ) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """One optimisation step on a batch (forward, loss, backward, update, EMA); returns the
    output and the loss, without a host sync. tools/benchmark.py times exactly this."""
    output = model(images)
    loss = loss_fn(output, labels)
    optimizer.clear_grad()
    loss.backward()
    optimizer.step()
    if model_ema is not None:
        model_ema.update(model)
    return output, loss


def create_train_loss(cfg) -> paddle.nn.Layer:
    """The retrain loss: label-smoothing cross-entropy with ``AUGMENTATION.SMOOTHING`` (plain
    cross-entropy at 0)."""
    smoothing = float(cfg.AUGMENTATION.SMOOTHING)
    return LabelSmoothingCrossEntropy(smoothing) if smoothing > 0 else paddle.nn.CrossEntropyLoss()


#: what the retrain loop logs (lib.engine.meters)
TRAIN_METERS = (Meter("loss", "Loss", precision=6), Meter("prec1", "Prec@1"), Meter("prec5", "Prec@5"))


def train_one_epoch(epoch: int, model: paddle.nn.Layer, loader: Any, optimizer, loss_fn,
                    ctx: RunContext, scheduler=None, model_ema: Optional[ModelEma] = None,
                    saver: Optional[CheckpointSaver] = None,
                    skip_batches: int = 0) -> Dict[str, float]:
    """One pass over ``loader``; returns the epoch's loss and accuracies (averaged over all
    samples of all ranks). Host syncs happen only at log intervals and the last batch."""
    model.train()
    recovery_interval = int(ctx.cfg.RECOVERY_INTERVAL)
    num_batches, last_idx = len(loader), len(loader) - 1
    num_updates = epoch * num_batches + skip_batches
    meters = EpochMeters(ctx, epoch, num_batches, TRAIN_METERS)
    for batch_idx, (images, labels) in meters.batches(loader, skip=skip_batches):
        output, loss = train_step(model, images, labels, optimizer, loss_fn, model_ema)
        num_updates += 1
        if scheduler is not None:
            scheduler.step_update(num_updates)
        batch = images.shape[0]
        with paddle.no_grad():
            top1, top5 = topk_correct(output.detach(), labels)
        meters.update(batch, loss=loss, prec1=top1 * (100.0 / batch), prec5=top5 * (100.0 / batch))
        if meters.log_due(batch_idx):
            meters.log(batch_idx, lr=optimizer.get_lr())
        if saver is not None and recovery_interval and (batch_idx + 1) % recovery_interval == 0 \
                and batch_idx != last_idx:
            saver.save_recovery(epoch, batch_idx)
    return meters.averages()


def preflight(cfg) -> None:
    """The launcher's checks before starting the processes (see ``lib.engine``)."""
    check_data_splits(cfg)
    resolve_child(cfg)


def run(ctx: RunContext) -> Dict[str, Any]:
    """Retrain the configured child network; returns the best eval metric and the last
    epoch's metrics."""
    cfg = ctx.cfg
    spec = resolve_child(cfg)
    eval_metric = str(cfg.EVAL_METRICS)
    if eval_metric not in EVAL_METRIC_NAMES:
        raise ConfigError(f"EVAL_METRICS {eval_metric!r} is not measured; choose one of "
                          f"{', '.join(EVAL_METRIC_NAMES)}")
    train_loader, eval_loader = build_loaders(cfg, ctx, spec.image_size, policy=child_loader_policy(cfg))

    model = create_child_model(cfg, spec)  # same SEED on every rank: identical initial weights
    cost = child_cost(model, spec)
    ctx.logger.info("[Model-%s] %s (%s): %s", spec.selection, spec.arch, spec.source, cost["text"])
    model_ema = ModelEma(model, decay=float(cfg.NET.EMA.DECAY)) if cfg.NET.EMA.USE else None
    model = wrap_model(model, ctx)
    optimizer = create_optimizer(cfg, model)
    scheduler, num_epochs = create_scheduler(cfg, optimizer)
    train_loss = create_train_loss(cfg)

    resume = resume_training(ctx, model, optimizer, scheduler, model_ema, what="network")
    saver = None
    if ctx.is_primary:
        saver = create_checkpoint_saver(ctx, model, optimizer, model_ema=model_ema, scheduler=scheduler)
    ctx.logger.info("scheduled epochs: %d (starting at %d); %d train batches of %d per process, "
                    "%d process(es)", num_epochs, resume.start_epoch, len(train_loader),
                    int(cfg.DATASET.BATCH_SIZE), ctx.world_size)

    eval_metrics: Dict[str, float] = {}
    best_metric, best_epoch = (saver.best_metric, saver.best_epoch) if saver else (None, None)
    for epoch in range(resume.start_epoch, num_epochs):
        seed_epoch(ctx, epoch)
        train_loader.set_epoch(epoch)
        train_metrics = train_one_epoch(
            epoch, model, train_loader, optimizer, train_loss, ctx, scheduler=scheduler,
            model_ema=model_ema, saver=saver,
            skip_batches=resume.skip_batches if epoch == resume.start_epoch else 0)
        train_metrics["lr"] = optimizer.get_lr()

        broadcast_buffers(model, ctx)
        eval_metrics = evaluate(unwrap_model(model), eval_loader, ctx, log_name="Test")
        ranked = eval_metrics
        if model_ema is not None:
            broadcast_buffers(model_ema.ema, ctx)
            # the reference ranks checkpoints (and steps the scheduler) by the EMA weights
            ranked = evaluate(model_ema.ema, eval_loader, ctx, log_name="Test_EMA")
            eval_metrics.update((f"ema_{k}", v) for k, v in ranked.items())
        eval_metrics = OrderedDict((k, v) for k, v in eval_metrics.items()
                                   if not k.endswith(("seconds", "images")))
        scheduler.step(epoch + 1, ranked[eval_metric])
        if ctx.is_primary:
            record_epoch(ctx, epoch, train_metrics, eval_metrics)
            for name in EVAL_METRIC_NAMES:
                ctx.writer.add_scalar(f"eval/{name}", eval_metrics[name], epoch)
                if model_ema is not None:
                    ctx.writer.add_scalar(f"eval_ema/{name}", eval_metrics[f"ema_{name}"], epoch)
            best_metric, best_epoch = saver.save_checkpoint(epoch, metric=ranked[eval_metric])
            ctx.logger.info("*** epoch %d: %s %.4f; best %s (epoch %s)", epoch, eval_metric,
                            ranked[eval_metric], best_metric, best_epoch)
    if eval_metrics:
        ctx.logger.info("summary: %s (%s), %s: validation Prec@1 %.2f %% after epoch %d; best %s %.4f "
                        "(epoch %s, %s)", spec.arch, spec.source, cost["text"], eval_metrics["prec1"],
                        num_epochs - 1, eval_metric, best_metric, best_epoch,
                        os.path.join(ctx.run_dir, "model_best.pdparams"))
    return {"best_metric": best_metric, "best_epoch": best_epoch, "eval": dict(eval_metrics),
            "epochs": num_epochs, "cost": {k: v for k, v in cost.items() if k != "text"}}
