"""``train`` mode of METHOD 'pdarts': the P-DARTS search (Chen et al., ICCV 2019; official code
chenxin061/pdarts ``train_search.py``).

The training split of DATA_DIR is cut in two (``DARTS.SEARCH.TRAIN_PORTION``): the network's
weights train on the first part (SGD with momentum, weight decay, gradient clipping, a cosine rate
per stage), the architecture parameters on the second (Adam, betas (0.5, 0.999), weight decay).
The search runs in stages (``DARTS.SEARCH.CELLS``, officially 5, 11 and 17 cells) on a new network
each time; only the per-edge switches of the operations still in play carry over. In each stage's
first ``WEIGHTS_ONLY_EPOCHS`` epochs only the weights train; then every step first takes an
architecture step on a batch of the second part and then a weight step. Skip-connects are followed
by dropout at the stage's rate (``lib.darts.pdarts.skip_dropout_rate``). After a stage the
operations with the lowest softmax(alpha) on each edge are switched off (8 -> 5 -> 3 officially);
the last stage's alphas give the genotype (``lib.darts.pdarts.derive_genotype``), for every limit
on skip-connects in the normal cell from 8 down to 0.

Run folder: ``train.log``; ``summary.csv`` (one row per epoch of the whole search: ``epoch`` counts
across stages, with ``stage`` and ``stage_epoch``); ``alphas.csv`` (every epoch's softmax(alpha) of
every operation in play on every edge, also TensorBoard ``alphas/<cell>/edge<NN>_<op>``);
``stages.json`` (each finished stage's switches and final weights); ``last.pdparams`` (the latest
epoch: stage, switches, network with its alphas, both optimizers, the scheduler); at the end
``genotypes.json`` (``max_skip_8`` ... ``max_skip_0`` and ``recommended``, the one with
``DARTS.SEARCH.MAX_SKIP`` skip-connects at most, as the paper keeps 2) and ``cells.png``.

A killed search resumes (AUTO_RESUME) at the epoch after the last checkpoint, in its stage: the
stage's network is rebuilt from the checkpoint's switches and loaded with its weights, alphas and
optimizer states, and the per-epoch seeding replays the uninterrupted run's random draws, so the
search ends with what it would have written without the kill. (Epochs are the unit: there are no
mid-epoch recovery files, RECOVERY_INTERVAL is not read.)

Several processes (``tools/main.py --nproc N``) split both halves of the data between them; the
weight and the architecture gradients are averaged over the processes before each update (one
all-reduce each), so every process holds the same network. Batch-norm statistics are taken from
rank 0 before validating and saving.

Deliberate differences from the official code: the architecture step computes no gradients of the
weights (the official one computed and discarded them); validation uses evaluation transforms
(the official reused the training transforms); a stage's first network is drawn from a seed of
its own, so a resumed search rebuilds it exactly.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import paddle
import paddle.distributed as dist
import paddle.nn.functional as F

from lib.config import ConfigError
from lib.darts import (PRIMITIVES, Genotype, SearchNetwork, SearchStage, derive_genotype, edge_inputs,
                       genotype_to_dict, ops_in_play, plan_stages, prune_switches, save_genotypes,
                       skip_dropout_rate)
from lib.darts.space import Switches, check_switches, full_switches, steps_for_edges
from lib.darts.visualize import plot_genotype
from pimm.utils.plots import PLOT_HINT
from lib.engine.common import (RunContext, RunError, broadcast_buffers, check_data_splits,
                               check_replicas, create_split_loader, dataset_subset, find_resume_checkpoint,
                               gradient_clip, open_split, record_config, seed_epoch, skipped_images)
from lib.engine.evaluate import evaluate, topk_correct
from lib.engine.meters import EpochMeters, Meter
from lib.engine.supernet import average_gradients, search_loader_policy
from pimm.models import CheckpointMismatchError, read_checkpoint_file, restore_optimizer_state, resume_checkpoint
from pimm.optim.state import materialize_optimizer_state
from pimm.scheduler import CosineLRScheduler
from pimm.utils import SUMMARY_FILE, CheckpointSaver, atomic_write_text, update_summary
from pimm.utils.amp import parse_amp_level

__all__ = ["DartsSearchOptions", "preflight", "run", "arch_step", "weight_step", "search_data_split"]

#: what a search epoch logs (lib.engine.meters): the weight step's loss and accuracy on its batch,
#: and the architecture step's loss on its batch of the other half
SEARCH_METERS = (Meter("loss", "Loss", precision=6), Meter("prec1", "Prec@1"), Meter("prec5", "Prec@5"),
                 Meter("arch_loss", "Arch-Loss", precision=6))
GENOTYPES_FILE = "genotypes.json"
CELLS_PICTURE = "cells.png"
STAGES_FILE = "stages.json"
ALPHAS_FILE = "alphas.csv"
_ALPHA_COLUMNS = ("epoch", "stage", "stage_epoch", "cell", "edge", "node", "input", "op", "alpha", "weight")
_CELLS = ("normal", "reduce")


@dataclass(frozen=True)
class DartsSearchOptions:
    """``cfg.DARTS.SEARCH`` and the weight optimizer's global keys (``CLIP_GRAD`` goes to
    ``gradient_clip``), checked once."""

    stages: Tuple[SearchStage, ...]
    epochs: int
    weights_only_epochs: int
    skip_dropout_decay: float
    train_portion: float
    arch_lr: float
    arch_betas: Tuple[float, float]
    arch_weight_decay: float
    lr: float
    min_lr: float
    momentum: float
    weight_decay: float
    val_epochs: int
    max_skip: int

    @classmethod
    def from_config(cls, cfg) -> "DartsSearchOptions":
        s = cfg.DARTS.SEARCH
        gradient_clip(cfg)  # checks CLIP_GRAD
        try:
            stages = plan_stages(cells=list(s.CELLS), channels=list(s.CHANNELS), num_ops=list(s.NUM_OPS),
                                 skip_dropout=list(s.SKIP_DROPOUT))
        except ValueError as err:
            raise ConfigError(f"DARTS.SEARCH CELLS/CHANNELS/NUM_OPS/SKIP_DROPOUT: {err}") from None
        opts = cls(stages=tuple(stages), epochs=int(s.EPOCHS), weights_only_epochs=int(s.WEIGHTS_ONLY_EPOCHS),
                   skip_dropout_decay=float(s.SKIP_DROPOUT_DECAY), train_portion=float(s.TRAIN_PORTION),
                   arch_lr=float(s.ARCH_LR), arch_betas=tuple(float(b) for b in s.ARCH_BETAS),
                   arch_weight_decay=float(s.ARCH_WEIGHT_DECAY), lr=float(cfg.LR), min_lr=float(cfg.MIN_LR),
                   momentum=float(cfg.MOMENTUM), weight_decay=float(cfg.WEIGHT_DECAY),
                   val_epochs=int(s.VAL_EPOCHS), max_skip=int(s.MAX_SKIP))
        problems = []
        if opts.epochs < 1:
            problems.append(f"DARTS.SEARCH.EPOCHS must be >= 1, got {opts.epochs}")
        if not 0 <= opts.weights_only_epochs < opts.epochs:
            problems.append(f"DARTS.SEARCH.WEIGHTS_ONLY_EPOCHS must be in 0..EPOCHS-1 ({opts.epochs - 1}) so "
                            f"that the architecture trains, got {opts.weights_only_epochs}")
        if not 0 < opts.train_portion < 1:
            problems.append(f"DARTS.SEARCH.TRAIN_PORTION must be in (0, 1), got {opts.train_portion}")
        if len(opts.arch_betas) != 2 or not all(0 <= b < 1 for b in opts.arch_betas):
            problems.append(f"DARTS.SEARCH.ARCH_BETAS must be two values in [0, 1), got {list(s.ARCH_BETAS)}")
        if not 0 <= opts.val_epochs <= opts.epochs:
            problems.append(f"DARTS.SEARCH.VAL_EPOCHS must be in 0..EPOCHS, got {opts.val_epochs}")
        if not 0 <= opts.max_skip <= 8:
            problems.append(f"DARTS.SEARCH.MAX_SKIP must be in 0..8, got {opts.max_skip}")
        for key, value in (("LR", opts.lr), ("DARTS.SEARCH.ARCH_LR", opts.arch_lr)):
            if value <= 0:
                problems.append(f"{key} must be > 0, got {value}")
        for key, value in (("MIN_LR", opts.min_lr), ("MOMENTUM", opts.momentum),
                           ("WEIGHT_DECAY", opts.weight_decay),
                           ("DARTS.SEARCH.ARCH_WEIGHT_DECAY", opts.arch_weight_decay),
                           ("DARTS.SEARCH.SKIP_DROPOUT_DECAY", opts.skip_dropout_decay)):
            if value < 0:
                problems.append(f"{key} must be >= 0, got {value}")
        if int(cfg.DATASET.NUM_CLASSES) < 2:
            problems.append(f"DATASET.NUM_CLASSES must be >= 2, got {cfg.DATASET.NUM_CLASSES}")
        if cfg.BATCHNORM.SYNC_BN:
            problems.append("BATCHNORM.SYNC_BN is not supported by the P-DARTS search; set it to False")
        if parse_amp_level(cfg.AMP) != "O0":  # its bilevel steps are float32 only
            problems.append(f"AMP {cfg.AMP} is not supported by the P-DARTS search; set AMP False")
        if problems:
            raise ConfigError("; ".join(problems))
        return opts

    @property
    def total_epochs(self) -> int:
        return self.epochs * len(self.stages)


# ---- one step of each kind ---------------------------------------------------------------------
@contextlib.contextmanager
def _frozen(params: Sequence[paddle.Tensor]) -> Iterator[None]:
    """No gradients for ``params`` inside the block (backward then skips their kernels)."""
    saved = [p.stop_gradient for p in params]
    for p in params:
        p.stop_gradient = True
    try:
        yield
    finally:
        for p, stop in zip(params, saved):
            p.stop_gradient = stop


def arch_step(net: SearchNetwork, optimizer: paddle.optimizer.Optimizer, images: paddle.Tensor,
              labels: paddle.Tensor, world_size: int = 1) -> paddle.Tensor:
    """One architecture update: cross-entropy on ``images`` (a batch of the architecture half),
    gradients of the alphas only (averaged over ``world_size`` ranks), the optimizer's step (its
    gradient clipping included). Returns the loss (not synced to the host)."""
    with _frozen(net.weights()):
        loss = F.cross_entropy(net(images), labels)
        optimizer.clear_grad(set_to_zero=False)
        loss.backward()
    average_gradients(net.arch_parameters(), world_size)
    optimizer.step()
    optimizer.clear_grad(set_to_zero=False)
    return loss


def weight_step(net: SearchNetwork, optimizer: paddle.optimizer.Optimizer, images: paddle.Tensor,
                labels: paddle.Tensor, world_size: int = 1) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """One weight update on ``images`` (a batch of the weights half) with the alphas fixed;
    returns the logits (detached) and the loss."""
    with _frozen(net.arch_parameters()):
        logits = net(images)
        loss = F.cross_entropy(logits, labels)
        optimizer.clear_grad(set_to_zero=False)
        loss.backward()
    average_gradients(net.weights(), world_size)
    optimizer.step()
    optimizer.clear_grad(set_to_zero=False)
    return logits.detach(), loss


# ---- data --------------------------------------------------------------------------------------
def search_data_split(num_images: int, train_portion: float) -> Tuple[range, range]:
    """The indices of the weights part and of the architecture part of the training split (the
    first ``floor(portion x N)`` images and the rest, as the official code splits CIFAR-10)."""
    split = int(math.floor(train_portion * num_images))
    return range(split), range(split, num_images)


@dataclass
class _Loaders:
    weights: Any  # the weights half, training transforms
    arch: Any  # the architecture half, training transforms
    val: Any  # the architecture half, evaluation transforms


def _search_loaders(ctx: RunContext, opts: DartsSearchOptions) -> _Loaders:
    cfg = ctx.cfg
    dataset = open_split(cfg, "train")
    weights_part, arch_part = search_data_split(len(dataset), opts.train_portion)
    if not len(weights_part) or not len(arch_part):
        raise RunError(f"DATA_DIR's training split has {len(dataset)} images: too few to split into a weights "
                       f"and an architecture part at DARTS.SEARCH.TRAIN_PORTION {opts.train_portion}")
    size = int(cfg.DATASET.IMAGE_SIZE)
    policy = search_loader_policy(cfg)

    def loader(part: range, training: bool) -> Any:
        return create_split_loader(cfg, ctx, dataset_subset(dataset, part), size, training=training,
                                   policy=policy)

    loaders = _Loaders(loader(weights_part, True), loader(arch_part, True), loader(arch_part, False))
    if len(loaders.weights) == 0 or len(loaders.arch) == 0:
        raise RunError(f"the weights and architecture parts ({len(weights_part)} and {len(arch_part)} images) "
                       f"hold fewer images per process than DATASET.BATCH_SIZE ({cfg.DATASET.BATCH_SIZE}): "
                       "lower the batch size")
    return loaders


def _cycle(loader: Any) -> Iterator[Any]:
    # the architecture part may yield fewer batches than the weights part: start it over
    while True:
        yield from loader


# ---- alphas: what is logged each epoch ---------------------------------------------------------
def _edge_weights(alphas: paddle.Tensor) -> np.ndarray:
    """softmax(alphas) per edge, as the network weighs its operations."""
    return F.softmax(alphas.detach().astype("float64"), axis=-1).numpy()


def _cells(net: SearchNetwork) -> Iterator[Tuple[str, paddle.Tensor, Switches]]:
    yield from zip(_CELLS, net.arch_parameters(), (net.switches_normal, net.switches_reduce))


def _alpha_rows(net: SearchNetwork, epoch: int, stage: int, stage_epoch: int) -> List[Dict[str, Any]]:
    """One row per operation in play on every edge of both cells (alphas.csv)."""
    rows = []
    for cell, alphas, switches in _cells(net):
        raw, weights = alphas.numpy(), _edge_weights(alphas)
        for edge, ((node, state), switch) in enumerate(zip(edge_inputs(steps_for_edges(len(switches))), switches)):
            for column, op in enumerate(ops_in_play(switch)):
                rows.append(dict(epoch=epoch, stage=stage, stage_epoch=stage_epoch, cell=cell, edge=edge,
                                 node=node, input=state, op=op, alpha=float(raw[edge, column]),
                                 weight=float(weights[edge, column])))
    return rows


def _format_alphas(rows: List[Dict[str, Any]]) -> List[str]:
    """Per cell and edge, the operations in play by decreasing weight."""
    edges: Dict[Tuple[str, int], List[Dict[str, Any]]] = OrderedDict()
    for row in rows:
        edges.setdefault((row["cell"], row["edge"]), []).append(row)
    return [f"  {cell:6s} edge {edge:2d} (node {ops[0]['node']} <- {ops[0]['input']}): "
            + "  ".join(f"{r['op']} {r['weight']:.3f}" for r in sorted(ops, key=lambda r: -r["weight"]))
            for (cell, edge), ops in edges.items()]


def _append_csv(path: str, rows: Sequence[Dict[str, Any]], columns: Sequence[str]) -> None:
    new_file = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        if new_file:
            writer.writeheader()
        writer.writerows(rows)


def _truncate_csv(path: str, first_dropped_epoch: int) -> None:
    """Drop the rows of epochs from ``first_dropped_epoch`` on (written by a run killed before
    that epoch's checkpoint), so that a resumed run's rows follow on without duplicates."""
    if not os.path.isfile(path):
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or "epoch" not in rows[0]:
        return
    column = rows[0].index("epoch")
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[column]) < first_dropped_epoch]
    if len(kept) != len(rows):
        out = io.StringIO()
        csv.writer(out).writerows(kept)
        atomic_write_text(out.getvalue(), path)


# ---- the search --------------------------------------------------------------------------------
def _stage_record(stage: SearchStage, net: SearchNetwork) -> Dict[str, Any]:
    """What stages.json keeps of a finished stage: its settings, switches and final weights."""
    record: Dict[str, Any] = dict(stage=stage.index, cells=stage.cells, channels=stage.channels,
                                  ops_per_edge=stage.num_ops, skip_dropout=stage.skip_dropout)
    for cell, alphas, switches in _cells(net):
        record[f"ops_{cell}"] = [ops_in_play(row) for row in switches]
        record[f"weights_{cell}"] = np.round(_edge_weights(alphas), 6).tolist()
    return record


class _Search:
    """The state of one P-DARTS search run: the current stage's network, optimizers, scheduler and
    saver, the switches, and the records of the finished stages."""

    def __init__(self, ctx: RunContext, opts: DartsSearchOptions) -> None:
        self.ctx, self.cfg, self.opts = ctx, ctx.cfg, opts
        self.loaders = _search_loaders(ctx, opts)
        self.num_classes = int(self.cfg.DATASET.NUM_CLASSES)
        self.switches: Tuple[Switches, Switches] = (full_switches(), full_switches())
        self.stage_records: List[Dict[str, Any]] = []
        self.stage: Optional[SearchStage] = None
        self.net: Optional[SearchNetwork] = None
        self.epoch_seconds: List[float] = []

    # ---- a stage's network and its optimizers ---------------------------------------------
    def begin_stage(self, stage: SearchStage) -> None:
        """A new network for ``stage`` from the current switches, with fresh optimizers."""
        ctx, opts = self.ctx, self.opts
        self.stage = stage
        seed_epoch(ctx, stage.index * opts.epochs)  # the network's draws depend on the stage only
        with paddle.utils.unique_name.guard():  # stable parameter names: optimizer state resumes
            self.net = SearchNetwork(stage.channels, self.num_classes, stage.cells, *self.switches,
                                     skip_dropout=stage.skip_dropout)
        if ctx.distributed:
            for value in self.net.state_dict().values():
                dist.broadcast(value, src=0)
        clip = gradient_clip(self.cfg)
        self.weights_opt = paddle.optimizer.Momentum(
            learning_rate=opts.lr, momentum=opts.momentum, parameters=self.net.weights(),
            weight_decay=opts.weight_decay or None, grad_clip=clip)
        self.arch_opt = paddle.optimizer.Adam(
            learning_rate=opts.arch_lr, beta1=opts.arch_betas[0], beta2=opts.arch_betas[1],
            parameters=self.net.arch_parameters(), weight_decay=opts.arch_weight_decay or None, grad_clip=clip)
        for optimizer in (self.weights_opt, self.arch_opt):
            materialize_optimizer_state(optimizer)
        self.scheduler = CosineLRScheduler(self.weights_opt, t_initial=opts.epochs, lr_min=opts.min_lr,
                                           cycle_limit=1)
        self.saver = None
        if ctx.is_primary:
            self.saver = CheckpointSaver(self.net, self.weights_opt, args=self.cfg, scheduler=self.scheduler,
                                         checkpoint_dir=ctx.run_dir, recovery_dir=ctx.run_dir, max_history=1,
                                         arch="pdarts_search")
        params = sum(int(np.prod(p.shape)) for p in self.net.weights())
        ctx.logger.info("stage %d/%d: %d cells, %d initial channels, %d operations per edge, skip-connect "
                        "dropout %.2f; %s weights", stage.index + 1, len(opts.stages), stage.cells,
                        stage.channels, stage.num_ops, stage.skip_dropout, f"{params:,}")
        ctx.logger.info("operations in play (every edge): normal %s; reduce %s",
                        _common_ops(self.switches[0]), _common_ops(self.switches[1]))

    def extra_state(self, stage_epoch: int) -> Dict[str, Any]:
        return {"stage": self.stage.index, "stage_epoch": stage_epoch,
                "switches_normal": [list(row) for row in self.switches[0]],
                "switches_reduce": [list(row) for row in self.switches[1]],
                "arch_optimizer": self.arch_opt.state_dict(), "stage_records": list(self.stage_records)}

    # ---- resume ---------------------------------------------------------------------------
    def resume(self) -> Tuple[int, int]:
        """``(stage index, first epoch of it to run)``: the epoch after the run folder's last
        checkpoint (AUTO_RESUME), with that stage's network, optimizers and scheduler restored,
        or ``(0, 0)`` for a new search (nothing built yet)."""
        path = find_resume_checkpoint(self.ctx)
        if path is None:
            record_config(self.ctx)
            return 0, 0
        try:
            state = read_checkpoint_file(path)
        except ValueError as err:
            raise RunError(f"cannot resume from {path}: {err}") from err
        if not isinstance(state, dict) or "stage" not in state or "switches_normal" not in state:
            raise RunError(f"cannot resume from {path}: it was not written by the P-DARTS search (no stage and "
                           "switches). Use another MODEL or SAVE_PATH, or AUTO_RESUME False")
        stage_index, stage_epoch = int(state["stage"]), int(state["stage_epoch"])
        if not 0 <= stage_index < len(self.opts.stages) or not 0 <= stage_epoch < self.opts.epochs:
            raise RunError(f"cannot resume from {path}: it is at stage {stage_index} epoch {stage_epoch}, outside "
                           f"this config's {len(self.opts.stages)} stages of {self.opts.epochs} epochs. Use the "
                           "config of the run that wrote it")
        try:
            switches = (check_switches([[bool(v) for v in row] for row in state["switches_normal"]]),
                        check_switches([[bool(v) for v in row] for row in state["switches_reduce"]]))
        except (TypeError, ValueError) as err:
            raise RunError(f"cannot resume from {path}: its switches are damaged ({err})") from None
        self.switches = switches
        self.begin_stage(self.opts.stages[stage_index])
        try:
            resume_checkpoint(self.net, path, optimizer=self.weights_opt, scheduler=self.scheduler)
            restore_optimizer_state(self.arch_opt, state["arch_optimizer"], path)
        except CheckpointMismatchError as err:
            raise RunError(f"cannot resume from {path}: it holds another search network "
                           f"({err.first_problem}). Use the config of the run that wrote it (same "
                           "DARTS.SEARCH stages and DATASET.NUM_CLASSES), or AUTO_RESUME False") from err
        except (KeyError, TypeError, ValueError) as err:
            raise RunError(f"cannot resume from {path}: {err}") from err
        self.stage_records = list(state.get("stage_records") or [])
        record_config(self.ctx)
        epoch = stage_index * self.opts.epochs + stage_epoch + 1
        if self.ctx.is_primary:
            for name in (SUMMARY_FILE, ALPHAS_FILE):
                _truncate_csv(os.path.join(self.ctx.run_dir, name), epoch)
        self.ctx.logger.info("resumed from %s: stage %d with %d of its %d epochs done; the search goes on at "
                             "its epoch %d", path, stage_index + 1, stage_epoch + 1, self.opts.epochs, epoch)
        return stage_index, stage_epoch + 1

    # ---- an epoch -------------------------------------------------------------------------
    def train_epoch(self, epoch: int, stage_epoch: int, train_arch: bool) -> Dict[str, float]:
        ctx, net = self.ctx, self.net
        net.train()
        loaders = self.loaders
        loaders.weights.set_epoch(epoch)
        loaders.arch.set_epoch(epoch)
        arch_batches = _cycle(loaders.arch) if train_arch else None
        meters = EpochMeters(ctx, epoch, len(loaders.weights), SEARCH_METERS,
                             title=f"Stage {self.stage.index + 1}", num_epochs=self.opts.total_epochs)
        extra = (f"stage epoch {stage_epoch + 1}/{self.opts.epochs}  skip-dropout {net.skip_dropout:.3f}  "
                 f"architecture {'training' if train_arch else 'fixed'}")
        for batch_idx, (images, labels) in meters.batches(loaders.weights):
            arch_loss = None
            if arch_batches is not None:
                arch_images, arch_labels = next(arch_batches)
                arch_loss = arch_step(net, self.arch_opt, arch_images, arch_labels, ctx.world_size)
            logits, loss = weight_step(net, self.weights_opt, images, labels, ctx.world_size)
            batch = images.shape[0]
            with paddle.no_grad():
                top1, top5 = topk_correct(logits, labels)
            meters.update(batch, lr=self.weights_opt.get_lr(), loss=loss, prec1=top1 * (100.0 / batch), prec5=top5 * (100.0 / batch),
                          arch_loss=arch_loss)
            if meters.log_due(batch_idx):
                meters.log(batch_idx, lr=self.weights_opt.get_lr(), extra=extra)
        return meters.averages()

    def run_epoch(self, stage_epoch: int) -> None:
        ctx, opts, net, stage = self.ctx, self.opts, self.net, self.stage
        epoch = stage.index * opts.epochs + stage_epoch
        start = time.time()
        seed_epoch(ctx, epoch)
        self.scheduler.step(stage_epoch)
        net.skip_dropout = skip_dropout_rate(stage.skip_dropout, stage_epoch, opts.epochs, opts.weights_only_epochs,
                                             opts.skip_dropout_decay)
        train_arch = stage_epoch >= opts.weights_only_epochs
        train = self.train_epoch(epoch, stage_epoch, train_arch)
        train.update(stage=stage.index, stage_epoch=stage_epoch, lr=self.weights_opt.get_lr(),
                     skip_dropout=net.skip_dropout,
                     skipped_images=skipped_images(self.loaders.weights, ctx, f"epoch {epoch}")
                     + skipped_images(self.loaders.arch, ctx, f"epoch {epoch} (architecture half)"))
        broadcast_buffers(net, ctx)
        check_replicas(net, ctx, f"epoch {epoch}")
        evaluated = stage_epoch >= opts.epochs - opts.val_epochs
        val = (evaluate(net, self.loaders.val, ctx, log_name=f"Valid {stage.index + 1}.{stage_epoch}")
               if evaluated else {"loss": math.nan, "prec1": math.nan, "prec5": math.nan})
        val = OrderedDict((k, val[k]) for k in ("loss", "prec1", "prec5"))
        self.epoch_seconds.append(time.time() - start)
        if ctx.is_primary:
            self.log_epoch(epoch, stage_epoch, train, val, evaluated, train_arch)
            self.saver.save_checkpoint(epoch, extra_state=self.extra_state(stage_epoch))

    def log_epoch(self, epoch: int, stage_epoch: int, train: Dict[str, float], val: Dict[str, float],
                  evaluated: bool, train_arch: bool) -> None:
        ctx, net, stage, opts = self.ctx, self.net, self.stage, self.opts
        rows = _alpha_rows(net, epoch, stage.index, stage_epoch)
        _append_csv(os.path.join(ctx.run_dir, ALPHAS_FILE), rows, _ALPHA_COLUMNS)
        update_summary(epoch, train, val, os.path.join(ctx.run_dir, SUMMARY_FILE))
        for row in rows:
            ctx.writer.add_scalar(f"alphas/{row['cell']}/edge{row['edge']:02d}_{row['op']}", row["weight"], epoch)
        ctx.writer.add_scalar("search/skip_dropout", net.skip_dropout, epoch)
        ctx.writer.add_scalar("search/stage", stage.index, epoch)
        if evaluated:
            for key, value in val.items():
                ctx.writer.add_scalar(f"val/{key}", value, epoch)
        ctx.logger.info("softmax(alpha) after epoch %d (stage %d, epoch %d of it):\n%s", epoch, stage.index + 1,
                        stage_epoch + 1, "\n".join(_format_alphas(rows)))
        if train_arch:
            ctx.logger.info("genotype of these alphas (no limit on skip-connects): %s",
                            self.genotype(max_skip=8))
        left = opts.epochs - stage_epoch - 1
        ctx.logger.info("*** epoch %d (stage %d, epoch %d/%d) in %.1f s: train loss %.4f Prec@1 %.2f%s; "
                        "about %.1f min left in this stage", epoch, stage.index + 1, stage_epoch + 1, opts.epochs,
                        self.epoch_seconds[-1], train["loss"], train["prec1"],
                        f", validation Prec@1 {val['prec1']:.2f}" if evaluated else "",
                        left * float(np.mean(self.epoch_seconds[-3:])) / 60.0)

    # ---- stage ends and the genotype ------------------------------------------------------
    def genotype(self, max_skip: int) -> Genotype:
        alphas_normal, alphas_reduce = self.net.arch_parameters()
        return derive_genotype(alphas_normal, alphas_reduce, *self.switches, max_skip=max_skip)

    def end_stage(self) -> None:
        """Record the stage (stages.json) and, before the next stage, switch off the weakest
        operations of every edge."""
        ctx, stage = self.ctx, self.stage
        self.stage_records.append(_stage_record(stage, self.net))
        if ctx.is_primary:
            atomic_write_text(json.dumps(self.stage_records, indent=1), os.path.join(ctx.run_dir, STAGES_FILE))
        if stage.keep is None:
            return
        before = self.switches
        self.switches = tuple(prune_switches(switches, alphas, keep=stage.keep)
                              for switches, alphas in zip(self.switches, self.net.arch_parameters()))
        ctx.logger.info("stage %d done: %d -> %d operations per edge; switched off the weakest per edge:",
                        stage.index + 1, stage.num_ops, stage.keep)
        for cell, old, new in zip(_CELLS, before, self.switches):
            for edge, (old_row, new_row) in enumerate(zip(old, new)):
                dropped = [op for op, was, now in zip(PRIMITIVES, old_row, new_row) if was and not now]
                ctx.logger.info("  %-6s edge %2d: dropped %s; kept %s", cell, edge, ", ".join(dropped),
                                ", ".join(ops_in_play(new_row)))

    def final_genotypes(self) -> "OrderedDict[str, Genotype]":
        """``recommended`` (at most MAX_SKIP skip-connects in the normal cell) and ``max_skip_8``
        .. ``max_skip_0``; a limit no genotype meets (an edge with no operation left but 'none'
        and the skip-connect) is left out."""
        by_limit: "OrderedDict[int, Genotype]" = OrderedDict()
        for max_skip in range(8, -1, -1):
            try:
                by_limit[max_skip] = self.genotype(max_skip)
            except ValueError as err:
                self.ctx.logger.warning("no genotype with at most %d skip-connects: %s", max_skip, err)
        genotypes: "OrderedDict[str, Genotype]" = OrderedDict()
        if self.opts.max_skip in by_limit:
            genotypes["recommended"] = by_limit[self.opts.max_skip]
        genotypes.update((f"max_skip_{limit}", genotype) for limit, genotype in by_limit.items())
        return genotypes

    def finish(self) -> Dict[str, Any]:
        ctx = self.ctx
        genotypes = self.final_genotypes()
        path = os.path.join(ctx.run_dir, GENOTYPES_FILE)
        picture = os.path.join(ctx.run_dir, CELLS_PICTURE)
        for name, genotype in genotypes.items():
            ctx.logger.info("%s: %s", name, genotype)
        if ctx.is_primary:
            save_genotypes(path, genotypes)
        if "recommended" not in genotypes:
            raise RunError(f"the searched cells admit no genotype with at most DARTS.SEARCH.MAX_SKIP "
                           f"({self.opts.max_skip}) skip-connects in the normal cell; {path} has the others")
        if ctx.is_primary:
            try:
                plot_genotype(genotypes["recommended"], picture,
                              title=f"P-DARTS search {self.cfg.MODEL}: recommended genotype "
                                    f"(at most {self.opts.max_skip} skip-connects)")
                ctx.logger.info("cells of the recommended genotype drawn in %s", picture)
            except ModuleNotFoundError:
                picture = None
                ctx.logger.info("no cells.png: matplotlib is not installed (%s)", PLOT_HINT)
        ctx.logger.info("genotypes written to %s; retrain the recommended one with METHOD pdarts "
                        "DARTS.GENOTYPE %s (or %s:max_skip_N)", path, path, path)
        return {"genotypes": {name: genotype_to_dict(g) for name, g in genotypes.items()},
                "genotypes_file": path, "picture": picture if ctx.is_primary else None,
                "stages": list(self.stage_records), "epochs": self.opts.total_epochs}


def _common_ops(switches: Switches) -> str:
    """The operations in play, or how many per edge where edges differ."""
    names = {tuple(ops_in_play(row)) for row in switches}
    return ", ".join(next(iter(names))) if len(names) == 1 else f"{sum(switches[0])} per edge (differing)"


def preflight(cfg) -> None:
    """The launcher's checks before starting the processes (see ``lib.engine``)."""
    DartsSearchOptions.from_config(cfg)
    check_data_splits(cfg, ("train",))


def run(ctx: RunContext) -> Dict[str, Any]:
    """The whole P-DARTS search (or its rest, after a resume); returns the genotypes (as
    genotypes.json holds them), the stage records (stages.json) and the number of epochs."""
    opts = DartsSearchOptions.from_config(ctx.cfg)
    search = _Search(ctx, opts)
    ctx.logger.info("P-DARTS search: %d stages of %d epochs (the first %d train the weights only); %d + %d "
                    "training images for the weights and the architecture, %d batches of %d per epoch "
                    "and process", len(opts.stages), opts.epochs, opts.weights_only_epochs,
                    len(search.loaders.weights.dataset), len(search.loaders.arch.dataset),
                    len(search.loaders.weights), int(ctx.cfg.DATASET.BATCH_SIZE))
    first_stage, first_epoch = search.resume()
    for stage in opts.stages[first_stage:]:
        if search.net is None or search.stage.index != stage.index:
            search.begin_stage(stage)
        for stage_epoch in range(first_epoch if stage.index == first_stage else 0, opts.epochs):
            search.run_epoch(stage_epoch)
        search.end_stage()
    return search.finish()
