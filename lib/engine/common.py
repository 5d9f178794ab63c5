"""What every engine (search, retrain, test) needs around its loop: devices and process group,
seeds, the run directory, logging, data loaders, the DataParallel wrapper, resume discovery.

Run directory: ``SAVE_PATH/<MODEL>``, a stable name so that ``AUTO_RESUME`` finds a killed run
again. With ``AUTO_RESUME`` on, an existing folder is reused (and the engines resume from the
checkpoints in it); with it off, an existing non-empty folder is left alone and the run gets the
first free numbered sibling ``<MODEL>-1``, ``<MODEL>-2``, ... (never overwriting earlier results).
The reference named folders ``<MMDD>-<MODEL>``, so a run resumed on another day lost its files.

Seeding: every rank seeds Python, NumPy and Paddle with ``SEED`` (identical model initialisation,
and identical host-side draws such as the search's path sampling, which all ranks must agree on).
:func:`seed_epoch` reseeds at the start of each epoch from ``(SEED, epoch)`` for the shared
generators and ``(SEED, epoch, rank)`` for Paddle's (dropout differs between ranks), so a run
resumed at an epoch boundary draws exactly what the uninterrupted run drew, on every rank, without
storing the generators' states. Data order and augmentation are seeded by the loader itself.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import numpy as np
import paddle
import paddle.distributed as dist
from yacs.config import CfgNode

from lib.config import ConfigError
from lib.engine import MODES
from pimm.data import DEFAULT_CROP_PCT, ImageDataset, create_loader
from pimm.layers.native import build_native_kernels
from pimm.models import CheckpointMismatchError, resume_checkpoint
from pimm.utils import (CheckpointSaver, atomic_write_text, available_cpus, init_distributed,
                        retain_freed_memory, seed_everything, set_num_threads, setup_logger)
from pimm.utils import unwrap_model as _unwrap_model

__all__ = [
    "RunContext",
    "device_type",
    "RunError",
    "prepare_run",
    "resolve_run_dir",
    "seed_epoch",
    "data_split_dir",
    "check_data_splits",
    "LoaderPolicy",
    "build_loaders",
    "wrap_model",
    "unwrap_model",
    "broadcast_buffers",
    "find_resume_checkpoint",
    "ResumePoint",
    "resume_training",
    "create_checkpoint_saver",
    "finish_run",
]


_DATA_HINT = (
    "Set DATA_DIR to a folder holding train/ and val/ with one sub-folder per class "
    "(data/README.md explains the ImageNet layout and how to sort the validation images; "
    "tools/make_demo_data.py writes a small synthetic one)"
)


class RunError(Exception):
    """A problem the user can fix (data, checkpoint, settings); tools/main.py prints the message
    as one line and exits non-zero, without a traceback."""


@dataclass
class RunContext:
    """One process's view of a run. ``writer`` (tensorboardX) exists on the primary rank only;
    ``run_dir`` is the same path on every rank (files are written by the primary rank only)."""

    cfg: CfgNode
    mode: str
    run_dir: str
    logger: logging.Logger
    writer: Any
    rank: int
    world_size: int
    distributed: bool
    device: str = "cpu"

    @property
    def is_primary(self) -> bool:
        return self.rank == 0


# ---- devices, threads, seeds -------------------------------------------------------------------
def _select_device() -> str:
    if paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        # the launcher gives each process its GPU through FLAGS_selected_gpus; ParallelEnv reads it
        device = f"gpu:{dist.ParallelEnv().device_id}"
    else:
        device = "cpu"
    paddle.set_device(device)
    return device


def device_type() -> str:
    """'gpu' or 'cpu': the kind of Paddle's current device."""
    return "gpu" if paddle.device.get_device().startswith("gpu") else "cpu"


def _threads_per_process() -> int:
    # ranks sharing a machine share its cores; Paddle would otherwise give each one thread
    local_ranks = int(os.environ.get("PADDLE_LOCAL_SIZE", "1") or 1)
    return max(1, available_cpus() // max(1, local_ranks))


def _seed_from(*entropy: int) -> int:
    return int(np.random.SeedSequence([int(e) for e in entropy]).generate_state(1)[0])


def seed_epoch(ctx: RunContext, epoch: int) -> None:
    """Reseed for ``epoch``: Python/NumPy from (SEED, epoch), the same on every rank; Paddle from
    (SEED, epoch, rank), so dropout masks differ between ranks. See the module docstring."""
    seed = int(ctx.cfg.SEED)
    seed_everything(_seed_from(seed, epoch))
    paddle.seed(_seed_from(seed, epoch, ctx.rank))


# ---- run directory -----------------------------------------------------------------------------
def _is_empty_dir(path: str) -> bool:
    return os.path.isdir(path) and not os.listdir(path)


def resolve_run_dir(cfg: CfgNode) -> str:
    """The run's folder (created): ``SAVE_PATH/MODEL``, reused with AUTO_RESUME, otherwise that
    folder when new or empty, else the first free ``SAVE_PATH/MODEL-<n>``."""
    name = str(cfg.MODEL).strip()
    if not name or os.sep in name or name in (".", ".."):
        raise ConfigError(f"MODEL={cfg.MODEL!r} names the run folder under SAVE_PATH: use a plain "
                          "name such as '14m_retrain'")
    base = os.path.join(str(cfg.SAVE_PATH), name)
    if os.path.exists(base) and not os.path.isdir(base):
        raise ConfigError(f"run folder {base} exists and is not a folder: change MODEL or "
                          "SAVE_PATH")
    candidate, count = base, 0
    if not cfg.AUTO_RESUME:
        while os.path.exists(candidate) and not _is_empty_dir(candidate):
            count += 1
            candidate = f"{base}-{count}"
    try:
        os.makedirs(candidate, exist_ok=True)
    except OSError as err:
        raise RunError(f"cannot create the run folder {candidate}: {err.strerror}; set SAVE_PATH "
                       "to a writable folder") from err
    return candidate


def _broadcast_from_primary(value: Any, distributed: bool) -> Any:
    if not distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _check_distributed_settings(cfg: CfgNode, distributed: bool, device: str) -> None:
    if cfg.BATCHNORM.SYNC_BN and distributed and not device.startswith("gpu"):
        raise ConfigError("BATCHNORM.SYNC_BN needs GPUs: Paddle has no CPU kernel for synchronized "
                          "batch norm. Set BATCHNORM.SYNC_BN False for CPU runs")


def _create_writer(run_dir: str):
    from tensorboardX import SummaryWriter

    return SummaryWriter(logdir=os.path.join(run_dir, "runs"))


def prepare_run(cfg: CfgNode, mode: str) -> RunContext:
    """Set up this process for ``mode`` (one of ``lib.engine.MODES``): device, process group (when
    launched with several processes), threads, seeds, run folder with ``config.yaml``, logger
    (console, plus ``<mode>.log`` on the primary rank), tensorboardX writer (primary rank) and,
    on CPU, pimm's native kernels (``pimm.layers.native``)."""
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    device = _select_device()
    rank, world_size = init_distributed()
    distributed = world_size > 1
    _check_distributed_settings(cfg, distributed, device)
    threads = set_num_threads(_threads_per_process())
    if device == "cpu":
        retain_freed_memory()  # else CPU ops page-fault every new tensor in (pimm.utils.runtime)
    seed_everything(int(cfg.SEED))

    run_dir = resolve_run_dir(cfg) if rank == 0 else None
    run_dir = _broadcast_from_primary(run_dir, distributed)
    log_file = os.path.join(run_dir, f"{mode}.log")
    for library in ("pimm", "lib"):  # their module loggers (checkpoint saver, EMA, ...) too
        setup_logger(library, log_file, rank=rank)
    logger = setup_logger("cream", log_file, rank=rank)
    writer = None
    if rank == 0:
        atomic_write_text(cfg.dump(), os.path.join(run_dir, "config.yaml"))
        writer = _create_writer(run_dir)
        logger.info("%s run in %s: %d process(es) on %s, %d CPU thread(s) each, Paddle %s",
                    mode, run_dir, world_size, device, threads, paddle.__version__)
    if device == "cpu":  # pimm's depthwise kernel, several times faster than Paddle's; logs how
        build_native_kernels(logger)
    return RunContext(cfg=cfg, mode=mode, run_dir=run_dir, logger=logger, writer=writer,
                      rank=rank, world_size=world_size, distributed=distributed, device=device)


def finish_run(ctx: RunContext) -> None:
    """Flush and close what :func:`prepare_run` opened."""
    if ctx.writer is not None:
        ctx.writer.close()
        ctx.writer = None
    for handler in ctx.logger.handlers:
        handler.flush()


# ---- data --------------------------------------------------------------------------------------
def check_data_splits(cfg: CfgNode, splits: Sequence[str] = ("train", "val")) -> None:
    """Raise RunError with the fix unless every ``DATA_DIR/<split>`` folder exists."""
    for split in splits:
        data_split_dir(cfg, split)


def data_split_dir(cfg: CfgNode, split: str) -> str:
    """``DATA_DIR/<split>``; raises RunError with the fix when the folder is missing."""
    root = os.path.join(str(cfg.DATA_DIR), split)
    if not os.path.isdir(root):
        raise RunError(f"DATA_DIR/{split} not found: {root} does not exist. {_DATA_HINT}")
    return root


def _open_split(cfg: CfgNode, split: str) -> ImageDataset:
    root = data_split_dir(cfg, split)
    try:
        dataset = ImageDataset(root)
    except (FileNotFoundError, ValueError) as err:
        raise RunError(f"DATA_DIR/{split} ({root}) is not usable: {err}") from err
    num_classes = int(cfg.DATASET.NUM_CLASSES)
    if len(dataset.class_to_idx) > num_classes:
        raise RunError(f"{root} has {len(dataset.class_to_idx)} class folders but "
                       f"DATASET.NUM_CLASSES is {num_classes}: set DATASET.NUM_CLASSES to the "
                       "number of classes of your data")
    return dataset


@dataclass(frozen=True)
class LoaderPolicy:
    """What an engine decides about its loaders beyond the config's DATASET/AUGMENTATION keys:
    ``auto_augment``, the RandAugment spec of training images (None: none), and the resampling of
    the evaluation resize."""

    auto_augment: Optional[str] = None
    eval_interpolation: str = "bilinear"


def build_loaders(cfg: CfgNode, ctx: Optional[RunContext], image_size: int, *, policy: LoaderPolicy,
                  train: bool = True, eval: bool = True) -> Tuple[Optional[Any], Optional[Any]]:
    """``(train_loader, eval_loader)`` over ``DATA_DIR/train`` and ``DATA_DIR/val`` (None for a
    split not asked for), sharded over the ranks of ``ctx`` when distributed (``ctx`` None: one
    process on Paddle's current device).

    Training: random-resized crop keeping an ``AUGMENTATION.SCALE`` area, random interpolation,
    flip, colour jitter (``AUGMENTATION.COLOR_JITTER``), ``policy.auto_augment``, random erasing
    ``RE_PROB``/``RE_MODE``. Evaluation: resize to ``image_size / 0.875`` with
    ``policy.eval_interpolation`` and centre crop, batches of ``VAL_BATCH_MUL x BATCH_SIZE``.
    Validation labels follow the training classes when both are loaded.
    """
    batch_size = int(cfg.DATASET.BATCH_SIZE)
    if batch_size < 1:
        raise ConfigError(f"DATASET.BATCH_SIZE must be >= 1, got {batch_size}")
    aug = cfg.AUGMENTATION
    distributed, world_size, rank = (ctx.distributed, ctx.world_size, ctx.rank) if ctx else (False, 1, 0)
    device = ctx.device if ctx else paddle.device.get_device()
    common = dict(input_size=(3, image_size, image_size), num_workers=int(cfg.WORKERS),
                  distributed=distributed, num_replicas=world_size, rank=rank,
                  pin_memory=bool(cfg.DATASET.PIN_MEM) and device.startswith("gpu"),
                  crop_pct=DEFAULT_CROP_PCT, seed=int(cfg.SEED))
    train_loader = eval_loader = None
    train_set = None
    if train:
        train_set = _open_split(cfg, "train")
        train_loader = create_loader(
            train_set, batch_size=batch_size, is_training=True,
            color_jitter=float(aug.COLOR_JITTER), auto_augment=policy.auto_augment,
            interpolation="random", re_prob=float(aug.RE_PROB), re_mode=str(aug.RE_MODE),
            scale=tuple(float(v) for v in aug.SCALE),
            **common)
    if eval:
        eval_set = _open_split(cfg, "val")
        if train_set is not None and eval_set.class_to_idx != train_set.class_to_idx:
            unknown = sorted(set(eval_set.class_to_idx) - set(train_set.class_to_idx))
            if unknown:
                raise RunError(f"DATA_DIR/val has class folders that DATA_DIR/train lacks: "
                               f"{unknown[:5]}. Both splits need the same class folder names")
            eval_set = ImageDataset(eval_set.root, class_to_idx=train_set.class_to_idx)
        eval_loader = create_loader(
            eval_set, batch_size=int(cfg.DATASET.VAL_BATCH_MUL) * batch_size, is_training=False,
            interpolation=policy.eval_interpolation, **common)
    return train_loader, eval_loader


# ---- models ------------------------------------------------------------------------------------
def wrap_model(model: paddle.nn.Layer, ctx: RunContext) -> paddle.nn.Layer:
    """``paddle.DataParallel`` (synchronised batch norm first with ``BATCHNORM.SYNC_BN``) when
    distributed; the model itself otherwise. Create the EMA copy before wrapping."""
    if not ctx.distributed:
        return model
    if ctx.cfg.BATCHNORM.SYNC_BN:
        model = paddle.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ctx.logger.info("converted batch norm layers to SyncBatchNorm")
    # DataParallel broadcasts rank 0's parameters and buffers, so all ranks start identical
    return paddle.DataParallel(model)


def unwrap_model(model: Any) -> paddle.nn.Layer:
    """The plain model inside a DataParallel wrapper (or a ModelEma's average)."""
    return _unwrap_model(model)


def broadcast_buffers(model: Any, ctx: RunContext) -> None:
    """Give every rank rank 0's buffers (batch-norm running statistics): DataParallel keeps the
    parameters in step, but each rank updates its statistics from its own shard. Call it before
    evaluating or saving, so all ranks hold the model rank 0 writes."""
    if not ctx.distributed:
        return
    # Paddle keeps BN statistics as parameters that stop gradients, not as buffers
    for tensor in unwrap_model(model).state_dict().values():
        if tensor.stop_gradient:
            dist.broadcast(tensor, src=0)


# ---- resume ------------------------------------------------------------------------------------
def find_resume_checkpoint(ctx: RunContext, extension: str = ".pdparams") -> Optional[str]:
    """The checkpoint to continue from, or None for a fresh start (always None without
    ``AUTO_RESUME``).

    Looks in the run folder first (``CheckpointSaver.resume_file``: the last epoch's checkpoint,
    or the newest recovery file when it belongs to a later epoch). Without either,
    ``RESUME_PATH`` when that file exists (the reference's meaning of AUTO_RESUME). The primary
    rank decides and tells the others, so all ranks resume from the same file (which they must be
    able to read: keep SAVE_PATH on storage every machine sees).
    """
    if not ctx.cfg.AUTO_RESUME:
        return None
    path = _resume_candidate(ctx, extension) if ctx.is_primary else None
    return _broadcast_from_primary(path, ctx.distributed)


def _resume_candidate(ctx: RunContext, extension: str) -> Optional[str]:
    cfg = ctx.cfg
    try:
        in_run_dir = CheckpointSaver.resume_file(ctx.run_dir, extension)
    except ValueError as err:  # last's epoch was unreadable or refused: the message a resume gives
        last = CheckpointSaver.last_file(ctx.run_dir, extension)
        raise RunError(f"cannot resume from {last}: {err}") from err
    if in_run_dir is not None:
        return in_run_dir
    resume_path = str(cfg.RESUME_PATH or "")
    if resume_path and os.path.isfile(resume_path):
        return resume_path
    if resume_path:
        ctx.logger.info("AUTO_RESUME: nothing to resume in %s and no file at RESUME_PATH=%s; "
                        "starting from scratch", ctx.run_dir, resume_path)
    return None


def create_checkpoint_saver(ctx: RunContext, model: paddle.nn.Layer, optimizer: Any,
                            **kwargs: Any) -> CheckpointSaver:
    """The run folder's checkpoints: ``last``, ``model_best`` and the ``CHECKPOINT_HIST`` best
    epochs by ``EVAL_METRICS`` (lower is better for a loss). ``kwargs`` go to ``CheckpointSaver``
    (``model_ema``, ``scheduler``, ``arch``). Create it on the primary rank only."""
    keep = int(ctx.cfg.CHECKPOINT_HIST)
    if keep < 1:
        raise ConfigError(f"CHECKPOINT_HIST must be >= 1 (the best epochs kept besides last.pdparams), "
                          f"got {keep}")
    return CheckpointSaver(model, optimizer, args=ctx.cfg, checkpoint_dir=ctx.run_dir,
                           recovery_dir=ctx.run_dir, max_history=keep,
                           decreasing=str(ctx.cfg.EVAL_METRICS).endswith("loss"), **kwargs)


@dataclass
class ResumePoint:
    """Where a resumed run continues: ``start_epoch``, ``skip_batches`` of it already trained (from
    a mid-epoch recovery point), the checkpoint ``path`` and its ``extra`` state; a fresh start
    has ``path`` None."""

    start_epoch: int = 0
    skip_batches: int = 0
    path: Optional[str] = None
    extra: Optional[dict] = None


def resume_training(ctx: RunContext, model: paddle.nn.Layer, optimizer: Any, scheduler: Any,
                    model_ema: Any, what: str, same_run_hint: str = "") -> ResumePoint:
    """Load the checkpoint ``find_resume_checkpoint`` picks into the model, optimizer, scheduler
    and EMA. A checkpoint of another ``what`` (e.g. "network") raises a RunError that says to use
    the config of the run that wrote it (``same_run_hint`` names what must match)."""
    path = find_resume_checkpoint(ctx)
    if path is None:
        return ResumePoint()
    try:
        state = resume_checkpoint(unwrap_model(model), path, optimizer=optimizer,
                                  scheduler=scheduler,
                                  ema_model=model_ema.ema if model_ema is not None else None)
    except CheckpointMismatchError as err:
        raise RunError(f"cannot resume from {path}: it holds another {what} "
                       f"({str(err).splitlines()[0]}). Use the config of the run that wrote it"
                       f"{same_run_hint}, or AUTO_RESUME False") from err
    except (ValueError, TypeError) as err:
        raise RunError(f"cannot resume from {path}: {err}") from err
    start_epoch = state.start_epoch or 0
    skip = 0
    if "batch_idx" in state.extra:
        # a mid-epoch recovery point: finish that epoch, skipping the batches it had trained on
        start_epoch -= 1
        skip = int(state.extra["batch_idx"]) + 1
    ctx.logger.info("resumed from %s: epoch %d%s", path, start_epoch,
                    f", batch {skip}" if skip else "")
    return ResumePoint(start_epoch, skip, path, dict(state.extra))

