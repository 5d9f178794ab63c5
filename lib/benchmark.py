"""Speed of Cream's jobs: evaluating and retraining a child network (or a supernet path).

``run_benchmark(BenchmarkOptions(...))`` builds the network, warms up, times ``steps`` steps and
returns one flat dict (``tools/benchmark.py`` prints it as a JSON line):

* ``infer``: a forward pass in eval mode without gradients (``backend='dygraph'``), or a call of
  the Paddle Inference predictor of the exported model (``backend='paddle_inference'``, the
  test mode's fast path, see :mod:`pimm.utils.inference`);
* ``train``: one retrain step as ``lib.engine.retrain`` takes it: forward in train mode (dropout
  ``drop_rate``), label-smoothing cross-entropy, backward, RMSpropTF step, EMA update.

Images are synthetic by default (drawn once, reused every step), so the figures are the
network's; ``data_dir`` times the real loader and its transforms as well (the training split with
the retrain augmentation for ``train``, the validation split with the evaluation transform for
``infer``).

``mflops`` is the thop multiply-add count of one image's forward pass at the benchmark's image
size, the unit the paper's "MFLOPs" use. ``gflops_per_s`` is ``mflops x work x images/s / 1000``
with ``work`` 1 for inference and 3 for a training step (the backward pass costs about twice the
forward). Multiply by 2 for floating-point operations in the hardware sense.
"""
from __future__ import annotations

import itertools
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import paddle

from lib.engine.retrain import train_step
from lib.models import CREAM_ARCHS, build_childnet, build_supernet, resolve_arch, validate_arch
from pimm.data import ImageDataset, create_loader
from pimm.loss import LabelSmoothingCrossEntropy
from pimm.optim import create_optimizer
from pimm.utils import ModelEma, profile, retain_freed_memory, seed_everything, set_num_threads
from pimm.utils.benchmark import machine_description, peak_rss_mb, time_steps

__all__ = ["BenchmarkOptions", "run_benchmark", "MODES", "BACKENDS", "RETRAIN_SETTINGS"]

MODES = ("infer", "train")
BACKENDS = ("dygraph", "paddle_inference")
# The released retrain configs' optimisation settings (experiments/configs/retrain/*.yaml)
RETRAIN_SETTINGS = dict(OPT="rmsproptf", LR=0.064, OPT_EPS=1e-3, MOMENTUM=0.9, WEIGHT_DECAY=1e-5,
                        DROPOUT_RATE=0.2, SMOOTHING=0.1, EMA_DECAY=0.9999)
# Work of a step in forward-pass units (see the module doc).
_WORK = {"infer": 1.0, "train": 3.0}
_DEFAULT_SUPERNET_PATH_SEED = 0
Batch = Tuple[paddle.Tensor, paddle.Tensor]


@dataclass
class BenchmarkOptions:
    """What to time. Exactly one of ``selection`` (a released net), ``arch`` (an arch list) or
    ``supernet=True`` (with ``flops_range`` and, for infer/train, ``path``: an arch list through
    the supernet, a seeded random path by default)."""

    mode: str = "infer"
    selection: Optional[int] = None
    arch: Optional[List[List[int]]] = None
    supernet: bool = False
    flops_range: Tuple[float, float] = (0.0, 600.0)
    path: Optional[List[List[int]]] = None
    batch_size: int = 32
    image_size: Optional[int] = None  # default: the net's published size (supernet: its space's)
    num_classes: int = 1000
    threads: Optional[int] = None  # default: every available core
    warmup: int = 3
    steps: int = 10
    backend: str = "dygraph"
    data_dir: Optional[str] = None
    workers: int = 2
    ema: bool = True
    seed: int = 0

    def check(self) -> None:
        problems = []
        if self.mode not in MODES:
            problems.append(f"mode {self.mode!r} is not one of {MODES}")
        if self.backend not in BACKENDS:
            problems.append(f"backend {self.backend!r} is not one of {BACKENDS}")
        elif self.backend != "dygraph" and self.mode != "infer":
            problems.append(f"backend {self.backend!r} only runs inference; use mode 'infer'")
        chosen = [self.selection is not None, self.arch is not None, self.supernet]
        if sum(chosen) != 1:
            problems.append("give exactly one of a selection, an arch list or the supernet")
        if self.path is not None and not self.supernet:
            problems.append("a path runs through the supernet: select the supernet")
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
            split = os.path.join(self.data_dir, "train" if self.mode != "infer" else "val")
            if not os.path.isdir(split):
                problems.append(f"data folder {split} does not exist (give a folder with train/ "
                                "and val/ class folders, e.g. from tools/make_demo_data.py)")
        if problems:
            raise ValueError("benchmark: " + "; ".join(problems) + ".")


class SupernetPath(paddle.nn.Layer):
    """The supernet restricted to one path: a model that takes images only (to time, train or
    export like a child network)."""

    def __init__(self, supernet: paddle.nn.Layer, arch: List[List[int]]) -> None:
        super().__init__()
        supernet.chosen_blocks(arch)  # raises a clear error when the path does not fit
        self.supernet = supernet
        self.arch = [list(stage) for stage in arch]

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.supernet(x, self.arch)


@dataclass
class _Target:
    """The network under test (a layer taking images only)."""

    name: str
    model: paddle.nn.Layer
    image_size: int
    arch: List[List[int]]  # the child's arch, or the supernet path


def _build_target(opts: BenchmarkOptions) -> _Target:
    drop_rate = RETRAIN_SETTINGS["DROPOUT_RATE"] if opts.mode == "train" else 0.0
    if opts.supernet:
        low, high = opts.flops_range
        model, sta_num, resolution = build_supernet(low, high, num_classes=opts.num_classes,
                                                    drop_rate=drop_rate)
        path = opts.path
        if path is None:
            rng = np.random.default_rng(_DEFAULT_SUPERNET_PATH_SEED)
            choices = len(model.blocks[1][0])
            path = [[0]] + [rng.integers(0, choices, n).tolist() for n in sta_num] + [[0]]
        return _Target(f"supernet[{low:g},{high:g}]", SupernetPath(model, path),
                       opts.image_size or resolution, path)
    if opts.selection is not None:
        arch, size = resolve_arch(opts.selection)
        name = f"cream_{opts.selection}"
    else:
        arch, size = validate_arch(opts.arch), 224
        name = "cream_arch"
    model = build_childnet(arch, num_classes=opts.num_classes, drop_rate=drop_rate)
    return _Target(name, model, opts.image_size or size, arch)


def _mflops(target: _Target) -> float:
    macs, _ = profile(target.model, (1, 3, target.image_size, target.image_size))
    return macs / 1e6


def _synthetic_batches(opts: BenchmarkOptions, image_size: int) -> Iterator[Batch]:
    rng = np.random.default_rng(opts.seed)
    images = paddle.to_tensor(rng.standard_normal((opts.batch_size, 3, image_size, image_size),
                                                  dtype=np.float32))
    labels = paddle.to_tensor(rng.integers(0, opts.num_classes, opts.batch_size, dtype=np.int64))
    return itertools.repeat((images, labels))


def _loader_batches(opts: BenchmarkOptions, image_size: int) -> Iterator[Batch]:
    training = opts.mode != "infer"
    dataset = ImageDataset(os.path.join(opts.data_dir, "train" if training else "val"))
    if len(dataset) < opts.batch_size:
        raise ValueError(f"benchmark: {dataset.root} has {len(dataset)} images, fewer than one "
                         f"batch of {opts.batch_size}; lower the batch size or use a bigger folder")
    if training:  # the retrain pipeline (lib.engine.common.build_loaders)
        loader = create_loader(dataset, image_size, opts.batch_size, is_training=True,
                               auto_augment="rand-m9-mstd0.5", interpolation="random", re_prob=0.2,
                               re_mode="pixel", color_jitter=0.4, num_workers=opts.workers,
                               seed=opts.seed)
    else:
        loader = create_loader(dataset, image_size, opts.batch_size, is_training=False,
                               interpolation="bicubic", num_workers=opts.workers, seed=opts.seed)

    def forever() -> Iterator[Batch]:
        for epoch in itertools.count():
            loader.set_epoch(epoch)
            for images, labels in loader:
                if images.shape[0] == opts.batch_size:
                    yield images, labels

    return forever()


def _device() -> str:
    return "gpu" if paddle.device.get_device().startswith("gpu") else "cpu"


def _infer_step(opts: BenchmarkOptions, target: _Target, batches: Iterator[Batch],
                workdir: str) -> Callable[[], Any]:
    target.model.eval()
    if opts.backend == "paddle_inference":
        from pimm.utils.inference import InferenceModel, export_model

        prefix = os.path.join(workdir, "model")
        export_model(target.model, prefix, target.image_size)
        predictor = InferenceModel(prefix, device=_device(), threads=opts.threads)

        def predict() -> Any:
            images, _ = next(batches)
            return predictor(images)

        return predict

    def forward() -> Any:
        images, _ = next(batches)
        with paddle.no_grad():
            return target.model(images)

    return forward


def _train_step(opts: BenchmarkOptions, target: _Target, batches: Iterator) -> Callable[[], Any]:
    model = target.model
    model.train()
    settings = dict(RETRAIN_SETTINGS)
    if opts.supernet:  # a supernet path trains with the search's optimiser (SGD, Nesterov)
        settings.update(OPT="sgd", LR=0.01, WEIGHT_DECAY=1e-4)
    optimizer = create_optimizer(settings, model)
    loss_fn = LabelSmoothingCrossEntropy(settings["SMOOTHING"])
    ema = ModelEma(model, decay=settings["EMA_DECAY"]) if opts.ema else None

    def step() -> Any:
        images, labels = next(batches)
        return train_step(model, images, labels, optimizer, loss_fn, ema)

    return step


def run_benchmark(opts: BenchmarkOptions) -> Dict[str, Any]:
    """Time ``opts`` and return the figures (see the module doc for their meaning)."""
    opts.check()
    if _device() == "cpu":
        retain_freed_memory()  # as the engines run (lib.engine.common.prepare_run)
    threads = set_num_threads(opts.threads)
    seed_everything(opts.seed)
    target = _build_target(opts)
    mflops = _mflops(target)
    batches = (_loader_batches(opts, target.image_size) if opts.data_dir
               else _synthetic_batches(opts, target.image_size))
    with tempfile.TemporaryDirectory(prefix="cream_bench_") as workdir:
        if opts.mode == "infer":
            step = _infer_step(opts, target, batches, workdir)
        else:
            step = _train_step(opts, target, batches)
        times = time_steps(step, steps=opts.steps, warmup=opts.warmup)
    images_per_s = times.images_per_s(opts.batch_size)
    work = _WORK.get(opts.mode)
    result: Dict[str, Any] = {
        "model": target.name,
        "mode": opts.mode,
        "backend": opts.backend,
        "arch": target.arch,
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
        "mflops": round(mflops, 3),
        "gflops_per_s": round(mflops * work * images_per_s / 1000.0, 3) if work else None,
    }
    result.update(machine_description())
    return result
