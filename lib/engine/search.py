"""``train`` mode: Cream's architecture search, i.e. supernet training with prioritized paths.

Each step samples a path (``SUPERNET.HOW_TO_PROB``), trains it on the batch with cross-entropy or,
once distillation is on (epochs after ``SUPERNET.META_STA_EPOCH``, board not empty,
``PICK_METHOD`` not 'none'), with ``(rho * KD + (2 - rho) * CE) / 2`` against a teacher from the
prioritized board, and offers the path to the board. Every ``UPDATE_ITER`` steps the
meta-matching network takes its second-order step first (``lib.search.meta_matching``). Each
epoch ends with validation of several paths, ``board.json`` and a checkpoint.

Deliberate differences from the reference (microsoft/Cream ``tools/train.py``, ``lib/core/train.py``):

* only the sampled path trains: gradients are cleared to *None* (``clear_grad(set_to_zero=False)``)
  and Paddle's optimizers skip parameters without a gradient, so blocks off the path keep their
  weights and momentum, and get no weight decay, as the paper (and SPOS) describe. The reference
  zeroed the gradients, so momentum and weight decay kept moving every block once it had been
  sampled;
* the learning rate decays linearly from LR to 0 over ``EPOCHS x len(loader)`` steps; the
  reference's ``LR - step / ITERS`` multiplier went negative for LR < 1, and its ITERS assumed
  1.28M images whatever the data;
* the logged LR is the student's (the reference averaged in the meta layer's groups);
* checkpoints hold the board, the path sampler and the scheduler, so AUTO_RESUME continues the
  same search (the reference saved neither board nor scheduler);
* validation scores ``SUPERNET.VAL_PATHS`` random paths, the same ones every epoch, and the
  board's best path, instead of one new random path per epoch;
* multi-process runs average the path's gradients with one all-reduce per step instead of wrapping
  the supernet in ``paddle.DataParallel``: DataParallel's hooks assume every step uses the same
  parameters and would hand unsampled blocks zero gradients, and the meta step's double
  ``paddle.grad`` must not trigger them. All ranks draw the same path (same sampler seed).
"""
from __future__ import annotations

import os
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import paddle
import paddle.distributed as dist
from paddle import nn

from lib.config import ConfigError
from lib.engine.common import (LoaderPolicy, RunContext, RunError, broadcast_buffers, build_loaders,
                               check_data_splits, create_checkpoint_saver, resume_training, seed_epoch)
from lib.engine.evaluate import evaluate
from lib.engine.meters import EpochMeters, Meter, record_epoch
from lib.models import FlopsEst, SuperNet, SupernetPath, build_supernet
from lib.search import (PICK_METHODS, SAMPLING_MODES, MetaMatchingNetwork, MetaUpdate, PathSampler,
                        PrioritizedBoard)
from lib.search.board_file import BOARD_FILE, write_board_file
from pimm.loss import LabelSmoothingCrossEntropy, soft_target_cross_entropy, softmax
from pimm.optim import add_weight_decay, create_optimizer
from pimm.scheduler import Scheduler
from pimm.utils import ModelEma, accuracy, reduce_tensor

__all__ = ["run", "preflight", "SearchOptions", "LinearDecayLRScheduler", "create_search_optimizer",
           "create_search_loss", "average_gradients", "recalibrated_batch_norm", "search_loader_policy",
           "build_search_supernet", "search_step", "SearchParts", "SearchStep"]

ArchList = List[List[int]]
#: what the search loop logs (lib.engine.meters); rho is the teacher's matching score
SEARCH_METERS = (Meter("loss", "Loss", precision=6), Meter("kd_loss", "KD-Loss", precision=6),
                 Meter("prec1", "Prec@1"), Meter("prec5", "Prec@5"), Meter("rho", "rho"),
                 Meter("meta_val_loss", tag="meta/val_loss"),
                 Meter("meta_grad_norm", tag="meta/grad_norm"))
# validation metrics: means over the SUPERNET.VAL_PATHS random paths
EVAL_METRICS = ("prec1", "prec5", "loss")


@dataclass(frozen=True)
class SearchOptions:
    """``cfg.SUPERNET`` (and the few global keys the search needs), checked once."""

    pick_method: str
    how_to_prob: str
    pre_prob: Tuple[float, ...]
    meta_start_epoch: int
    update_iter: int
    meta_updates: bool
    slice: int
    pool_size: int
    val_paths: int
    val_bn_batches: int
    flops_minimum: float
    flops_maximum: float
    uniform_mix: float
    teacher_min_prec1: float
    warmup_steps: int

    @classmethod
    def from_config(cls, cfg) -> "SearchOptions":
        s = cfg.SUPERNET
        opts = cls(pick_method=str(s.PICK_METHOD), how_to_prob=str(s.HOW_TO_PROB),
                   pre_prob=tuple(float(p) for p in s.PRE_PROB),
                   meta_start_epoch=int(s.META_STA_EPOCH), update_iter=int(s.UPDATE_ITER),
                   meta_updates=str(s.PICK_METHOD) == "meta" and bool(s.UPDATE_2ND),
                   slice=int(s.SLICE), pool_size=int(s.POOL_SIZE), val_paths=int(s.VAL_PATHS),
                   val_bn_batches=int(s.VAL_BN_BATCHES),
                   flops_minimum=float(s.FLOPS_MINIMUM), flops_maximum=float(s.FLOPS_MAXIMUM),
                   uniform_mix=float(s.UNIFORM_MIX), teacher_min_prec1=float(s.TEACHER_MIN_PREC1),
                   warmup_steps=int(s.WARMUP_STEPS))
        problems = []
        if opts.pick_method not in PICK_METHODS:
            problems.append(f"SUPERNET.PICK_METHOD must be one of {PICK_METHODS}, got {opts.pick_method!r}")
        if opts.how_to_prob not in SAMPLING_MODES:
            problems.append(f"SUPERNET.HOW_TO_PROB must be one of {SAMPLING_MODES}, got {opts.how_to_prob!r}")
        for key, value, low in (("UPDATE_ITER", opts.update_iter, 1), ("SLICE", opts.slice, 1),
                                ("POOL_SIZE", opts.pool_size, 1), ("VAL_PATHS", opts.val_paths, 1),
                                ("VAL_BN_BATCHES", opts.val_bn_batches, 0),
                                ("WARMUP_STEPS", opts.warmup_steps, 0)):
            if value < low:
                problems.append(f"SUPERNET.{key} must be >= {low}, got {value}")
        batch = int(cfg.DATASET.BATCH_SIZE)
        if opts.meta_updates and batch < 2 * opts.slice:
            problems.append(f"the meta-matching update uses 2 x SUPERNET.SLICE = {2 * opts.slice} images of "
                            f"each batch: DATASET.BATCH_SIZE ({batch}) must be at least that")
        if not 0.0 <= opts.uniform_mix <= 1.0:
            problems.append(f"SUPERNET.UNIFORM_MIX must be in [0, 1], got {opts.uniform_mix}")
        if float(cfg.LR) <= 0:
            problems.append(f"LR must be > 0, got {cfg.LR}")
        if int(cfg.EPOCHS) < 1:
            problems.append(f"EPOCHS must be >= 1, got {cfg.EPOCHS}")
        metrics = [prefix + key for prefix in ("", "ema_")[:1 + bool(cfg.NET.EMA.USE)]
                   for key in EVAL_METRICS]
        if str(cfg.EVAL_METRICS) not in metrics:
            problems.append(f"EVAL_METRICS must be one of {metrics} for the search (the mean over the "
                            f"validated paths), got {cfg.EVAL_METRICS!r}")
        if cfg.BATCHNORM.SYNC_BN:
            problems.append("BATCHNORM.SYNC_BN is not supported by the search: the meta-matching step "
                            "needs pimm's BatchNorm2d (second-order mode). Set it to False")
        if problems:
            raise ConfigError("; ".join(problems))
        return opts

    @property
    def distills(self) -> bool:
        return self.pick_method != "none"


class LinearDecayLRScheduler(Scheduler):
    """``lr(t) = LR * min(1, (t + 1) / warmup_updates) * max(0, 1 - t / total_updates)`` for update
    ``t`` (counted from 0), stepped after every update: a linear rise over the first
    ``warmup_updates`` (none by default, as in the reference) within the linear decay to 0."""

    def __init__(self, optimizer: paddle.optimizer.Optimizer, total_updates: int,
                 warmup_updates: int = 0) -> None:
        if total_updates < 1:
            raise ValueError(f"total_updates must be >= 1, got {total_updates}")
        if warmup_updates < 0:
            raise ValueError(f"warmup_updates must be >= 0, got {warmup_updates}")
        self.total_updates = int(total_updates)
        self.warmup_updates = int(warmup_updates)
        super().__init__(optimizer, t_in_epochs=False)
        self._apply(self.lr_at(0))

    def _schedule(self, t: float) -> float:
        warmup = min(1.0, (t + 1) / self.warmup_updates) if self.warmup_updates else 1.0
        return self.base_lr * warmup * max(0.0, 1.0 - t / self.total_updates)


def create_search_optimizer(cfg, supernet: nn.Layer) -> paddle.optimizer.Optimizer:
    """The reference's four parameter groups: weights with WEIGHT_DECAY, biases and 1-D parameters
    without, and the meta layer's two groups at META_LR. Paddle's group rates multiply the global
    rate, so the meta groups carry META_LR / LR and follow the schedule like the reference's did.
    The reference gives the meta layer no weight decay in either of its groups; so does this."""
    meta_ids = {id(p) for p in supernet.meta_parameters()}
    named = [(n, p) for n, p in supernet.named_parameters() if not p.stop_gradient]
    student = [(n, p) for n, p in named if id(p) not in meta_ids]
    meta = [(n, p) for n, p in named if id(p) in meta_ids]
    groups = (add_weight_decay(student, float(cfg.WEIGHT_DECAY))
              + add_weight_decay(meta, 0.0, learning_rate=float(cfg.META_LR) / float(cfg.LR)))
    return create_optimizer(cfg, groups)


def create_search_loss(cfg) -> nn.Layer:
    """Label-smoothing cross-entropy with ``AUGMENTATION.SMOOTHING``, pimm's: the meta step
    differentiates it twice (Paddle's has no double-grad kernel)."""
    return LabelSmoothingCrossEntropy(float(cfg.AUGMENTATION.SMOOTHING))


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


def search_loader_policy(cfg) -> LoaderPolicy:
    """The search's loaders, as the reference's: no RandAugment on training images, and the
    evaluation resize with ``DATASET.INTERPOLATION``."""
    return LoaderPolicy(auto_augment=None, eval_interpolation=str(cfg.DATASET.INTERPOLATION))


def build_search_supernet(cfg) -> Tuple[SuperNet, List[int], int]:
    """The supernet the search trains: ``(supernet, layers per searched stage, resolution of
    the FLOPs space)``, from the config's SUPERNET/NET/BATCHNORM keys."""
    s = cfg.SUPERNET
    try:
        return build_supernet(
            flops_minimum=float(s.FLOPS_MINIMUM), flops_maximum=float(s.FLOPS_MAXIMUM),
            num_classes=int(cfg.DATASET.NUM_CLASSES), drop_rate=float(cfg.NET.DROPOUT_RATE),
            global_pool=str(cfg.NET.GP), slice=int(s.SLICE), resunit=bool(s.RESUNIT),
            dil_conv=bool(s.DIL_CONV), aligned_init=bool(s.ALIGNED_INIT),
            zero_classifier=bool(cfg.NET.ZERO_INIT_CLASSIFIER), bn_momentum=float(cfg.BATCHNORM.BN_MOMENTUM),
            bn_eps=float(cfg.BATCHNORM.BN_EPS))
    except ValueError as err:
        raise ConfigError(str(err)) from err


@dataclass
class SearchParts:
    """What every step of a search uses: the supernet and its optimizer, loss and EMA, the
    prioritized board and the meta-matching network, the teacher rule (``PICK_METHOD``) and the
    number of ranks the path's gradients are averaged over."""

    supernet: SuperNet
    optimizer: paddle.optimizer.Optimizer
    loss_fn: Callable
    board: PrioritizedBoard
    meta: MetaMatchingNetwork
    pick_method: str
    world_size: int = 1
    ema: Optional[ModelEma] = None


@dataclass
class SearchStep:
    """What one training step of a path produced (tensors not synced to the host)."""

    output: paddle.Tensor  # the student's logits, detached
    loss: paddle.Tensor  # the loss it trained on (CE, or the KD/CE mix)
    kd_loss: Optional[paddle.Tensor]  # None without distillation
    rho: Optional[float]  # the teacher's matching score, None without distillation
    meta: Optional[MetaUpdate]  # the meta-matching update taken first, if any


def search_step(parts: SearchParts, images: paddle.Tensor, targets: paddle.Tensor, arch: ArchList,
                *, distill: bool, meta_update: bool) -> SearchStep:
    """One step of the search on a batch for the sampled path ``arch``: the meta-matching update
    first when ``meta_update``, then the path's forward, with ``distill`` its teacher from the
    board and the KD/CE mix, backward (gradients averaged over the ranks), the optimizer step on
    the path's parameters and the EMA update. tools/benchmark.py --mode search times exactly
    this."""
    supernet, optimizer, loss_fn, board, meta = (parts.supernet, parts.optimizer, parts.loss_fn,
                                                 parts.board, parts.meta)
    meta_info = None
    if meta_update:
        meta_info = meta.update(supernet, optimizer, images, targets, arch, board, loss_fn,
                                lr=optimizer.get_lr())
    output = supernet(images, arch)
    loss = loss_fn(output, targets)
    kd_loss = rho = None
    if distill:
        teacher_index, rho = meta.select_teacher(supernet, arch, board, parts.pick_method)
        with paddle.no_grad():
            soft_target = softmax(supernet(images, board.entries[teacher_index].arch), axis=-1)
        kd_loss = soft_target_cross_entropy(output, soft_target)
        # rho is a number: the main loss never moves the meta layer (the reference's kept
        # its graph, so this step also trained the meta layer)
        loss = (rho * kd_loss + (2.0 - rho) * loss) / 2.0

    optimizer.clear_grad(set_to_zero=False)
    loss.backward()
    average_gradients(supernet.path_parameters(arch), parts.world_size)
    optimizer.step()
    optimizer.clear_grad(set_to_zero=False)
    if parts.ema is not None:
        parts.ema.update(supernet)
    return SearchStep(output.detach(), loss, kd_loss, rho, meta_info)


def _path_batch_norms(supernet: nn.Layer, arch: ArchList) -> List[nn.BatchNorm2D]:
    shared = [layer for name, layer in supernet.named_children() if name != "blocks"]
    return [m for top in shared + supernet.chosen_blocks(arch) for m in top.sublayers(include_self=True)
            if isinstance(m, nn.BatchNorm2D)]


@contextmanager
def recalibrated_batch_norm(supernet: nn.Layer, arch: ArchList, batches: List[np.ndarray],
                            reduce: Optional[Callable[[paddle.Tensor], paddle.Tensor]] = None
                            ) -> Iterator[None]:
    """Inside the block, the batch norms on ``arch``'s path hold statistics of that path alone: the
    mean of its batch statistics over ``batches`` (training images; averaged over the ranks with
    ``reduce`` when distributed). Everything is restored on exit.

    The running statistics a supernet accumulates while training mix every path that went through
    a layer (the stem's and the last stage's batch norms serve them all), so a path evaluated with
    them is judged with the wrong normalisation; SPOS recalibrates them per path, the reference did
    not. No ``batches`` (``SUPERNET.VAL_BN_BATCHES 0``) keeps the running statistics.
    """
    if not batches:
        yield
        return
    norms = _path_batch_norms(supernet, arch)
    saved = [(bn._mean.numpy(), bn._variance.numpy(), bn._momentum) for bn in norms]
    was_training = supernet.training
    try:
        with paddle.no_grad():
            for bn in norms:
                bn._mean.set_value(paddle.zeros_like(bn._mean))
                bn._variance.set_value(paddle.zeros_like(bn._variance))
            supernet.train()
            for i, images in enumerate(batches):
                for bn in norms:  # running = i/(i+1) running + 1/(i+1) batch: the plain mean
                    bn._momentum = i / (i + 1.0)
                supernet(paddle.to_tensor(images), arch)
            if reduce is not None:
                for bn in norms:
                    bn._mean.set_value(reduce(bn._mean))
                    bn._variance.set_value(reduce(bn._variance))
        supernet.train(was_training)
        yield
    finally:
        for bn, (mean, variance, momentum) in zip(norms, saved):
            bn._mean.set_value(mean)
            bn._variance.set_value(variance)
            bn._momentum = momentum
        supernet.train(was_training)


def _validation_paths(sampler_seed: int, sta_num: List[int], num_choices: int, count: int,
                      cost: Callable[[ArchList], float], low: float, high: float) -> List[ArchList]:
    # drawn once from their own generator: the same paths every epoch (and after a resume), so the
    # validation curve follows the same networks; uniformly among the paths within the budget,
    # the only ones the search can return
    sampler = PathSampler(sta_num, num_choices, "even", seed=sampler_seed)
    try:
        return [sampler.sample_within(cost, low, high) for _ in range(count)]
    except ValueError as err:
        raise ConfigError(str(err)) from err


class _Search:
    """The state of one search run and its epoch loop."""

    def __init__(self, ctx: RunContext, opts: SearchOptions) -> None:
        cfg = ctx.cfg
        self.ctx, self.cfg, self.opts = ctx, cfg, opts
        log = ctx.logger
        self.supernet, self.sta_num, resolution = build_search_supernet(cfg)
        self.num_choices = len(self.supernet.blocks[1][0])
        self.resolution = int(resolution)
        # FLOPs at the resolution the space was sized for, the one FLOPS_MINIMUM/MAXIMUM refer to
        # (the reference always counted at 224 px, which overstates low-budget spaces' paths)
        self.flops_est = FlopsEst(self.supernet, resolution=self.resolution)
        self._path_cost: Dict[Any, Tuple[float, float]] = {}
        log.info("supernet: %d parameters, layers per searched stage %s, %d choices, space resolution "
                 "%d px (training at DATASET.IMAGE_SIZE %d px, as the reference)",
                 sum(int(np.prod(p.shape)) for p in self.supernet.parameters()), self.sta_num,
                 self.num_choices, resolution, int(cfg.DATASET.IMAGE_SIZE))
        if ctx.distributed:
            for value in self.supernet.state_dict().values():
                dist.broadcast(value, src=0)

        self.train_loader, self.eval_loader = build_loaders(cfg, ctx, int(cfg.DATASET.IMAGE_SIZE),
                                                            policy=search_loader_policy(cfg))
        if len(self.train_loader) == 0:
            raise RunError(f"DATA_DIR/train has fewer images per process than DATASET.BATCH_SIZE "
                           f"({cfg.DATASET.BATCH_SIZE}): lower the batch size")
        self.optimizer = create_search_optimizer(cfg, self.supernet)
        self.scheduler = LinearDecayLRScheduler(self.optimizer, int(cfg.EPOCHS) * len(self.train_loader),
                                                warmup_updates=opts.warmup_steps)
        self.ema = ModelEma(self.supernet, decay=float(cfg.NET.EMA.DECAY)) if cfg.NET.EMA.USE else None
        self.board = PrioritizedBoard(opts.pool_size, opts.flops_minimum, opts.flops_maximum)
        self.sampler = PathSampler(self.sta_num, self.num_choices, opts.how_to_prob, opts.pre_prob,
                                   seed=int(cfg.SEED), uniform_mix=opts.uniform_mix)
        self.parts = SearchParts(self.supernet, self.optimizer, create_search_loss(cfg), self.board,
                                 MetaMatchingNetwork(opts.slice, reduce=self._mean_over_ranks),
                                 opts.pick_method, ctx.world_size, self.ema)
        self.bn_batches: List[np.ndarray] = []  # the epoch's last training batches, for validation
        self.val_paths = _validation_paths(int(cfg.SEED) + 1, self.sta_num, self.num_choices, opts.val_paths,
                                           lambda arch: self.path_cost(arch)[0], opts.flops_minimum,
                                           opts.flops_maximum)
        # the last validation's paths and top-1, for board.json
        self.validated: List[Tuple[ArchList, float]] = []
        self.validated_best: Optional[Tuple[ArchList, float]] = None
        # whether the board's paths are good enough to teach (SUPERNET.TEACHER_MIN_PREC1)
        self.teachers_ready = opts.teacher_min_prec1 <= 0
        self.saver = None
        if ctx.is_primary:
            self.saver = create_checkpoint_saver(ctx, self.supernet, self.optimizer, model_ema=self.ema,
                                                 scheduler=self.scheduler, arch="cream_supernet")

    # ---- helpers ---------------------------------------------------------------------------
    def _mean_over_ranks(self, tensor: paddle.Tensor) -> paddle.Tensor:
        return reduce_tensor(tensor, self.ctx.world_size) if self.ctx.distributed else tensor

    def path_cost(self, arch: ArchList) -> Tuple[float, float]:
        """(MFLOPs, M params) of a path, from the supernet's FLOPs table."""
        key = tuple(map(tuple, arch))
        if key not in self._path_cost:
            self._path_cost[key] = (self.flops_est.get_flops(arch), self.flops_est.get_params(arch))
        return self._path_cost[key]

    def extra_state(self) -> Dict[str, Any]:
        return {"board": self.board.state_dict(), "path_sampler": self.sampler.state_dict(),
                "teachers_ready": self.teachers_ready}

    # ---- resume ----------------------------------------------------------------------------
    def resume(self) -> Tuple[int, int]:
        """Continue from the run folder's checkpoint when AUTO_RESUME finds one; returns
        ``(start epoch, batches of it already trained)``."""
        point = resume_training(self.ctx, self.supernet, self.optimizer, self.scheduler, self.ema,
                                what="supernet", same_run_hint=" (same FLOPs range, classes and SLICE)")
        if point.path is None:
            return 0, 0
        if "board" in point.extra:
            try:
                self.board.load_state_dict(point.extra["board"])
            except ValueError as err:
                raise RunError(f"cannot resume from {point.path}: {err}") from err
            self.sampler.load_state_dict(point.extra["path_sampler"])
            self.teachers_ready = bool(point.extra.get("teachers_ready", self.teachers_ready))
        else:
            self.ctx.logger.warning("%s has no prioritized board (not written by this search): the "
                                    "board starts empty", point.path)
        self.ctx.logger.info("resumed board: %d paths", len(self.board))
        return point.start_epoch, point.skip_batches

    # ---- training --------------------------------------------------------------------------
    def _distilling(self, epoch: int) -> bool:
        return self.opts.distills and epoch > self.opts.meta_start_epoch and self.teachers_ready

    def update_teachers_ready(self, eval_metrics: Dict[str, float]) -> bool:
        """After an epoch's validation: distillation starts once the board's best path reaches
        SUPERNET.TEACHER_MIN_PREC1 (it never stops again). Returns whether it just started."""
        best = eval_metrics.get("best_prec1", float("nan"))
        if (self.teachers_ready or not self.opts.distills or not np.isfinite(best)
                or best < self.opts.teacher_min_prec1):
            return False
        self.teachers_ready = True
        return True

    def train_epoch(self, epoch: int, skip_batches: int = 0) -> Dict[str, float]:
        ctx, cfg, opts = self.ctx, self.cfg, self.opts
        self.supernet.train()
        self.train_loader.set_epoch(epoch)
        recovery_interval = int(cfg.RECOVERY_INTERVAL)
        num_batches = len(self.train_loader)
        num_updates = epoch * num_batches + skip_batches
        board_phase = epoch > opts.meta_start_epoch  # the board fills only after META_STA_EPOCH
        meters = EpochMeters(ctx, epoch, num_batches, SEARCH_METERS)
        entered = 0
        self.bn_batches = []
        for batch_idx, (images, targets) in meters.batches(self.train_loader, skip=skip_batches):
            arch = self.sampler.sample(self.board)
            flops, params = self.path_cost(arch)
            distill = self._distilling(epoch) and bool(self.board.teachers_for(arch))
            meta_update = (distill and opts.meta_updates and batch_idx > 0
                           and batch_idx % opts.update_iter == 0)
            step = search_step(self.parts, images, targets, arch, distill=distill,
                               meta_update=meta_update)
            num_updates += 1
            self.scheduler.step_update(num_updates)

            prec1, prec5 = accuracy(step.output, targets, topk=(1, 5))
            kd_value = step.kd_loss.detach() if step.kd_loss is not None else paddle.zeros([])
            # one reduction per step: every rank needs the same accuracy to make the same board decision
            stats = self._mean_over_ranks(paddle.stack([
                step.loss.detach().reshape([]).astype("float32"), prec1, prec5,
                kd_value.reshape([]).astype("float32")]))
            loss_value, prec1_value, prec5_value, kd_mean = stats.numpy().tolist()
            batch = images.shape[0]
            meters.update(batch, loss=loss_value, prec1=prec1_value, prec5=prec5_value,
                          kd_loss=kd_mean if step.kd_loss is not None else None, rho=step.rho,
                          meta_val_loss=step.meta.val_loss if step.meta is not None else None,
                          meta_grad_norm=step.meta.grad_norm if step.meta is not None else None)
            if board_phase and self.board.would_admit(prec1_value, flops, arch):
                s = opts.slice
                entered += self.board.consider(arch, prec1_value, flops, params, images[:s],
                                               softmax(step.output[:s], axis=-1))
            if batch_idx >= num_batches - opts.val_bn_batches:
                self.bn_batches.append(images.numpy())

            last = batch_idx == num_batches - 1
            if meters.log_due(batch_idx):
                # the global rate is the student's; the meta groups' rates are multiples of it
                meters.log(batch_idx, lr=self.optimizer.get_lr(),
                           extra=f"Board: {len(self.board)}  Meta updates: {meters.counts['meta_val_loss']}  "
                                 f"Path: {arch[1:-1]} ({flops:.1f} MFLOPs)",
                           scalars={"train/board_size": len(self.board)})
            if (self.saver is not None and recovery_interval and not last
                    and (batch_idx + 1) % recovery_interval == 0):
                self.saver.save_recovery(epoch, batch_idx, extra_state=self.extra_state())

        # the same keys every epoch (summary.csv has one header); NaN where nothing was measured
        means = meters.averages()
        return OrderedDict(
            loss=means["loss"], prec1=means["prec1"], prec5=means["prec5"], kd_loss=means["kd_loss"],
            rho=means["rho"], kd_steps=meters.counts["rho"], meta_updates=meters.counts["meta_val_loss"],
            meta_val_loss=means["meta_val_loss"], board_entered=entered, board_size=len(self.board))

    # ---- validation and export -------------------------------------------------------------
    def validate(self, epoch: int) -> Dict[str, float]:
        """Mean loss/Prec@1/Prec@5 of the fixed random paths, and the board's best path's."""
        broadcast_buffers(self.supernet, self.ctx)
        models = [("", self.supernet)] + ([("ema_", self.ema.ema)] if self.ema is not None else [])
        metrics: Dict[str, float] = OrderedDict()
        for prefix, model in models:
            results = [self._evaluate_path(model, arch, f"Test {prefix}path {i}")
                       for i, arch in enumerate(self.val_paths)]
            for i, (arch, result) in enumerate(zip(self.val_paths, results)):
                self.ctx.logger.info("Validation %spath %d %s (%.1f MFLOPs): Prec@1 %.3f", prefix, i,
                                     arch[1:-1], self.path_cost(arch)[0], result["prec1"])
            for key in EVAL_METRICS:
                metrics[prefix + key] = float(np.mean([r[key] for r in results]))
            best = self.board.best()
            result = (self._evaluate_path(model, best.arch, f"Test {prefix}board best") if best is not None
                      else {"prec1": float("nan"), "prec5": float("nan")})
            metrics[prefix + "best_prec1"] = result["prec1"]
            metrics[prefix + "best_prec5"] = result["prec5"]
            if not prefix:
                self.validated = [(arch, r["prec1"]) for arch, r in zip(self.val_paths, results)]
                self.validated_best = (best.arch, result["prec1"]) if best is not None else None
        if self.ctx.writer is not None:
            for key, value in metrics.items():
                if np.isfinite(value):  # best_prec1 is NaN while the board is empty
                    self.ctx.writer.add_scalar(f"val/{key}", value, epoch)
        return metrics

    def _evaluate_path(self, model: nn.Layer, arch: ArchList, log_name: str) -> Dict[str, float]:
        reduce = self._mean_over_ranks if self.ctx.distributed else None
        with recalibrated_batch_norm(model, arch, self.bn_batches, reduce):
            return evaluate(SupernetPath(model, arch), self.eval_loader, self.ctx, log_name=log_name)

    def board_json(self, epoch: int) -> Dict[str, Any]:
        """``board.json``: the board's paths best first, the best one within the FLOPs range (with
        its validation top-1 when it was validated), the range, the epoch, the resolution the
        FLOPs are counted at, and the validated random paths with their validation top-1."""
        board = dict(self.board.to_json(epoch), resolution=self.resolution)
        best = board["best_in_range"]
        if best is not None and self.validated_best is not None and best["arch"] == self.validated_best[0]:
            best["val_prec1"] = float(self.validated_best[1])
        board["validated"] = [{"arch": [list(s) for s in arch], "flops": self.path_cost(arch)[0],
                               "params": self.path_cost(arch)[1], "prec1": float(prec1)}
                              for arch, prec1 in self.validated]
        return board

    def write_board(self, epoch: int) -> str:
        path = write_board_file(self.ctx.run_dir, self.board_json(epoch))
        for i, entry in enumerate(self.board.entries):
            self.ctx.logger.info("Board No.%d  Prec@1 %.3f  %.2f MFLOPs  %.3f M params  %s", i, entry.prec1,
                                 entry.flops, entry.params, entry.arch)
        return path


def preflight(cfg) -> None:
    """The launcher's checks before starting the processes (see ``lib.engine``)."""
    check_data_splits(cfg)


def run(ctx: RunContext) -> Dict[str, Any]:
    """Search under the configured FLOPs budget; returns the best eval metric, the last epoch's
    train and eval metrics, the final board (``board.json``'s content) and per-epoch timings."""
    cfg = ctx.cfg
    opts = SearchOptions.from_config(cfg)
    search = _Search(ctx, opts)
    log = ctx.logger
    log.info("search: PICK_METHOD %s, HOW_TO_PROB %s, distillation and board from epoch %d%s, meta updates %s",
             opts.pick_method, opts.how_to_prob, opts.meta_start_epoch + 1,
             f" (distillation once the board's best path validates at {opts.teacher_min_prec1:g} % top-1)"
             if opts.distills and opts.teacher_min_prec1 > 0 else "",
             f"every {opts.update_iter} steps" if opts.meta_updates else "off")
    start_epoch, skip = search.resume()
    num_epochs = int(cfg.EPOCHS)
    eval_metric = str(cfg.EVAL_METRICS)
    best_metric = best_epoch = None
    train_metrics: Dict[str, float] = {}
    eval_metrics: Dict[str, float] = {}
    epoch_times: List[Dict[str, float]] = []
    for epoch in range(start_epoch, num_epochs):
        seed_epoch(ctx, epoch)
        epoch_start = time.time()
        train_metrics = search.train_epoch(epoch, skip_batches=skip if epoch == start_epoch else 0)
        train_seconds = time.time() - epoch_start
        eval_metrics = search.validate(epoch)
        if search.update_teachers_ready(eval_metrics):
            log.info("the board's best path reached %.1f %% validation top-1 (SUPERNET.TEACHER_MIN_PREC1 "
                     "%.1f): distillation starts", eval_metrics["best_prec1"], opts.teacher_min_prec1)
        val_seconds = time.time() - epoch_start - train_seconds
        epoch_times.append({"epoch": epoch, "train_seconds": train_seconds, "val_seconds": val_seconds})
        log.info("epoch %d: train %.1fs, validation %.1fs; train Prec@1 %.3f, validation Prec@1 %.3f "
                 "(mean of %d paths)%s", epoch, train_seconds, val_seconds, train_metrics["prec1"],
                 eval_metrics.get("prec1", float("nan")), len(search.val_paths),
                 f", board best {eval_metrics['best_prec1']:.3f}" if len(search.board) else "")
        if ctx.is_primary:
            search.write_board(epoch)
            record_epoch(ctx, epoch, train_metrics, eval_metrics)
            best_metric, best_epoch = search.saver.save_checkpoint(
                epoch, metric=eval_metrics[eval_metric], extra_state=search.extra_state())
    board = search.board_json(num_epochs - 1)
    best = board["best_in_range"]
    if best is not None and eval_metrics:
        log.info("summary: the board's best path %s (%.1f MFLOPs at %d px, %.2f M params): validation "
                 "Prec@1 %.2f %%, random paths within the budget %.2f %% (mean of %d); retrain it with "
                 "tools/main.py retrain <config> NET.BOARD_JSON %s", best["arch"], best["flops"],
                 search.resolution, best["params"], eval_metrics["best_prec1"], eval_metrics["prec1"],
                 len(search.val_paths), os.path.join(ctx.run_dir, BOARD_FILE))
    return {"best_metric": best_metric, "best_epoch": best_epoch, "train": dict(train_metrics),
            "eval": dict(eval_metrics), "board": board, "epoch_times": epoch_times, "epochs": num_epochs}
