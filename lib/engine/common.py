"""What every engine (search, retrain, test) needs around its loop: devices and process group,
seeds, the run directory, logging, data loaders, the DataParallel wrapper, resume discovery.

Run directory: ``SAVE_PATH/<MODEL>``, a stable name so that ``AUTO_RESUME`` finds a killed run
again. With ``AUTO_RESUME`` on, an existing folder is reused (and the engines resume from the
checkpoints in it); with it off, an existing non-empty folder is left alone and the run gets the
first free numbered sibling ``<MODEL>-1``, ``<MODEL>-2``, ... (never overwriting earlier results).
The reference named folders ``<MMDD>-<MODEL>``, so a run resumed on another day lost its files.
The primary rank locks the folder for the run's lifetime (``pimm.utils.RunLock``: released by the
kernel when the process dies), so a second run into it stops at once with the holder's name.
``config.yaml`` is the record of the run that wrote the folder's files: it is written when the
folder has none, and otherwise only once the engine has accepted the folder's checkpoint
(:func:`record_config`), so a rejected config never overwrites it.

Seeding: every rank seeds Python, NumPy and Paddle with ``SEED`` (identical model initialisation,
and identical host-side draws such as the search's path sampling, which all ranks must agree on).
:func:`seed_epoch` reseeds at the start of each epoch from ``(SEED, epoch)`` for the shared
generators and ``(SEED, epoch, rank)`` for Paddle's (dropout differs between ranks), so a run
resumed at an epoch boundary draws exactly what the uninterrupted run drew, on every rank, without
storing the generators' states. Data order and augmentation are seeded by the loader itself.
"""
from __future__ import annotations

import copy
import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, TypeVar

import numpy as np
import paddle
import paddle.distributed as dist
from yacs.config import CfgNode

from lib.config import ConfigError
from lib.engine import MODES
from pimm.data import CIFAR10, CifarFormatError, ImageDataset, PixelNormalization, create_loader
from pimm.data.transforms import pil_interpolation
from pimm.layers import convert_sync_batchnorm
from pimm.layers.native import build_native_kernels
from pimm.models import CheckpointMismatchError, resume_checkpoint
from pimm.utils import (CheckpointSaver, RunFolderBusyError, RunLock, atomic_write_text,
                        available_cpus, init_distributed, remove_stale_temp_files,
                        retain_freed_memory, seed_everything, select_mkl_kernels, set_num_threads,
                        setup_logger)
from pimm.utils import unwrap_model as _unwrap_model
from pimm.utils.amp import Amp, check_amp, parse_amp_level

__all__ = [
    "RunContext",
    "device_type",
    "from_config",
    "RunError",
    "prepare_run",
    "record_config",
    "resolve_run_dir",
    "seed_epoch",
    "DATASET_NAMES",
    "dataset_name",
    "data_split_dir",
    "check_data_splits",
    "open_split",
    "dataset_subset",
    "pixel_normalization",
    "LoaderPolicy",
    "create_split_loader",
    "build_loaders",
    "skipped_images",
    "gradient_clip",
    "wrap_model",
    "unwrap_model",
    "broadcast_buffers",
    "check_replicas",
    "checkpoint_named_by",
    "find_resume_checkpoint",
    "ResumePoint",
    "resume_training",
    "create_checkpoint_saver",
    "finish_run",
    "create_amp",
    "amp_extra_state",
    "resume_amp",
]


_DATA_HINT = (
    "Set DATA_DIR to a folder holding train/ and val/ with one sub-folder per class "
    "(data/README.md explains the ImageNet layout and how to sort the validation images; "
    "tools/make_demo_data.py writes a small synthetic one)"
)


class RunError(Exception):
    """A problem the user can fix (data, checkpoint, settings); tools/main.py prints the message
    as one line and exits non-zero, without a traceback."""


T = TypeVar("T")


def from_config(factory: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``factory(*args, **kwargs)`` for pimm's config-driven factories (``create_optimizer``,
    ``create_scheduler``): the ValueError they raise for an unknown ``OPT``/``SCHED`` or a bad
    value names the key and its choices, so it becomes a ConfigError (one ``error:`` line)."""
    try:
        return factory(*args, **kwargs)
    except ValueError as err:
        raise ConfigError(str(err)) from err


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
    lock: Optional[RunLock] = None  # the run folder's lock, on the primary rank

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


_TRAINING_MODES = ("train", "retrain")  # the modes whose loops read AMP and BATCHNORM.SYNC_BN


def _check_device_settings(cfg: CfgNode, device: str) -> None:
    if cfg.BATCHNORM.SYNC_BN and not device.startswith("gpu"):
        raise ConfigError("BATCHNORM.SYNC_BN needs GPUs: Paddle has no CPU kernel for synchronized "
                          "batch norm. Set BATCHNORM.SYNC_BN False for CPU runs")
    create_amp(cfg, device)  # raises ConfigError for AMP levels the device cannot run


def create_amp(cfg: CfgNode, device: str) -> Amp:
    """The training loop's mixed precision from ``AMP`` and ``AMP_DTYPE`` (``pimm.utils.amp``);
    a ConfigError names the key when the setting is invalid or the device cannot run it."""
    try:
        level = parse_amp_level(cfg.AMP)
        check_amp(level, str(cfg.AMP_DTYPE), device)
    except ValueError as err:
        raise ConfigError(f"{err} (keys AMP, AMP_DTYPE)") from None
    return Amp(level, str(cfg.AMP_DTYPE))


def _create_writer(run_dir: str):
    from tensorboardX import SummaryWriter

    return SummaryWriter(logdir=os.path.join(run_dir, "runs"))


def prepare_run(cfg: CfgNode, mode: str) -> RunContext:
    """Set up this process for ``mode`` (one of ``lib.engine.MODES``): device, process group (when
    launched with several processes), threads, seeds, run folder (locked, with ``config.yaml``
    when it has none), logger (console, plus ``<mode>.log`` on the primary rank), tensorboardX
    writer (primary rank) and, on CPU, pimm's native kernels (``pimm.layers.native``). A folder
    another run holds is a RunError on every rank."""
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    device = _select_device()
    rank, world_size = init_distributed()
    distributed = world_size > 1
    if mode in _TRAINING_MODES:  # a GPU recipe's AMP and SYNC_BN still test and search on CPU
        _check_device_settings(cfg, device)
    threads = set_num_threads(_threads_per_process())
    if device == "cpu":  # pimm.utils.runtime: both make CPU steps several times faster
        retain_freed_memory()  # else CPU ops page-fault every new tensor in
        select_mkl_kernels()  # MKL's AVX2 GEMMs on AMD CPUs, before the first matrix product
    seed_everything(int(cfg.SEED))

    run_dir, lock, problem = None, None, None
    if rank == 0:
        run_dir = resolve_run_dir(cfg)
        try:
            lock = RunLock(run_dir).acquire(f"{mode}, {world_size} process(es)")
        except RunFolderBusyError as err:
            problem = (f"{err}: wait for it to end or stop it, or give this run another MODEL "
                       "or SAVE_PATH")
    run_dir, problem = _broadcast_from_primary((run_dir, problem), distributed)
    if problem is not None:  # every rank stops, not only the primary
        raise RunError(problem)
    log_file = os.path.join(run_dir, f"{mode}.log")
    for library in ("pimm", "lib"):  # their module loggers (checkpoint saver, EMA, ...) too
        setup_logger(library, log_file, rank=rank)
    logger = setup_logger("cream", log_file, rank=rank)
    ctx = RunContext(cfg=cfg, mode=mode, run_dir=run_dir, logger=logger, writer=None,
                     rank=rank, world_size=world_size, distributed=distributed, device=device,
                     lock=lock)
    if rank == 0:
        # temporaries of files a killed run was writing (the lock says no one writes them now)
        remove_stale_temp_files(run_dir, [".+"])
        if not os.path.exists(_config_file(ctx)):
            record_config(ctx)
        ctx.writer = _create_writer(run_dir)
        logger.info("%s run in %s: %d process(es) on %s, %d CPU thread(s) each, Paddle %s",
                    mode, run_dir, world_size, device, threads, paddle.__version__)
    if device == "cpu":  # pimm's depthwise kernel, several times faster than Paddle's; logs how
        build_native_kernels(logger)
    return ctx


def _config_file(ctx: RunContext) -> str:
    return os.path.join(ctx.run_dir, "config.yaml")


def record_config(ctx: RunContext) -> None:
    """Write the run's config into ``config.yaml`` (primary rank). Engines call it once they have
    accepted what the run folder holds (:func:`resume_training` does), so a config the folder's
    checkpoint refuses leaves the record of the run that wrote it in place."""
    if ctx.is_primary:
        atomic_write_text(ctx.cfg.dump(), _config_file(ctx))


def finish_run(ctx: RunContext) -> None:
    """Flush and close what :func:`prepare_run` opened, and unlock the run folder."""
    if ctx.writer is not None:
        ctx.writer.close()
        ctx.writer = None
    for handler in ctx.logger.handlers:
        handler.flush()
    if ctx.lock is not None:
        ctx.lock.release()


# ---- data --------------------------------------------------------------------------------------
#: DATASET.NAME: what DATA_DIR holds
DATASET_NAMES = ("folder", "cifar10")
_CIFAR_SPLITS = {"train": True, "val": False}  # val is CIFAR-10's test_batch, as the DARTS papers


def dataset_name(cfg: CfgNode) -> str:
    """``DATASET.NAME``, checked."""
    name = str(cfg.DATASET.NAME)
    if name not in DATASET_NAMES:
        raise ConfigError(f"DATASET.NAME {name!r} is unknown; choose one of {', '.join(DATASET_NAMES)} "
                          "('folder': DATA_DIR/train and DATA_DIR/val class folders; 'cifar10': "
                          "CIFAR-10's python batches in DATA_DIR)")
    return name


def check_data_splits(cfg: CfgNode, splits: Sequence[str] = ("train", "val")) -> None:
    """Raise RunError with the fix unless every split of DATA_DIR is there (folders for
    'folder', the batch files for 'cifar10')."""
    for split in splits:
        if dataset_name(cfg) == "folder":
            data_split_dir(cfg, split)
        else:
            open_split(cfg, split)


def data_split_dir(cfg: CfgNode, split: str) -> str:
    """``DATA_DIR/<split>``; raises RunError with the fix when the folder is missing."""
    root = os.path.join(str(cfg.DATA_DIR), split)
    if not os.path.isdir(root):
        raise RunError(f"DATA_DIR/{split} not found: {root} does not exist. {_DATA_HINT}")
    return root


def _open_folder(cfg: CfgNode, split: str) -> ImageDataset:
    root = data_split_dir(cfg, split)
    try:
        return ImageDataset(root)
    except (FileNotFoundError, ValueError) as err:
        raise RunError(f"DATA_DIR/{split} ({root}) is not usable: {err}") from err


def _open_cifar(cfg: CfgNode, split: str) -> CIFAR10:
    if split not in _CIFAR_SPLITS:
        raise ConfigError(f"DATASET.NAME cifar10 has the splits {', '.join(_CIFAR_SPLITS)}, not {split!r}")
    try:
        return CIFAR10(str(cfg.DATA_DIR), train=_CIFAR_SPLITS[split])
    except (FileNotFoundError, CifarFormatError) as err:
        raise RunError(f"DATA_DIR ({cfg.DATA_DIR}) has no usable CIFAR-10 {split} split: {err}. "
                       "Set DATA_DIR to the extracted cifar-10-batches-py folder (tools/make_demo_data.py "
                       "--cifar writes a small synthetic one), or DATASET.NAME folder for class "
                       "folders") from err


def open_split(cfg: CfgNode, split: str) -> Any:
    """The dataset of ``split`` ('train' or 'val') of DATA_DIR as ``DATASET.NAME`` says, checked
    against ``DATASET.NUM_CLASSES``."""
    dataset = _open_cifar(cfg, split) if dataset_name(cfg) == "cifar10" else _open_folder(cfg, split)
    num_classes = int(cfg.DATASET.NUM_CLASSES)
    if len(dataset.classes) > num_classes:
        where, what = ((dataset.root, "class folders") if isinstance(dataset, ImageDataset)
                       else (f"DATA_DIR/{split}", "classes"))
        raise RunError(f"{where} has {len(dataset.classes)} {what} but DATASET.NUM_CLASSES is "
                       f"{num_classes}: set DATASET.NUM_CLASSES to the number of classes of your data")
    return dataset


def dataset_subset(dataset: Any, indices: Sequence[int]) -> Any:
    """A copy of a dataset from :func:`open_split` with the samples at ``indices`` only, in that
    order (with a ``transform`` of its own, which its loader sets)."""
    part = copy.copy(dataset)
    indices = list(indices)
    if isinstance(dataset, CIFAR10):
        part.images, part.labels = dataset.images[indices], dataset.labels[indices]
    else:
        part.samples = [dataset.samples[i] for i in indices]
    return part


def pixel_normalization(cfg: CfgNode) -> Dict[str, Any]:
    """The loader's ``mean``, ``std``, ``max_pixel_value`` and ``color_order`` from the DATASET
    keys (checked: a bad value is a ConfigError naming the key)."""
    d = cfg.DATASET
    options = dict(mean=tuple(float(v) for v in d.MEAN), std=tuple(float(v) for v in d.STD),
                   max_pixel_value=float(d.MAX_PIXEL_VALUE), color_order=str(d.COLOR_ORDER))
    if len(options["mean"]) != 3 or len(options["std"]) != 3 or min(options["std"]) <= 0:
        raise ConfigError(f"DATASET.MEAN and DATASET.STD need three values each (RGB order), STD "
                          f"positive; got {list(d.MEAN)} and {list(d.STD)}")
    try:
        PixelNormalization(**options)
    except ValueError as err:
        raise ConfigError(f"DATASET.MAX_PIXEL_VALUE / DATASET.COLOR_ORDER: {err}") from None
    return options
def _check_resampling(cfg: CfgNode, policy: "LoaderPolicy") -> None:
    """ConfigError naming the key for a crop fraction or resampling the transforms cannot use."""
    crop_pct = float(cfg.DATASET.CROP_PCT)
    if not 0.0 < crop_pct <= 1.0:
        raise ConfigError(f"DATASET.CROP_PCT must be in (0, 1] (the centre crop's share of the "
                          f"resized side, e.g. 0.875 = 224 / 256), got {crop_pct}")
    for key, name in (("DATASET.TRAIN_INTERPOLATION", str(cfg.DATASET.TRAIN_INTERPOLATION)),
                      (policy.eval_interpolation_key, policy.eval_interpolation)):
        if name != "random":
            try:
                pil_interpolation(name)
            except ValueError as err:
                raise ConfigError(f"{key}: {err}") from None


@dataclass(frozen=True)
class LoaderPolicy:
    """What an engine decides about its loaders beyond the config's DATASET/AUGMENTATION keys:
    ``auto_augment``, the RandAugment spec of training images (None: none), and the resampling of
    the evaluation resize with the config key it came from (named by errors)."""

    auto_augment: Optional[str] = None
    eval_interpolation: str = "bilinear"
    eval_interpolation_key: str = "DATASET.EVAL_INTERPOLATION"


def create_split_loader(cfg: CfgNode, ctx: Optional[RunContext], dataset: Any, image_size: int, *,
                        training: bool, policy: LoaderPolicy, batch_size: Optional[int] = None) -> Any:
    """A loader over ``dataset`` (from :func:`open_split`) with the training or evaluation
    transforms of its kind, sharded over the ranks of ``ctx`` when distributed (``ctx`` None: one
    process on Paddle's current device); see :func:`build_loaders`. ``batch_size`` defaults to
    ``DATASET.BATCH_SIZE`` for training and ``VAL_BATCH_MUL`` times it for evaluation."""
    if batch_size is None:
        batch_size = int(cfg.DATASET.BATCH_SIZE) * (1 if training else int(cfg.DATASET.VAL_BATCH_MUL))
    aug = cfg.AUGMENTATION
    distributed, world_size, rank = (ctx.distributed, ctx.world_size, ctx.rank) if ctx else (False, 1, 0)
    device = ctx.device if ctx else paddle.device.get_device()
    common = dict(input_size=(3, image_size, image_size), batch_size=batch_size, is_training=training,
                  num_workers=int(cfg.WORKERS), distributed=distributed, num_replicas=world_size,
                  rank=rank, pin_memory=bool(cfg.DATASET.PIN_MEM) and device.startswith("gpu"),
                  seed=int(cfg.SEED), max_bad_fraction=float(cfg.DATASET.MAX_BAD_IMAGE_FRACTION),
                  bad_images_setting="DATASET.MAX_BAD_IMAGE_FRACTION", **pixel_normalization(cfg))
    if isinstance(dataset, CIFAR10):
        if image_size != 32:
            raise ConfigError(f"CIFAR-10 images are 32 px: set DATASET.IMAGE_SIZE 32 (got {image_size})")
        return create_loader(dataset, pipeline="cifar", **common,
                             cutout_length=int(aug.CUTOUT_LENGTH) if training else 0)
    if int(aug.CUTOUT_LENGTH):
        raise ConfigError("AUGMENTATION.CUTOUT_LENGTH applies to DATASET.NAME cifar10; for class folders "
                          "use random erasing (AUGMENTATION.RE_PROB) and set CUTOUT_LENGTH 0")
    _check_resampling(cfg, policy)
    crop_pct = float(cfg.DATASET.CROP_PCT)
    if training:
        return create_loader(dataset, color_jitter=float(aug.COLOR_JITTER), auto_augment=policy.auto_augment,
                             interpolation=str(cfg.DATASET.TRAIN_INTERPOLATION), re_prob=float(aug.RE_PROB),
                             re_mode=str(aug.RE_MODE), scale=tuple(float(v) for v in aug.SCALE),
                             crop_pct=crop_pct, **common)
    return create_loader(dataset, interpolation=policy.eval_interpolation, crop_pct=crop_pct, **common)


def build_loaders(cfg: CfgNode, ctx: Optional[RunContext], image_size: int, *, policy: LoaderPolicy,
                  train: bool = True, eval: bool = True,
                  eval_split: str = "val") -> Tuple[Optional[Any], Optional[Any]]:
    """``(train_loader, eval_loader)`` over the train split of DATA_DIR and its ``eval_split``
    (None for a split not asked for), sharded over the ranks of ``ctx`` when distributed (``ctx``
    None: one process on Paddle's current device). Pixels become input as the DATASET keys MEAN,
    STD, MAX_PIXEL_VALUE and COLOR_ORDER say (:func:`pixel_normalization`).

    Class folders (``DATASET.NAME`` 'folder'): training is a random-resized crop keeping an
    ``AUGMENTATION.SCALE`` area, resampled with ``DATASET.TRAIN_INTERPOLATION``, flip, colour jitter
    (``AUGMENTATION.COLOR_JITTER``), ``policy.auto_augment``, random erasing ``RE_PROB``/``RE_MODE``;
    evaluation resizes to ``image_size / DATASET.CROP_PCT`` with ``policy.eval_interpolation`` and
    crops the centre. Validation labels follow the training classes when both are loaded. CIFAR-10
    ('cifar10'): training is a random crop with 4 pixels of padding, flip and Cutout of
    ``AUGMENTATION.CUTOUT_LENGTH``; evaluation only normalises. Evaluation batches hold
    ``VAL_BATCH_MUL x BATCH_SIZE`` images. Unreadable images are skipped up to
    ``DATASET.MAX_BAD_IMAGE_FRACTION`` (``pimm.data.loader``; count them with :func:`skipped_images`).
    """
    if int(cfg.DATASET.BATCH_SIZE) < 1:
        raise ConfigError(f"DATASET.BATCH_SIZE must be >= 1, got {cfg.DATASET.BATCH_SIZE}")
    train_loader = eval_loader = None
    train_set = None
    if train:
        train_set = open_split(cfg, "train")
        train_loader = create_split_loader(cfg, ctx, train_set, image_size, training=True, policy=policy)
    if eval:
        eval_set = open_split(cfg, eval_split)
        if isinstance(train_set, ImageDataset) and eval_set.class_to_idx != train_set.class_to_idx:
            unknown = sorted(set(eval_set.class_to_idx) - set(train_set.class_to_idx))
            if unknown:
                raise RunError(f"DATA_DIR/{eval_split} has class folders that DATA_DIR/train lacks: "
                               f"{unknown[:5]}. Both splits need the same class folder names")
            eval_set = ImageDataset(eval_set.root, class_to_idx=train_set.class_to_idx)
        eval_loader = create_split_loader(cfg, ctx, eval_set, image_size, training=False, policy=policy)
    return train_loader, eval_loader


def skipped_images(loader: Any, ctx: RunContext, what: str) -> int:
    """Unreadable images the last pass over ``loader`` skipped, summed over the ranks (a
    collective: call it on every rank) and logged as a warning when there are any; ``what``
    names the pass in that line, e.g. "epoch 3"."""
    count = int(loader.skipped_in_epoch)
    if ctx.distributed:
        total = paddle.to_tensor([count], dtype="int64")
        dist.all_reduce(total)
        count = int(total.item())
    if count:
        ctx.logger.warning("%s: %d unreadable image(s) skipped (named in the warnings above)",
                           what, count)
    return count


def gradient_clip(cfg: CfgNode) -> Optional[paddle.nn.ClipGradByGlobalNorm]:
    """The optimizer's gradient clipping for ``CLIP_GRAD`` (the global L2 norm; None at 0)."""
    value = float(cfg.CLIP_GRAD)
    if value < 0:
        raise ConfigError(f"CLIP_GRAD must be >= 0 (0: no clipping), got {value}")
    return paddle.nn.ClipGradByGlobalNorm(value) if value > 0 else None


# ---- models ------------------------------------------------------------------------------------
def wrap_model(model: paddle.nn.Layer, ctx: RunContext) -> paddle.nn.Layer:
    """``paddle.DataParallel`` (synchronised batch norm first with ``BATCHNORM.SYNC_BN``) when
    distributed; the model itself otherwise (one process has no batch to synchronise with;
    ``prepare_run`` refuses SYNC_BN off GPUs). Create the EMA copy before wrapping."""
    if not ctx.distributed:
        if ctx.cfg.BATCHNORM.SYNC_BN:
            ctx.logger.info("BATCHNORM.SYNC_BN: one process, nothing to synchronise")
        return model
    if ctx.cfg.BATCHNORM.SYNC_BN:
        # pimm's conversion: Paddle's SyncBatchNorm stores the biased running variance, torch's the unbiased
        model = convert_sync_batchnorm(model)
        ctx.logger.info("converted batch norm layers to SyncBatchNorm2d")
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


def check_replicas(model: Any, ctx: RunContext, what: str) -> bool:
    """Whether every rank holds the same weights as rank 0 (after :func:`broadcast_buffers`): one
    digest of each rank's state, gathered (a collective: call it on every rank), and a line in
    rank 0's log, a warning naming the ranks that differ. Ranks train the same model by
    construction (averaged gradients, the same updates); this shows it, across machines too. True
    without several processes."""
    if not ctx.distributed:
        return True
    digest = hashlib.sha256()
    for name, tensor in unwrap_model(model).state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.numpy().tobytes())
    mine = int.from_bytes(digest.digest()[:7], "little")  # fits an int64 tensor
    gathered: list = []
    dist.all_gather(gathered, paddle.to_tensor([mine], dtype="int64"))
    digests = [int(t.item()) for t in gathered]
    differ = [rank for rank, d in enumerate(digests) if d != digests[0]]
    if differ:
        ctx.logger.warning("%s: the weights of rank(s) %s differ from rank 0's", what, differ)
    else:
        ctx.logger.info("%s: the same weights on all %d ranks (digest %014x)", what,
                        ctx.world_size, digests[0])
    return not differ
def checkpoint_named_by(cfg: CfgNode, key: str, mode: str, what: str) -> str:
    """The checkpoint file the config key ``key`` (e.g. ``"RESUME_PATH"``) names, which ``mode``
    needs; ``what`` says what it must be. Unset: ConfigError; no such file: RunError."""
    value = cfg
    for part in key.split("."):
        value = value[part]
    path = str(value or "")
    if not path:
        raise ConfigError(f"{mode} needs {key}: {what}")
    if not os.path.isfile(path):
        raise RunError(f"{key}: no checkpoint at {path!r}; set it to {what}")
    return path


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
    except ValueError as err:  # a refused file, or nothing intact: the message names them
        raise RunError(str(err)) from err
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
    return CheckpointSaver(model, optimizer, args=ctx.cfg, checkpoint_dir=ctx.run_dir,
                           recovery_dir=ctx.run_dir, max_history=int(ctx.cfg.CHECKPOINT_HIST),
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
        record_config(ctx)
        return ResumePoint()
    try:
        state = resume_checkpoint(unwrap_model(model), path, optimizer=optimizer,
                                  scheduler=scheduler,
                                  ema_model=model_ema.ema if model_ema is not None else None)
    except CheckpointMismatchError as err:
        raise RunError(f"cannot resume from {path}: it holds another {what} "
                       f"({err.first_problem}). Use the config of the run that wrote it"
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
    record_config(ctx)
    return ResumePoint(start_epoch, skip, path, dict(state.extra))



_AMP_KEY = "amp_scaler"  # the loss scaler's state in a checkpoint's extra state


def amp_extra_state(amp: Amp) -> dict:
    """A checkpoint's extra state for ``amp``'s loss scaler (nothing without one)."""
    state = amp.state_dict()
    return {_AMP_KEY: state} if state else {}


def resume_amp(ctx: RunContext, amp: Amp, point: ResumePoint) -> None:
    """Give ``amp``'s loss scaler the scale a resumed run had reached (a checkpoint without one,
    or a run without loss scaling, starts from the initial scale)."""
    if point.path is None:
        return
    try:
        restored = amp.load_state_dict((point.extra or {}).get(_AMP_KEY, {}))
    except (ValueError, TypeError) as err:
        raise RunError(f"cannot resume from {point.path}: {err}") from err
    if restored:
        ctx.logger.info("resumed the loss scaler: scale %g", amp.state_dict()["scale"])
