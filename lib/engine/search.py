"""``train`` mode: Cream's architecture search, i.e. supernet training with prioritized paths.

Each step samples a path (``SUPERNET.HOW_TO_PROB``), trains it on the batch with cross-entropy or,
once distillation is on (epochs after ``SUPERNET.META_STA_EPOCH``, board not empty,
``PICK_METHOD`` not 'none'), with ``(rho * KD + (2 - rho) * CE) / 2`` against a teacher from the
prioritized board, and offers the path to the board. Every ``UPDATE_ITER`` steps the
meta-matching network takes its second-order step first (``lib.search.meta_matching``). Each
epoch ends with validation of several paths, ``board.json`` and a checkpoint.

Deliberate differences from the reference (microsoft/Cream ``tools/train.py``, ``lib/core/train.py``);
the first four are shared with SPOS's supernet training (``lib.engine.supernet``):

* only the sampled path trains: gradients are cleared to *None* and Paddle's optimizers skip
  parameters without a gradient, so blocks off the path keep their weights and momentum, and get
  no weight decay, as the paper (and SPOS) describe. The reference zeroed the gradients, so
  momentum and weight decay kept moving every block once it had been sampled;
* the learning rate decays linearly from LR to 0 over ``EPOCHS x len(loader)`` steps; the
  reference's ``LR - step / ITERS`` multiplier went negative for LR < 1, and its ITERS assumed
  1.28M images whatever the data;
* validation scores ``SUPERNET.VAL_PATHS`` random paths, the same ones every epoch, each with
  batch-norm statistics of its own, and the board's best path, instead of one new random path per
  epoch with the supernet's mixed statistics;
* multi-process runs average the path's gradients with one all-reduce per step instead of wrapping
  the supernet in ``paddle.DataParallel`` (the meta step's double ``paddle.grad`` must not trigger
  its hooks either). All ranks draw the same path (same sampler seed);
* ``PICK_METHOD top1`` takes no meta-matching updates (nothing to learn: the KD weight is fixed);
  the reference's update differentiated w.r.t. the teacher path's weights there and raised unless
  the student was the top-1 path itself (README, "What differs from the reference");
* the logged LR is the student's (the reference averaged in the meta layer's groups);
* checkpoints hold the board, the path sampler and the scheduler, so AUTO_RESUME continues the
  same search (the reference saved neither board nor scheduler).
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import paddle

from lib.config import ConfigError
from lib.engine.common import RunContext, RunError, check_data_splits
from lib.engine.meters import EpochMeters, Meter
from lib.engine.supernet import (SupernetTraining, check_supernet_settings, run_supernet_training,
                                 update_path)
from lib.models import FlopsEst, SuperNet, build_supernet
from lib.search import (PICK_METHODS, SAMPLING_MODES, MetaMatchingNetwork, MetaUpdate, PathSampler,
                        PrioritizedBoard)
from lib.search.board_file import BOARD_FILE, write_board_file
from pimm.loss import soft_target_cross_entropy, softmax
from pimm.utils import ModelEma, accuracy
from pimm.utils.amp import Amp

__all__ = ["run", "preflight", "SearchOptions", "build_search_supernet", "search_step", "SearchParts",
           "SearchStep"]

ArchList = List[List[int]]
#: what the search loop logs (lib.engine.meters); rho is the teacher's matching score
SEARCH_METERS = (Meter("loss", "Loss", precision=6), Meter("kd_loss", "KD-Loss", precision=6),
                 Meter("prec1", "Prec@1"), Meter("prec5", "Prec@5"), Meter("rho", "rho"),
                 Meter("meta_val_loss", tag="meta/val_loss"),
                 Meter("meta_grad_norm", tag="meta/grad_norm"))


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
    flops_minimum: float
    flops_maximum: float
    uniform_mix: float
    teacher_min_prec1: float

    @classmethod
    def from_config(cls, cfg) -> "SearchOptions":
        s = cfg.SUPERNET
        opts = cls(pick_method=str(s.PICK_METHOD), how_to_prob=str(s.HOW_TO_PROB),
                   pre_prob=tuple(float(p) for p in s.PRE_PROB),
                   meta_start_epoch=int(s.META_STA_EPOCH), update_iter=int(s.UPDATE_ITER),
                   meta_updates=str(s.PICK_METHOD) == "meta" and bool(s.UPDATE_2ND),
                   slice=int(s.SLICE), pool_size=int(s.POOL_SIZE), val_paths=int(s.VAL_PATHS),
                   flops_minimum=float(s.FLOPS_MINIMUM), flops_maximum=float(s.FLOPS_MAXIMUM),
                   uniform_mix=float(s.UNIFORM_MIX), teacher_min_prec1=float(s.TEACHER_MIN_PREC1))
        problems = check_supernet_settings(cfg)
        if opts.pick_method not in PICK_METHODS:
            problems.append(f"SUPERNET.PICK_METHOD must be one of {PICK_METHODS}, got {opts.pick_method!r}")
        if opts.how_to_prob not in SAMPLING_MODES:
            problems.append(f"SUPERNET.HOW_TO_PROB must be one of {SAMPLING_MODES}, got {opts.how_to_prob!r}")
        for key, value, low in (("UPDATE_ITER", opts.update_iter, 1), ("SLICE", opts.slice, 1),
                                ("POOL_SIZE", opts.pool_size, 1)):
            if value < low:
                problems.append(f"SUPERNET.{key} must be >= {low}, got {value}")
        batch = int(cfg.DATASET.BATCH_SIZE)
        if opts.meta_updates and batch < 2 * opts.slice:
            problems.append(f"the meta-matching update uses 2 x SUPERNET.SLICE = {2 * opts.slice} images of "
                            f"each batch: DATASET.BATCH_SIZE ({batch}) must be at least that")
        if not 0.0 <= opts.uniform_mix <= 1.0:
            problems.append(f"SUPERNET.UNIFORM_MIX must be in [0, 1], got {opts.uniform_mix}")
        if problems:
            raise ConfigError("; ".join(problems))
        return opts

    @property
    def distills(self) -> bool:
        return self.pick_method != "none"


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
    prioritized board and the meta-matching network, the teacher rule (``PICK_METHOD``), the
    number of ranks the path's gradients are averaged over and the path's mixed precision."""

    supernet: SuperNet
    optimizer: paddle.optimizer.Optimizer
    loss_fn: Callable
    board: PrioritizedBoard
    meta: MetaMatchingNetwork
    pick_method: str
    world_size: int = 1
    ema: Optional[ModelEma] = None
    amp: Amp = field(default_factory=Amp)  # the path's step in mixed precision (AMP O1)


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
    this. With ``parts.amp`` the path's and the teacher's forward passes run in mixed precision and
    the loss is scaled; the meta-matching update and the teacher's selection stay in float32 (the
    update's second-order gradients are not scaled)."""
    supernet, optimizer, loss_fn, board, meta = (parts.supernet, parts.optimizer, parts.loss_fn,
                                                 parts.board, parts.meta)
    meta_info = None
    if meta_update:
        meta_info = meta.update(supernet, optimizer, images, targets, arch, board, loss_fn,
                                lr=optimizer.get_lr())
    teacher_index = rho = None
    if distill:  # before the student's forward: the running statistics see the passes in the reference's order
        teacher_index, rho = meta.select_teacher(supernet, arch, board, parts.pick_method)
    kd_loss = None
    with parts.amp.autocast():
        output = supernet(images, arch)
        loss = loss_fn(output, targets)
        if distill:
            with paddle.no_grad():
                soft_target = softmax(supernet(images, board.entries[teacher_index].arch), axis=-1)
            kd_loss = soft_target_cross_entropy(output, soft_target)
            # rho is a number: the main loss never moves the meta layer (the reference's kept
            # its graph, so this step also trained the meta layer)
            loss = (rho * kd_loss + (2.0 - rho) * loss) / 2.0

    update_path(supernet, optimizer, loss, arch, parts.world_size, parts.ema, parts.amp)
    return SearchStep(output.detach(), loss, kd_loss, rho, meta_info)


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


class _Search(SupernetTraining):
    """The state of one search run: the supernet training plus the prioritized board, the path
    sampler and the meta-matching network."""

    checkpoint_arch = "cream_supernet"
    same_run_hint = " (same FLOPs range, classes and SLICE)"

    def __init__(self, ctx: RunContext, opts: SearchOptions) -> None:
        cfg = ctx.cfg
        self.opts = opts
        supernet, self.sta_num, resolution = build_search_supernet(cfg)
        self.num_choices = len(supernet.blocks[1][0])
        self.resolution = int(resolution)
        # FLOPs at the resolution the space was sized for, the one FLOPS_MINIMUM/MAXIMUM refer to
        # (the reference always counted at 224 px, which overstates low-budget spaces' paths)
        self.flops_est = FlopsEst(supernet, resolution=self.resolution)
        self._path_cost: Dict[Any, Tuple[float, float]] = {}
        ctx.logger.info("supernet: %d parameters, layers per searched stage %s, %d choices, space resolution "
                        "%d px (training at DATASET.IMAGE_SIZE %d px, as the reference)",
                        sum(int(np.prod(p.shape)) for p in supernet.parameters()), self.sta_num,
                        self.num_choices, resolution, int(cfg.DATASET.IMAGE_SIZE))
        super().__init__(ctx, supernet, _validation_paths(
            int(cfg.SEED) + 1, self.sta_num, self.num_choices, opts.val_paths,
            lambda arch: self.path_cost(arch)[0], opts.flops_minimum, opts.flops_maximum))
        self.board = PrioritizedBoard(opts.pool_size, opts.flops_minimum, opts.flops_maximum)
        self.sampler = PathSampler(self.sta_num, self.num_choices, opts.how_to_prob, opts.pre_prob,
                                   seed=int(cfg.SEED), uniform_mix=opts.uniform_mix)
        # the board's best path and its validation top-1 at the last validation, for board.json
        self.validated_best: Optional[Tuple[ArchList, float]] = None
        # whether the board's paths are good enough to teach (SUPERNET.TEACHER_MIN_PREC1)
        self.teachers_ready = opts.teacher_min_prec1 <= 0
        self.parts = SearchParts(self.supernet, self.optimizer, self.loss_fn, self.board,
                                 MetaMatchingNetwork(opts.slice, reduce=self.mean_over_ranks),
                                 opts.pick_method, ctx.world_size, self.ema, self.amp)

    # ---- helpers ---------------------------------------------------------------------------
    def path_cost(self, arch: ArchList) -> Tuple[float, float]:
        """(MFLOPs, M params) of a path, from the supernet's FLOPs table."""
        key = tuple(map(tuple, arch))
        if key not in self._path_cost:
            self._path_cost[key] = (self.flops_est.get_flops(arch), self.flops_est.get_params(arch))
        return self._path_cost[key]

    def describe_path(self, arch: ArchList) -> str:
        return f"{arch[1:-1]} ({self.path_cost(arch)[0]:.1f} MFLOPs)"

    def extra_state(self) -> Dict[str, Any]:
        return {"board": self.board.state_dict(), "path_sampler": self.sampler.state_dict(),
                "teachers_ready": self.teachers_ready}

    def load_extra_state(self, extra: Dict[str, Any], path: str) -> None:
        if "board" in extra:
            try:
                self.board.load_state_dict(extra["board"])
            except ValueError as err:
                raise RunError(f"cannot resume from {path}: {err}") from err
            self.sampler.load_state_dict(extra["path_sampler"])
            self.teachers_ready = bool(extra.get("teachers_ready", self.teachers_ready))
        else:
            self.ctx.logger.warning("%s has no prioritized board (not written by this search): the "
                                    "board starts empty", path)
        self.ctx.logger.info("resumed board: %d paths", len(self.board))

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
        ctx, opts = self.ctx, self.opts
        self.supernet.train()
        self.train_loader.set_epoch(epoch)
        num_batches = len(self.train_loader)
        num_updates = epoch * num_batches + skip_batches
        board_phase = epoch > opts.meta_start_epoch  # the board fills only after META_STA_EPOCH
        meters = EpochMeters(ctx, epoch, num_batches, SEARCH_METERS)
        entered = 0
        keep_for_validation = self.validation_batches(num_batches)

        for batch_idx, (images, targets) in meters.batches(self.train_loader, skip=skip_batches,
                                                           skipped=keep_for_validation):
            arch = self.sampler.sample(self.board)
            flops, params = self.path_cost(arch)
            distill = self._distilling(epoch) and bool(self.board.teachers_for(arch))
            meta_update = (distill and opts.meta_updates and batch_idx > 0
                           and batch_idx % opts.update_iter == 0)
            lr = self.optimizer.get_lr()
            step = search_step(self.parts, images, targets, arch, distill=distill,
                               meta_update=meta_update)
            num_updates += 1
            self.scheduler.step_update(num_updates)

            prec1, prec5 = accuracy(step.output, targets, topk=(1, 5))
            kd_value = step.kd_loss.detach() if step.kd_loss is not None else paddle.zeros([])
            # one reduction per step: every rank needs the same accuracy to make the same board decision
            stats = self.mean_over_ranks(paddle.stack([
                step.loss.detach().reshape([]).astype("float32"), prec1, prec5,
                kd_value.reshape([]).astype("float32")]))
            loss_value, prec1_value, prec5_value, kd_mean = stats.numpy().tolist()
            batch = images.shape[0]
            meters.update(batch, lr=lr, loss=loss_value, prec1=prec1_value, prec5=prec5_value,
                          kd_loss=kd_mean if step.kd_loss is not None else None, rho=step.rho,
                          meta_val_loss=step.meta.val_loss if step.meta is not None else None,
                          meta_grad_norm=step.meta.grad_norm if step.meta is not None else None)
            if board_phase and self.board.would_admit(prec1_value, flops, arch):
                s = opts.slice
                entered += self.board.consider(arch, prec1_value, flops, params, images[:s],
                                               softmax(step.output[:s], axis=-1))
            keep_for_validation(batch_idx, (images, targets))
            if meters.log_due(batch_idx):
                # the global rate is the student's; the meta groups' rates are multiples of it
                meters.log(batch_idx, lr=self.optimizer.get_lr(),
                           extra=f"Board: {len(self.board)}  Meta updates: {meters.counts['meta_val_loss']}  "
                                 f"Path: {arch[1:-1]} ({flops:.1f} MFLOPs)",
                           scalars={"train/board_size": len(self.board)})
            self.save_recovery_due(epoch, batch_idx, num_batches, meters)

        # the same keys every epoch (summary.csv has one header); NaN where nothing was measured
        means = meters.averages()
        return OrderedDict(
            loss=means["loss"], prec1=means["prec1"], prec5=means["prec5"], kd_loss=means["kd_loss"],
            rho=means["rho"], kd_steps=meters.counts["rho"], meta_updates=meters.counts["meta_val_loss"],
            meta_val_loss=means["meta_val_loss"], board_entered=entered, board_size=len(self.board))

    # ---- validation and export -------------------------------------------------------------
    def validate(self, epoch: int) -> Dict[str, float]:
        metrics = super().validate(epoch)
        if self.update_teachers_ready(metrics):  # every rank: all see the same metrics
            self.ctx.logger.info("the board's best path reached %.1f %% validation top-1 "
                                 "(SUPERNET.TEACHER_MIN_PREC1 %.1f): distillation starts",
                                 metrics["best_prec1"], self.opts.teacher_min_prec1)
        return metrics

    def validate_more(self, model: paddle.nn.Layer, prefix: str, metrics: Dict[str, float]) -> None:
        """The board's best path (NaN while the board is empty)."""
        best = self.board.best()
        result = (self.evaluate_path(model, best.arch, f"Test {prefix}board best") if best is not None
                  else {"prec1": float("nan"), "prec5": float("nan")})
        metrics[prefix + "best_prec1"] = result["prec1"]
        metrics[prefix + "best_prec5"] = result["prec5"]
        if not prefix:
            self.validated_best = (best.arch, result["prec1"]) if best is not None else None

    def epoch_note(self, eval_metrics: Dict[str, float]) -> str:
        return f", board best {eval_metrics['best_prec1']:.3f}" if len(self.board) else ""

    def board_json(self, epoch: int) -> Dict[str, Any]:
        """``board.json``: the board's paths best first, the best one within the FLOPs range (with
        its validation top-1 when it was validated), the range, the epoch, the resolution the
        FLOPs are counted at, and the validated random paths with their validation top-1."""
        board = dict(self.board.to_json(epoch), resolution=self.resolution)
        best = board["best_in_range"]
        if best is not None and self.validated_best is not None and best["arch"] == self.validated_best[0]:
            board["best_in_range"] = dict(best, val_prec1=float(self.validated_best[1]))  # paths[0] stays as it is
        board["validated"] = [{"arch": [list(s) for s in arch], "flops": self.path_cost(arch)[0],
                               "params": self.path_cost(arch)[1], "prec1": float(result["prec1"])}
                              for arch, result in self.validated]
        return board

    def after_epoch(self, epoch: int) -> None:
        write_board_file(self.ctx.run_dir, self.board_json(epoch))
        for i, entry in enumerate(self.board.entries):
            self.ctx.logger.info("Board No.%d  Prec@1 %.3f  %.2f MFLOPs  %.3f M params  %s", i, entry.prec1,
                                 entry.flops, entry.params, entry.arch)

    def result(self) -> Dict[str, Any]:
        return {"board": self.board_json(int(self.cfg.EPOCHS) - 1)}


def preflight(cfg) -> None:
    """The launcher's checks before starting the processes (see ``lib.engine``)."""
    check_data_splits(cfg)


def run(ctx: RunContext) -> Dict[str, Any]:
    """Search under the configured FLOPs budget; returns the best eval metric, the last epoch's
    train and eval metrics, the final board (``board.json``'s content) and per-epoch timings."""
    opts = SearchOptions.from_config(ctx.cfg)
    search = _Search(ctx, opts)
    log = ctx.logger
    log.info("search: PICK_METHOD %s, HOW_TO_PROB %s, distillation and board from epoch %d%s, meta updates %s",
             opts.pick_method, opts.how_to_prob, opts.meta_start_epoch + 1,
             f" (distillation once the board's best path validates at {opts.teacher_min_prec1:g} % top-1)"
             if opts.distills and opts.teacher_min_prec1 > 0 else "",
             f"every {opts.update_iter} steps" if opts.meta_updates else "off")
    result = run_supernet_training(search)
    best, evaluated = result["board"]["best_in_range"], result["eval"]
    if best is not None and evaluated:
        log.info("summary: the board's best path %s (%.1f MFLOPs at %d px, %.2f M params): validation "
                 "Prec@1 %.2f %%, random paths within the budget %.2f %% (mean of %d); retrain it with "
                 "tools/main.py retrain <config> NET.BOARD_JSON %s", best["arch"], best["flops"],
                 search.resolution, best["params"], evaluated["best_prec1"], evaluated["prec1"],
                 len(search.val_paths), os.path.join(ctx.run_dir, BOARD_FILE))
    return result
