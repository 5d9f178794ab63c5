"""``retrain`` mode: train a child network (or any ``NET.MODEL``) from scratch, or from
``INITIAL_CHECKPOINT``'s weights, with its method's published recipe -- Cream's (timm 0.1.20
semantics: RMSpropTF, step/cosine LR with warmup, per epoch or per update, label smoothing,
dropout, EMA, RandAugment and random erasing), SPOS's (SGD, ``SCHED linear`` per update, label
smoothing; ``experiments/configs/spos/retrain.yaml``), P-DARTS's (SGD, cosine LR, gradient clipping
``CLIP_GRAD``, Cutout, the auxiliary head and drop path), PeleeNet's (SGD, cosine per update) --
validating every epoch and checkpointing through ``CheckpointSaver``. What a method's network adds
to the loop comes from ``lib.engine.child.child_training``: the auxiliary logits' loss weight, a
hook at each epoch's start.

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
from lib.engine.common import (RunContext, RunError, amp_extra_state, broadcast_buffers,
                               build_loaders, check_data_splits, check_replicas, create_amp,
                               create_checkpoint_saver, from_config, gradient_clip, resume_amp,
                               resume_training, seed_epoch, skipped_images, unwrap_model, wrap_model)
from lib.engine.child import (ChildSpec, checkpoint_misfit, child_cost, child_loader_policy, child_training,
                              create_child_model, resolve_child)
from lib.engine.evaluate import EVAL_METRIC_NAMES, evaluate, topk_correct
from lib.engine.meters import EpochMeters, Meter, record_epoch
from pimm.loss import LabelSmoothingCrossEntropy
from pimm.models import CheckpointMismatchError, load_checkpoint
from pimm.optim import create_optimizer
from pimm.scheduler import create_scheduler
from pimm.utils import CheckpointSaver, ModelEma
from pimm.utils.amp import FLOAT32, Amp
from pimm.utils.profile import format_count

__all__ = ["run", "preflight", "create_train_loss", "create_train_optimizer", "train_one_epoch", "train_step",
           "TRAIN_METERS", "record_train_batch"]


def train_step(model: paddle.nn.Layer, images: paddle.Tensor, labels: paddle.Tensor, optimizer,
               loss_fn, model_ema: Optional[ModelEma] = None, aux_weight: float = 0.0,
               amp: Amp = FLOAT32) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """One optimisation step on a batch (forward, loss, backward, update, EMA), in ``amp``'s
    mixed precision (float32 without); returns the logits and the loss, without a host sync. A
    model that returns ``(logits, aux_logits)`` in training adds ``aux_weight`` times the loss of
    its auxiliary logits (DARTS' auxiliary head). tools/benchmark.py times exactly this."""
    with amp.autocast():
        output = model(images)
        output, aux_output = output if isinstance(output, tuple) else (output, None)
        loss = loss_fn(output, labels)
        if aux_output is not None and aux_weight:
            loss = loss + aux_weight * loss_fn(aux_output, labels)
    optimizer.clear_grad()
    amp.backward(loss)
    amp.step(optimizer)
    if model_ema is not None:
        model_ema.update(model)
    return output, loss


def create_train_loss(cfg) -> paddle.nn.Layer:
    """The retrain loss: label-smoothing cross-entropy with ``AUGMENTATION.SMOOTHING`` (plain
    cross-entropy at 0)."""
    smoothing = float(cfg.AUGMENTATION.SMOOTHING)
    return LabelSmoothingCrossEntropy(smoothing) if smoothing > 0 else paddle.nn.CrossEntropyLoss()


def create_train_optimizer(cfg, model: paddle.nn.Layer) -> paddle.optimizer.Optimizer:
    """The retrain optimizer: ``OPT`` with ``CLIP_GRAD`` and ``FILTER_BIAS_AND_BN`` (a bad value is
    a ConfigError naming the key)."""
    return from_config(create_optimizer, cfg, model, grad_clip=gradient_clip(cfg),
                       filter_bias_and_bn=bool(cfg.FILTER_BIAS_AND_BN))


#: what the retrain loop logs (lib.engine.meters)
TRAIN_METERS = (Meter("loss", "Loss", precision=6), Meter("prec1", "Prec@1"), Meter("prec5", "Prec@5"))


def record_train_batch(meters: EpochMeters, output: paddle.Tensor, labels: paddle.Tensor,
                       loss: paddle.Tensor, lr: Optional[float] = None) -> None:
    """A training batch's loss, Prec@1 and Prec@5 into ``TRAIN_METERS`` (on the device, no sync);
    ``lr``, the step's learning rate, is what a divergence error reports."""
    batch = labels.shape[0]
    with paddle.no_grad():
        top1, top5 = topk_correct(output.detach(), labels)
    meters.update(batch, lr=lr, loss=loss, prec1=top1 * (100.0 / batch), prec5=top5 * (100.0 / batch))


def train_one_epoch(epoch: int, model: paddle.nn.Layer, loader: Any, optimizer, loss_fn,
                    ctx: RunContext, scheduler=None, model_ema: Optional[ModelEma] = None,
                    saver: Optional[CheckpointSaver] = None,
                    skip_batches: int = 0, aux_weight: float = 0.0,
                    amp: Amp = FLOAT32, num_epochs: Optional[int] = None) -> Dict[str, float]:
    """One pass over ``loader``; returns the epoch's loss and accuracies (averaged over all
    samples of all ranks) and the unreadable images it skipped. Host syncs happen only at log
    intervals, recovery points and the last batch; a non-finite loss stops there with
    DivergedError. ``aux_weight``, ``amp``: see :func:`train_step`; ``num_epochs``: the run's
    length its progress bar shows (None: ``EPOCHS``)."""
    model.train()
    recovery_interval = int(ctx.cfg.RECOVERY_INTERVAL)
    num_batches, last_idx = len(loader), len(loader) - 1
    num_updates = epoch * num_batches + skip_batches
    meters = EpochMeters(ctx, epoch, num_batches, TRAIN_METERS, num_epochs=num_epochs)
    for batch_idx, (images, labels) in meters.batches(loader, skip=skip_batches):
        lr = optimizer.get_lr()
        output, loss = train_step(model, images, labels, optimizer, loss_fn, model_ema, aux_weight,
                                  amp)
        num_updates += 1
        if scheduler is not None:
            scheduler.step_update(num_updates)
        record_train_batch(meters, output, labels, loss, lr=lr)
        if meters.log_due(batch_idx):  # the last batch always logs: checks the loss stayed finite
            meters.log(batch_idx, lr=optimizer.get_lr())
        if recovery_interval and (batch_idx + 1) % recovery_interval == 0 and batch_idx != last_idx:
            meters.check_finite()  # every rank; nothing trained on a non-finite loss is saved
            if saver is not None:
                saver.save_recovery(epoch, batch_idx, extra_state=amp_extra_state(amp))
    metrics = meters.averages()
    metrics["skipped_images"] = skipped_images(loader, ctx, f"epoch {epoch}")
    return metrics


def _log_model(ctx: RunContext, spec: ChildSpec, cost: Dict[str, Any]) -> None:
    """The network's line, counted as the reference's logs did (thop's format; ``cost`` from
    ``child_cost``)."""
    if spec.method == "cream":
        name, what = spec.model or spec.selection, f"{spec.name} ({spec.source})"
    else:
        name, what = spec.method, spec.source
    params = cost["params_m"] * 1e6
    aux = cost.get("aux_params_m")  # trains only; papers count without it
    without_aux = (f" ({format_count(params)} without the auxiliary head)" if aux is not None else "")
    ctx.logger.info("[Model-%s] %s, %d px: Flops: %s Params: %s%s", name, what, spec.image_size,
                    format_count(cost["mflops"] * 1e6), format_count(params + (aux or 0.0) * 1e6), without_aux)
    if spec.method != "cream":
        ctx.logger.info("%s", spec.arch)


def initial_checkpoint(cfg) -> Optional[str]:
    """``INITIAL_CHECKPOINT`` (None when empty); a RunError when no such file exists."""
    path = str(cfg.INITIAL_CHECKPOINT or "")
    if path and not os.path.isfile(path):
        raise RunError(f"INITIAL_CHECKPOINT: no file at {path!r}; point it at the weights to "
                       "fine-tune (.pth.tar or .pdparams), or set it to ''")
    return path or None


def load_initial_weights(model: paddle.nn.Layer, cfg, spec: ChildSpec) -> Optional[str]:
    """Load ``INITIAL_CHECKPOINT``'s weights (its plain ones, not EMA) into ``model``; returns the
    path, or None when the key is empty. A missing or misfitting file is a RunError."""
    path = initial_checkpoint(cfg)
    if path is None:
        return None
    try:
        load_checkpoint(model, path)
    except CheckpointMismatchError as err:
        raise checkpoint_misfit(f"INITIAL_CHECKPOINT {path}", spec, err) from err
    except ValueError as err:
        raise RunError(f"INITIAL_CHECKPOINT {path}: {err}") from err
    return path


def preflight(cfg) -> None:
    """The launcher's checks before starting the processes (see ``lib.engine``)."""
    check_data_splits(cfg)
    resolve_child(cfg)
    initial_checkpoint(cfg)


def run(ctx: RunContext) -> Dict[str, Any]:
    """Retrain the configured child network; returns the best eval metric and the last
    epoch's metrics."""
    cfg = ctx.cfg
    spec = resolve_child(cfg)
    eval_metric = str(cfg.EVAL_METRICS)
    if eval_metric not in EVAL_METRIC_NAMES:
        raise ConfigError(f"EVAL_METRICS {eval_metric!r} is not measured; choose one of "
                          f"{', '.join(EVAL_METRIC_NAMES)}")
    train_loader, eval_loader = build_loaders(cfg, ctx, spec.image_size,
                                              policy=child_loader_policy(cfg, spec))

    model = create_child_model(cfg, spec)  # same SEED on every rank: identical initial weights
    initial = load_initial_weights(model, cfg, spec)
    cost = child_cost(model, spec)
    if ctx.is_primary:
        _log_model(ctx, spec, cost)
        if initial:
            ctx.logger.info("starting from the weights of %s", initial)
    model_ema = ModelEma(model, decay=float(cfg.NET.EMA.DECAY)) if cfg.NET.EMA.USE else None
    amp = create_amp(cfg, ctx.device)
    optimizer = create_train_optimizer(cfg, model)
    model, optimizer = amp.decorate(model, optimizer)  # O2: float16 weights, float32 masters
    model = wrap_model(model, ctx)
    scheduler, num_epochs = from_config(create_scheduler, cfg, optimizer, updates_per_epoch=len(train_loader))
    training = child_training(cfg, spec)
    train_loss = create_train_loss(cfg)
    if amp.enabled:
        ctx.logger.info("mixed precision: %s", amp)

    resume = resume_training(ctx, model, optimizer, scheduler, model_ema, what="network")
    resume_amp(ctx, amp, resume)
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
        hooked = {}
        if training.start_epoch is not None:
            hooked = training.start_epoch(unwrap_model(model), epoch, num_epochs)
        train_metrics = train_one_epoch(
            epoch, model, train_loader, optimizer, train_loss, ctx, scheduler=scheduler,
            model_ema=model_ema, saver=saver,
            skip_batches=resume.skip_batches if epoch == resume.start_epoch else 0,
            aux_weight=training.aux_weight, amp=amp, num_epochs=num_epochs)
        train_metrics["lr"] = optimizer.get_lr()
        train_metrics.update(hooked)

        broadcast_buffers(model, ctx)
        check_replicas(model, ctx, f"epoch {epoch}")
        with amp.autocast():  # an O2 model's float16 weights need it; O1 evaluates as it trains
            eval_metrics = evaluate(unwrap_model(model), eval_loader, ctx, log_name="Test")
        ranked = eval_metrics
        if model_ema is not None:
            broadcast_buffers(model_ema.ema, ctx)
            # the reference ranks checkpoints (and steps the scheduler) by the EMA weights (kept
            # in float32: evaluated without autocast)
            ranked = evaluate(model_ema.ema, eval_loader, ctx, log_name="Test_EMA")
            eval_metrics.update((f"ema_{k}", v) for k, v in ranked.items())
        eval_metrics = OrderedDict((k, v) for k, v in eval_metrics.items()
                                   if not k.endswith(("seconds", "images")))
        scheduler.step(epoch + 1, ranked[eval_metric])
        if ctx.is_primary:
            saver.check_finite(f"epoch {epoch}")  # no summary row of NaN weights
            record_epoch(ctx, epoch, train_metrics, eval_metrics)
            for name in EVAL_METRIC_NAMES:
                ctx.writer.add_scalar(f"eval/{name}", eval_metrics[name], epoch)
                if model_ema is not None:
                    ctx.writer.add_scalar(f"eval_ema/{name}", eval_metrics[f"ema_{name}"], epoch)
            best_metric, best_epoch = saver.save_checkpoint(epoch, metric=ranked[eval_metric],
                                                            extra_state=amp_extra_state(amp))
            ctx.logger.info("*** epoch %d: %s %.4f; best %s (epoch %s)", epoch, eval_metric,
                            ranked[eval_metric], best_metric, best_epoch)
    if eval_metrics:
        ctx.logger.info("summary: %s (%s), %s: validation Prec@1 %.2f %% after epoch %d; best %s %.4f "
                        "(epoch %s, %s)", spec.name, spec.source, cost["text"], eval_metrics["prec1"],
                        num_epochs - 1, eval_metric, best_metric, best_epoch,
                        os.path.join(ctx.run_dir, "model_best.pdparams"))
    return {"best_metric": best_metric, "best_epoch": best_epoch, "eval": dict(eval_metrics),
            "epochs": num_epochs, "cost": {k: v for k, v in cost.items() if k != "text"}}
