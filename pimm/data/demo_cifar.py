"""The synthetic demo images (``pimm.data.demo``) as CIFAR-10 python batches, for the CIFAR
pipelines (the DARTS search and networks) without the real data.

``make_demo_cifar(root)`` writes ``root/data_batch_1`` .. ``data_batch_5`` and ``root/test_batch``
in CIFAR-10's layout (``pimm.data.write_cifar_batch``): 32x32 images of up to 10 of the demo's
figure kinds, label = kind index. The training images are shuffled before being dealt into the
five batches, as in the real files, so any contiguous part of the training set holds every class.
Every image is a pure function of (seed, class, split, index).
"""
from __future__ import annotations

import os
from typing import List

import numpy as np

from .cifar import CIFAR10_CLASSES, TEST_BATCH, TRAIN_BATCHES, write_cifar_batch
from .demo import demo_class_names, render_demo_image

__all__ = ["make_demo_cifar"]

_SIZE = 32


def _render(kinds: List[str], per_class: int, split_id: int, seed: int):
    images, labels = [], []
    for label, kind in enumerate(kinds):
        for index in range(per_class):
            rng = np.random.default_rng([seed, label, split_id, index])
            images.append(np.asarray(render_demo_image(kind, _SIZE, rng), dtype=np.uint8))
            labels.append(label)
    return np.stack(images), np.asarray(labels)


def make_demo_cifar(root: str, num_classes: int = 10, train_per_class: int = 50, test_per_class: int = 10,
                    seed: int = 0) -> str:
    """Write the CIFAR-format demo data into ``root`` (created) and return ``root``; files are
    replaced atomically, so rerunning with the same arguments rewrites the same bytes."""
    if not 1 <= num_classes <= len(CIFAR10_CLASSES):
        raise ValueError(f"CIFAR-format demo data has 1 to {len(CIFAR10_CLASSES)} classes (CIFAR-10 labels), "
                         f"asked for {num_classes}")
    if train_per_class * num_classes < len(TRAIN_BATCHES) or test_per_class < 1:
        raise ValueError(f"need at least {len(TRAIN_BATCHES)} training images (one per batch file) and one test "
                         f"image per class, got {train_per_class} x {num_classes} and {test_per_class}")
    kinds = [name.split("_", 1)[1] for name in demo_class_names(num_classes)]
    os.makedirs(root, exist_ok=True)
    images, labels = _render(kinds, train_per_class, 0, seed)
    order = np.random.default_rng([seed, 99]).permutation(len(labels))
    for name, part in zip(TRAIN_BATCHES, np.array_split(order, len(TRAIN_BATCHES))):
        write_cifar_batch(os.path.join(root, name), images[part], labels[part].tolist(),
                          batch_label=f"synthetic demo {name}")
    images, labels = _render(kinds, test_per_class, 1, seed)
    write_cifar_batch(os.path.join(root, TEST_BATCH), images, labels.tolist(), batch_label="synthetic demo test")
    return root
