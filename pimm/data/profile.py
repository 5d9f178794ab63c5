"""Where a loader's time goes: the CPU time of each stage of its pipeline, measured in this process.

:func:`pipeline_stage_times` runs the loader's own dataset, per-image transform and collation on
a few batches of its samples, one stage at a time: decoding the file, each step of the per-image
``Compose`` (crop, flip, RandAugment or colour jitter, conversion to an array), stacking the batch,
normalising it and the batch augmentation (random erasing), in milliseconds of CPU time per image
(``time.process_time``: not inflated by other processes sharing the cores). What a worker adds on
top, sending batches to the training process and turning them into tensors, is the difference
between a worker's time per image (``tools/benchmark.py --mode loader``) and their sum.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Dict, Sequence

import numpy as np

from .dataset import ImageDataset, load_rgb
from .loader import ImageLoader, NormalizingCollate

__all__ = ["pipeline_stage_times"]


def pipeline_stage_times(loader: ImageLoader, indices: Sequence[int], warmup: int = 1
                         ) -> Dict[str, float]:
    """CPU milliseconds per image of each stage of ``loader``'s pipeline over the samples
    ``indices`` (taken in batches of the loader's batch size; the first ``warmup`` batches are
    run but not counted: their first allocations fault pages in, which later batches reuse). Keys in pipeline order:
    ``decode``, the class name of each per-image step, ``collate`` (stacking), and with the
    batch-wise normalisation ``normalize`` and ``batch_augment``. Draws from the augmentation
    generators of this process."""
    dataset = loader.dataset
    if not isinstance(dataset, ImageDataset):
        raise TypeError(f"pipeline_stage_times needs an ImageDataset, got {type(dataset).__name__}")
    steps = list(getattr(dataset.transform, "transforms", [dataset.transform]))
    collate = loader.collate_fn
    batch_size = loader.batch_size
    batches = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
    if len(batches) <= warmup:
        raise ValueError(f"pipeline_stage_times: {len(indices)} samples make {len(batches)} batches "
                         f"of {batch_size}; give more than {warmup} batches' worth")
    totals: Dict[str, float] = OrderedDict(decode=0.0)
    counted = 0
    for number, batch in enumerate(batches):
        times: Dict[str, float] = OrderedDict(decode=0.0)
        samples = []
        for index in batch:
            path, label = dataset.samples[index]
            start = time.process_time()
            img = load_rgb(path)
            times["decode"] += time.process_time() - start
            for step in steps:
                start = time.process_time()
                img = step(img)
                name = type(step).__name__
                times[name] = times.get(name, 0.0) + time.process_time() - start
            samples.append((img, label))
        times.update(_collate_times(collate, samples))
        if number >= warmup:
            counted += len(batch)
            for name, seconds in times.items():
                totals[name] = totals.get(name, 0.0) + seconds
    return OrderedDict((name, 1000.0 * seconds / counted) for name, seconds in totals.items())


def _collate_times(collate, samples) -> Dict[str, float]:
    times: Dict[str, float] = OrderedDict()
    inner = collate.collate_fn if isinstance(collate, NormalizingCollate) else collate
    start = time.process_time()
    images, *_ = inner(samples)
    times["collate"] = time.process_time() - start
    if isinstance(collate, NormalizingCollate) and isinstance(images, np.ndarray) \
            and images.dtype == np.uint8:
        start = time.process_time()
        images = collate.normalize(images)
        times["normalize"] = time.process_time() - start
        if collate.batch_augment is not None:
            start = time.process_time()
            collate.batch_augment(images)
            times["batch_augment"] = time.process_time() - start
    return times
