"""Speed of Cream's jobs: evaluating and retraining a child network (or a supernet path), and
training the supernet.

``run_benchmark(BenchmarkOptions(...))`` builds the network, warms up, times ``steps`` steps and
returns one flat dict (``tools/benchmark.py`` prints it as a JSON line):

* ``infer``: a forward pass in eval mode without gradients (``backend='dygraph'``), or a call of
  the Paddle Inference predictor of the exported model (``backend='paddle_inference'``, the
  test mode's fast path, see :mod:`pimm.deploy`);
* ``train``: one retrain step, ``lib.engine.retrain.train_step``: forward in train mode (dropout),
  label-smoothing cross-entropy, backward, RMSpropTF step, EMA update;
* ``search``: one step of the architecture search, ``lib.engine.search.search_step``, in its
  distillation phase: a path drawn by the search's sampler, its teacher chosen on a full
  prioritized board (the meta-matching scores of every entry), the KD/CE loss, backward and the
  SGD step; with ``meta`` every timed step also takes the meta-matching network's second-order
  update first (a search takes it every ``SUPERNET.UPDATE_ITER`` steps).
* ``loader``: one batch of the engine's data loader (``lib.engine.common.build_loaders`` over
  ``data_dir``, ``workers`` processes), with the ``transforms`` of a child network's retraining
  (``retrain``: RandAugment, random erasing), its evaluation (``eval``) or the search
  (``search``: colour jitter, random erasing); besides images/s, the peak memory of each worker,
  the CPU time per image the workers and the training process spent over the timed steps (what
  a worker costs, whatever else shares the cores) and that of every stage of the pipeline
  (``pimm.data.pipeline_stage_times``).

Settings (optimiser, loss, dropout, EMA decay, augmentation) come from the config the engine would
run (``overrides``: ``KEY VALUE`` pairs on top, e.g. ``SUPERNET.PICK_METHOD top1``): a child network's released retrain recipe (``experiments/configs/retrain/<selection>.yaml``,
``retrain/searched.yaml`` for an arch list), and for the supernet, a path of it or the search,
the search config (``config``, by default the shipped ``experiments/configs/train/train.yaml``):
a supernet path trains as the search trains it. Networks, optimisers and losses are built by the
engines' own functions.

Images are synthetic by default (drawn once, reused every step), so the figures are the
network's; ``data_dir`` times the engine's loader and transforms as well (the training split with
the retrain or search augmentation, the validation split with the evaluation transform for
``infer``).

``mflops`` is the thop multiply-add count of one image's forward pass at the benchmark's image
size, the unit the paper's "MFLOPs" use (for ``search``: the mean over the timed steps' sampled
paths). ``gflops_per_s`` is ``mflops x work x images/s / 1000`` with ``work`` 1 for inference
and 3 for a training step (the backward pass costs about twice the forward); for ``search`` it
counts the student's forward and backward only, so the teacher's forward, the matching scores and
the meta update show as the step's overhead. Multiply by 2 for floating-point operations in the
hardware sense.
"""
from __future__ import annotations

import itertools
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import paddle

from yacs.config import CfgNode

from lib.config import load_config, shipped_config
from lib.engine.child import child_loader_policy, create_child_model, resolve_child
from lib.engine.common import build_loaders, create_amp, device_type
from lib.engine.retrain import create_train_loss, create_train_optimizer, train_step
from lib.engine.search import SearchOptions, SearchParts, build_search_supernet, search_step
from lib.engine.supernet import create_search_loss, create_search_optimizer, search_loader_policy
from lib.models import CREAM_ARCHS, FlopsEst, SupernetPath
from lib.search import MetaMatchingNetwork, PathSampler, PrioritizedBoard
from pimm.data import ImageLoader, pipeline_stage_times
from pimm.layers.native import build_native_kernels
from pimm.loss import softmax
from pimm.utils import (ModelEma, profile, retain_freed_memory, seed_everything, select_mkl_kernels,
                        set_num_threads)
from pimm.utils.amp import AMP_LEVELS
from pimm.utils.benchmark import (child_pids, children_cpu_seconds, children_peak_rss_mb,
                                  machine_description, peak_rss_mb, time_steps)

__all__ = ["BenchmarkOptions", "run_benchmark", "MODES", "BACKENDS", "LOADER_TRANSFORMS",
           "default_search_config"]

MODES = ("infer", "train", "search", "loader")
BACKENDS = ("dygraph", "paddle_inference")
#: the loader mode's pipelines: a child's retraining and evaluation, the search's training
LOADER_TRANSFORMS = ("retrain", "eval", "search")
#: the released net whose recipe the loader mode's retrain/eval pipelines use by default (224 px)
DEFAULT_LOADER_SELECTION = 287
_STAGE_BATCHES = 4  # batches of images whose stages the loader mode times (2 uncounted)
# Work of a step in forward-pass units of the timed network (see the module doc).
_WORK = {"infer": 1.0, "train": 3.0, "search": 3.0}
_DEFAULT_SUPERNET_PATH_SEED = 0
Batch = Tuple[paddle.Tensor, paddle.Tensor]
Step = Callable[[], Any]


def default_search_config() -> str:
    """The shipped search config, ``experiments/configs/train/train.yaml`` of this checkout."""
    return shipped_config("train", "train.yaml")


@dataclass
class BenchmarkOptions:
    """What to time. For ``infer``/``train``, exactly one of ``selection`` (a released net),
    ``arch`` (an arch list) or ``supernet=True`` (with ``flops_range`` and ``path``: an arch
    list through the supernet, a seeded random path by default). ``search`` always times the
    supernet. The supernet is that of the search config ``config`` (its FLOPs range unless
    ``flops_range`` is given); ``meta`` adds the meta-matching update to every step."""

    mode: str = "infer"
    selection: Optional[int] = None
    arch: Optional[List[List[int]]] = None
    supernet: bool = False
    flops_range: Optional[Tuple[float, float]] = None  # default: the search config's
    path: Optional[List[List[int]]] = None
    batch_size: int = 32
    image_size: Optional[int] = None  # default: the net's published size (supernet: its space's;
    # search: the config's DATASET.IMAGE_SIZE)
    num_classes: int = 1000
    threads: Optional[int] = None  # default: every available core
    warmup: int = 3
    steps: int = 10
    backend: str = "dygraph"
    data_dir: Optional[str] = None
    workers: int = 2
    ema: bool = True  # search: only where the config tracks an EMA (NET.EMA.USE)
    meta: bool = False
    config: Optional[str] = None  # supernet and search: default_search_config()
    seed: int = 0
    transforms: str = "retrain"  # loader: one of LOADER_TRANSFORMS
    overrides: Tuple[str, ...] = ()  # KEY VALUE pairs applied to the config last
    amp: str = "O0"  # mixed precision (GPU): train/search steps, dygraph infer; fp16 predictor
    tensorrt: bool = False  # paddle_inference on GPU: the program converted by paddle.tensorrt

    def check(self) -> None:
        problems = []
        if self.mode not in MODES:
            problems.append(f"mode {self.mode!r} is not one of {MODES}")
        if self.backend not in BACKENDS:
            problems.append(f"backend {self.backend!r} is not one of {BACKENDS}")
        elif self.backend != "dygraph" and self.mode != "infer":
            problems.append(f"backend {self.backend!r} only runs inference; use mode 'infer'")
        chosen = [self.selection is not None, self.arch is not None, self.supernet]
        if self.mode == "loader":
            self._check_loader(problems)
        elif self.mode == "search":
            if self.selection is not None or self.arch is not None or self.path is not None:
                problems.append("mode 'search' trains the supernet on sampled paths: give no "
                                "selection, arch or path")
        elif sum(chosen) != 1:
            problems.append("give exactly one of a selection, an arch list or the supernet")
        if self.path is not None and not self.supernet:
            problems.append("a path runs through the supernet: select the supernet")
        if self.meta and self.mode != "search":
            problems.append("meta is the search's meta-matching update: use mode 'search'")
        if self.tensorrt and self.backend != "paddle_inference":
            problems.append("tensorrt runs the exported model: use backend 'paddle_inference'")
        if self.amp not in AMP_LEVELS:
            problems.append(f"amp {self.amp!r} is not one of {AMP_LEVELS}")
        elif self.amp != "O0" and self.mode == "loader":
            problems.append("amp applies to networks: drop it in mode 'loader'")
        if self.config is not None and not (self.supernet or self.mode == "search"):
            problems.append("a config sets up the supernet: select the supernet or use mode "
                            "'search'")
        if self.selection is not None and self.selection not in CREAM_ARCHS:
            problems.append(f"selection {self.selection} is not a released net "
                            f"({sorted(CREAM_ARCHS)})")
        for name, low in (("batch_size", 1), ("steps", 1), ("warmup", 0), ("workers", 0),
                          ("num_classes", 1)):
            if getattr(self, name) < low:
                problems.append(f"{name} must be >= {low}, got {getattr(self, name)}")
        if self.image_size is not None and self.image_size < 32:
            problems.append(f"image_size must be >= 32 (five stride-2 stages), got "
                            f"{self.image_size}")
        if self.data_dir is not None:
            split = os.path.join(self.data_dir, "val" if self._evaluates() else "train")
            if not os.path.isdir(split):
                problems.append(f"data folder {split} does not exist (give a folder with train/ "
                                "and val/ class folders, e.g. from tools/make_demo_data.py)")
        if problems:
            raise ValueError("benchmark: " + "; ".join(problems) + ".")

    def _evaluates(self) -> bool:
        return self.mode == "infer" or (self.mode == "loader" and self.transforms == "eval")

    def _check_loader(self, problems: List[str]) -> None:
        if self.transforms not in LOADER_TRANSFORMS:
            problems.append(f"transforms {self.transforms!r} is not one of {LOADER_TRANSFORMS}")
        if self.data_dir is None:
            problems.append("mode 'loader' reads a folder: give data_dir (--data)")
        if self.arch is not None or self.supernet or self.path is not None or self.meta:
            problems.append("mode 'loader' times a data pipeline: give no arch, supernet, path or "
                            "meta")
        if self.transforms == "search" and self.selection is not None:
            problems.append("the search's pipeline has no selection: drop it")
        if self.warmup < self.workers:
            # the first batch of every worker arrives at once; timing starts after them
            problems.append(f"mode 'loader' needs warmup >= workers ({self.workers}) so that the "
                            f"timed batches follow the workers' first burst, got {self.warmup}")


@dataclass
class _Target:
    """What is timed: the step, and what the result reports about it."""

    name: str
    image_size: int
    arch: Any  # the child's arch, the supernet path, or the search's sampled paths
    step: Step
    mflops: Callable[[], Optional[float]]  # called after timing (None: no network)
    details: Callable[[], Dict[str, Any]] = dict  # mode-specific fields, called after timing


def _thop_mflops(model: paddle.nn.Layer, image_size: int) -> float:
    macs, _ = profile(model, (1, 3, image_size, image_size))
    return macs / 1e6


def _uses_supernet(opts: BenchmarkOptions) -> bool:
    return (opts.supernet or opts.mode == "search"
            or (opts.mode == "loader" and opts.transforms == "search"))


def _recipe(opts: BenchmarkOptions) -> CfgNode:
    """The config the engine would run (see the module doc), with the benchmark's sizes."""
    overrides = ["DATASET.BATCH_SIZE", str(opts.batch_size), "DATASET.VAL_BATCH_MUL", "1",
                 "DATASET.NUM_CLASSES", str(opts.num_classes), "SEED", str(opts.seed),
                 "WORKERS", str(opts.workers)]
    if opts.data_dir is not None:
        overrides += ["DATA_DIR", opts.data_dir]
    if _uses_supernet(opts):
        path = opts.config or default_search_config()
        if opts.image_size is not None:
            overrides += ["DATASET.IMAGE_SIZE", str(opts.image_size)]
    elif opts.selection is not None or opts.mode == "loader":
        selection = opts.selection if opts.selection is not None else DEFAULT_LOADER_SELECTION
        path = shipped_config("retrain", f"{selection}.yaml")
    else:
        path = shipped_config("retrain", "searched.yaml")
        overrides += ["NET.BOARD_JSON", "", "NET.INPUT_ARCH", str(opts.arch)]
    if opts.image_size is not None and not _uses_supernet(opts):
        overrides += ["DATASET.IMAGE_SIZE", str(opts.image_size), "DATASET.SELECTION_IMAGE_SIZE", "False"]
    overrides += ["AMP", opts.amp]
    cfg = load_config(path, overrides + list(opts.overrides))
    if opts.flops_range is not None:
        # set directly: a yacs override must match the type the YAML wrote (int or float)
        cfg.defrost()
        cfg.SUPERNET.FLOPS_MINIMUM, cfg.SUPERNET.FLOPS_MAXIMUM = (float(v) for v in opts.flops_range)
        cfg.freeze()
    return cfg


def _supernet_name(cfg: CfgNode) -> str:
    return f"supernet[{float(cfg.SUPERNET.FLOPS_MINIMUM):g},{float(cfg.SUPERNET.FLOPS_MAXIMUM):g}]"


def _build_model(opts: BenchmarkOptions, cfg: CfgNode
                 ) -> Tuple[str, paddle.nn.Layer, int, List[List[int]]]:
    """``(name, model taking images, image size, arch)`` for infer/train, built as the engine
    builds it: the child network ``resolve_child`` picks, or a path through the search's
    supernet (a seeded random one unless ``path`` is given)."""
    if opts.supernet:
        supernet, sta_num, resolution = build_search_supernet(cfg)
        path = opts.path
        if path is None:
            rng = np.random.default_rng(_DEFAULT_SUPERNET_PATH_SEED)
            choices = len(supernet.blocks[1][0])
            path = [[0]] + [rng.integers(0, choices, n).tolist() for n in sta_num] + [[0]]
        return _supernet_name(cfg), SupernetPath(supernet, path), opts.image_size or resolution, path
    spec = resolve_child(cfg)
    name = f"cream_{spec.selection}" if spec.selection != -1 else "cream_arch"
    return name, create_child_model(cfg, spec), spec.image_size, spec.arch


def _synthetic_batches(opts: BenchmarkOptions, image_size: int) -> Iterator[Batch]:
    rng = np.random.default_rng(opts.seed)
    images = paddle.to_tensor(rng.standard_normal((opts.batch_size, 3, image_size, image_size),
                                                  dtype=np.float32))
    labels = paddle.to_tensor(rng.integers(0, opts.num_classes, opts.batch_size, dtype=np.int64))
    return itertools.repeat((images, labels))


def _build_loader(opts: BenchmarkOptions, cfg: CfgNode, image_size: int) -> ImageLoader:
    """The engine's own loader (``build_loaders``) of the mode's split."""
    training = not opts._evaluates()
    policy = search_loader_policy(cfg) if _uses_supernet(opts) else child_loader_policy(cfg)
    train_loader, eval_loader = build_loaders(cfg, None, image_size, policy=policy, train=training,
                                              eval=not training)
    return train_loader if training else eval_loader


def _loader_batches(opts: BenchmarkOptions, cfg: CfgNode, image_size: int) -> Iterator[Batch]:
    """Full batches from the engine's own loader of the mode's split, epoch after epoch."""
    loader = _build_loader(opts, cfg, image_size)
    if len(loader.dataset) < opts.batch_size:
        raise ValueError(f"benchmark: {loader.dataset.root} has {len(loader.dataset)} images, "
                         f"fewer than one batch of {opts.batch_size}; lower the batch size or use "
                         "a bigger folder")

    def forever() -> Iterator[Batch]:
        for epoch in itertools.count():
            loader.set_epoch(epoch)
            for images, labels in loader:
                if images.shape[0] == opts.batch_size:
                    yield images, labels

    return forever()


def _infer_target(opts: BenchmarkOptions, cfg: CfgNode,
                  batches_for: Callable[[int], Iterator[Batch]], workdir: str) -> _Target:
    name, model, image_size, arch = _build_model(opts, cfg)
    model.eval()
    batches = batches_for(image_size)
    if opts.backend == "paddle_inference":
        from pimm.deploy import InferenceModel, export_model

        prefix = os.path.join(workdir, "model")
        export_model(model, prefix, image_size)
        predictor = InferenceModel(prefix, device=device_type(), threads=opts.threads,
                                   tensorrt=opts.tensorrt,
                                   precision="fp16" if opts.amp != "O0" else "fp32")

        def step() -> Any:
            images, _ = next(batches)
            return predictor(images)
    else:
        amp = create_amp(cfg, device_type())

        def step() -> Any:
            images, _ = next(batches)
            with paddle.no_grad(), amp.autocast():
                return model(images)

    return _Target(name, image_size, arch, step, lambda: _thop_mflops(model, image_size))


def _train_target(opts: BenchmarkOptions, cfg: CfgNode,
                  batches_for: Callable[[int], Iterator[Batch]]) -> _Target:
    name, model, image_size, arch = _build_model(opts, cfg)
    model.train()
    batches = batches_for(image_size)
    if opts.supernet:  # a path trains as the search trains it
        optimizer = create_search_optimizer(cfg, model.supernet)
        loss_fn = create_search_loss(cfg)
    else:
        optimizer = create_train_optimizer(cfg, model)
        loss_fn = create_train_loss(cfg)
    ema = ModelEma(model, decay=float(cfg.NET.EMA.DECAY)) if opts.ema else None
    amp = create_amp(cfg, device_type())
    model, optimizer = amp.decorate(model, optimizer)

    def step() -> Any:
        images, labels = next(batches)
        return train_step(model, images, labels, optimizer, loss_fn, ema, amp=amp)

    return _Target(name, image_size, arch, step, lambda: _thop_mflops(model, image_size))


def _loader_target(opts: BenchmarkOptions, cfg: CfgNode) -> _Target:
    """One batch of the loader per step, within one epoch (a new epoch restarts the workers);
    after timing, the workers' peak memory, the CPU time the workers and this process spent per
    image over the timed steps, and the pipeline's stage times."""
    image_size = opts.image_size or (int(cfg.DATASET.IMAGE_SIZE) if _uses_supernet(opts)
                                     else resolve_child(cfg).image_size)
    loader = _build_loader(opts, cfg, image_size)
    needed = max(opts.warmup + opts.steps, _STAGE_BATCHES)
    if len(loader) < needed:
        raise ValueError(f"benchmark: {loader.dataset.root} gives {len(loader)} batches of "
                         f"{opts.batch_size} per epoch, fewer than the {needed} to time (warmup + "
                         f"steps, at least {_STAGE_BATCHES} for the pipeline's stages); lower them or "
                         "the batch size, or use a bigger folder")
    batches = iter(loader)
    older_children = set(child_pids())  # not the loader's workers, which start at the first batch
    taken = 0
    cpu_at_start: Tuple[float, Dict[int, float]] = (0.0, {})

    def workers_cpu() -> Dict[int, float]:
        return children_cpu_seconds([pid for pid in child_pids() if pid not in older_children])

    def step() -> Batch:
        nonlocal taken, cpu_at_start
        if taken == opts.warmup:  # the first timed step starts
            cpu_at_start = (time.process_time(), workers_cpu())
        taken += 1
        return next(batches)

    def details() -> Dict[str, Any]:  # while the workers still run
        main_cpu, worker_cpu = time.process_time(), workers_cpu()
        images = opts.steps * opts.batch_size
        # workers that started within the window (none: warmup >= workers) count from zero
        worker_seconds = sum(t - cpu_at_start[1].get(pid, 0.0) for pid, t in worker_cpu.items())
        workers = children_peak_rss_mb(worker_cpu)
        indices = list(range(_STAGE_BATCHES * opts.batch_size))
        stages = pipeline_stage_times(loader, indices, warmup=2)
        return {"transforms": opts.transforms, "workers": opts.workers,
                "worker_peak_rss_mb": round(max(workers), 1) if workers else None,
                "worker_cpu_ms_per_image": (round(1000.0 * worker_seconds / images, 3)
                                            if worker_cpu else None),
                "main_cpu_ms_per_image": round(1000.0 * (main_cpu - cpu_at_start[0]) / images, 3),
                "stage_cpu_ms_per_image": {k: round(v, 3) for k, v in stages.items()}}

    return _Target("loader", image_size, None, step, lambda: None, details)


@dataclass
class _SearchState:
    supernet: paddle.nn.Layer
    options: SearchOptions
    board: PrioritizedBoard
    sampler: PathSampler
    sampled: List[List[List[int]]] = field(default_factory=list)


def _fill_board(state: _SearchState, flops_est: FlopsEst, images: paddle.Tensor) -> None:
    """A full board, as a search has after its first distillation epochs: POOL_SIZE distinct
    paths inside the FLOPs range, each with its slice of images and its own softmax on them."""
    board, s = state.board, state.options.slice
    state.supernet.eval()
    for attempt in range(100 * board.pool_size):
        if len(board) == board.pool_size:
            break
        arch = state.sampler.sample()
        flops = flops_est.get_flops(arch)
        with paddle.no_grad():
            features = softmax(state.supernet(images[:s], arch), axis=-1)
        # descending made-up accuracies: each new path enters (the values only rank them)
        board.consider(arch, 90.0 - attempt, flops, flops_est.get_params(arch), images[:s],
                       features)
    state.supernet.train()
    if len(board) < board.pool_size:
        raise ValueError(f"benchmark: could not fill the board with {board.pool_size} paths "
                         f"inside [{board.flops_minimum:g}, {board.flops_maximum:g}] MFLOPs; "
                         "widen the FLOPs range")


def _search_target(opts: BenchmarkOptions, cfg,
                   batches_for: Callable[[int], Iterator[Batch]]) -> _Target:
    search = SearchOptions.from_config(cfg)
    if opts.meta and not search.meta_updates:
        raise ValueError("benchmark: the search config takes no meta-matching updates "
                         "(SUPERNET.PICK_METHOD must be 'meta' and UPDATE_2ND True); drop meta "
                         "or use a config that has them")
    supernet, sta_num, resolution = build_search_supernet(cfg)
    image_size = int(cfg.DATASET.IMAGE_SIZE)
    batches = batches_for(image_size)
    state = _SearchState(supernet, search,
                         PrioritizedBoard(search.pool_size, search.flops_minimum,
                                          search.flops_maximum),
                         PathSampler(sta_num, len(supernet.blocks[1][0]), search.how_to_prob,
                                     search.pre_prob, seed=opts.seed))
    if search.distills:
        _fill_board(state, FlopsEst(supernet, resolution=resolution), next(batches)[0])
    ema = (ModelEma(supernet, decay=float(cfg.NET.EMA.DECAY))
           if cfg.NET.EMA.USE and opts.ema else None)
    parts = SearchParts(supernet, create_search_optimizer(cfg, supernet), create_search_loss(cfg),
                        state.board, MetaMatchingNetwork(search.slice), search.pick_method, ema=ema,
                        amp=create_amp(cfg, device_type()))
    supernet.train()

    def step() -> Any:
        images, labels = next(batches)
        arch = state.sampler.sample(state.board)
        state.sampled.append(arch)
        distill = search.distills and bool(state.board.teachers_for(arch))
        return search_step(parts, images, labels, arch, distill=distill,
                           meta_update=opts.meta and distill)

    def mean_mflops() -> float:
        timed = state.sampled[-opts.steps:]
        return float(np.mean([_thop_mflops(SupernetPath(supernet, arch), image_size)
                              for arch in timed]))

    def details() -> Dict[str, Any]:
        return {"board": [entry.arch for entry in state.board.entries]}

    return _Target(_supernet_name(cfg), image_size, state.sampled, step, mean_mflops, details)


def run_benchmark(opts: BenchmarkOptions) -> Dict[str, Any]:
    """Time ``opts`` and return the figures (see the module doc for their meaning)."""
    opts.check()
    if device_type() == "cpu":
        retain_freed_memory()  # as the engines run (lib.engine.common.prepare_run)
        select_mkl_kernels()
        build_native_kernels()
    threads = set_num_threads(opts.threads)
    seed_everything(opts.seed)
    cfg = _recipe(opts)
    with tempfile.TemporaryDirectory(prefix="cream_bench_") as workdir:
        def batches_for(image_size: int) -> Iterator[Batch]:
            if opts.data_dir is None:
                return _synthetic_batches(opts, image_size)
            return _loader_batches(opts, cfg, image_size)

        if opts.mode == "infer":
            target = _infer_target(opts, cfg, batches_for, workdir)
        elif opts.mode == "train":
            target = _train_target(opts, cfg, batches_for)
        elif opts.mode == "loader":
            target = _loader_target(opts, cfg)
        else:
            target = _search_target(opts, cfg, batches_for)
        times = time_steps(target.step, steps=opts.steps, warmup=opts.warmup)
        details = target.details()
    mflops = target.mflops()
    images_per_s = times.images_per_s(opts.batch_size)
    arch = target.arch[-opts.steps:] if opts.mode == "search" else target.arch
    result: Dict[str, Any] = {
        "model": target.name,
        "mode": opts.mode,
        "meta": opts.meta,
        "backend": opts.backend,
        "arch": arch,
        "batch_size": opts.batch_size,
        "image_size": target.image_size,
        "threads": threads,
        "data": opts.data_dir,
        "warmup": opts.warmup,
        "steps": opts.steps,
        "images_per_s": round(images_per_s, 3),
        "ms_per_step": round(1000.0 * times.mean, 3),
        "ms_per_step_median": round(1000.0 * times.median, 3),
        "ms_per_step_best": round(1000.0 * times.best, 3),
        "step_ms": [round(1000.0 * t, 1) for t in times.seconds],
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "mflops": None if mflops is None else round(mflops, 3),
        "gflops_per_s": (None if mflops is None
                         else round(mflops * _WORK[opts.mode] * images_per_s / 1000.0, 3)),
    }
    result.update(details)
    if device_type() == "gpu":
        result["peak_gpu_memory_mb"] = round(paddle.device.cuda.max_memory_allocated() / 2**20, 1)
        result["amp"] = opts.amp
    result.update(machine_description())
    return result
