"""Cream child networks outside dygraph: export for Paddle Inference and top-k prediction on image
files (the test mode's choice of backend is ``lib.engine.test.select_test_model``).

An exported child network is ``<prefix>.json`` + ``<prefix>.pdiparams`` (the program and weights,
``pimm.deploy.export_model``) and ``<prefix>.info.json``, which records what a caller needs: the
classes, the evaluation transform the network was validated with (shorter side to
``size / 0.875`` with bicubic resampling, centre crop, ImageNet mean/std), and the arch.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle

from lib.models.childnet import EVAL_INTERPOLATION
from pimm.data.dataset import load_rgb
from pimm.deploy import (InferenceModel, eval_preprocess, eval_transform_from_info, export_model,
                         relative_difference)

__all__ = ["LOGITS_TOLERANCE", "export_child_network", "exported_logits_difference",
           "predict_files", "Prediction"]
#: the largest relative difference between exported and dygraph logits accepted
LOGITS_TOLERANCE = 1e-4


def export_child_network(model: paddle.nn.Layer, prefix: str, image_size: int,
                         arch: Optional[Sequence[Sequence[int]]] = None,
                         class_names: Optional[Sequence[str]] = None,
                         source: Optional[str] = None) -> Dict[str, str]:
    """Export a child network (weights already loaded) with its evaluation transform; returns
    the written files (``program``, ``params``, ``info``).

    ``class_names`` (index order) let ``tools/infer.py`` print names; ``source`` records where the
    weights came from.
    """
    info = {"arch": [list(stage) for stage in arch] if arch is not None else None,
            "source": source}
    return export_model(model, prefix, image_size, class_names=class_names, info=info,
                        preprocess=eval_preprocess(image_size, interpolation=EVAL_INTERPOLATION))


def exported_logits_difference(model: paddle.nn.Layer, predictor: InferenceModel, image_size: int,
                               batch_size: int = 2, seed: int = 0) -> float:
    """Relative difference (``pimm.deploy.relative_difference``) between the dygraph
    model's and the predictor's logits on a seeded random batch."""
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch_size, 3, image_size, image_size), dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad():
            expected = model(paddle.to_tensor(images)).numpy()
    finally:
        if was_training:
            model.train()
    return relative_difference(predictor(images), expected)


Prediction = List[Tuple[int, Optional[str], float]]  # (class index, name, probability), best first


def predict_files(predictor: InferenceModel, paths: Sequence[str], topk: int = 5,
                  batch_size: int = 16) -> List[Prediction]:
    """Top-``topk`` classes with softmax probabilities for each image file, in ``paths`` order.

    Raises ``pimm.data.ImageReadError`` naming a file that cannot be decoded, and
    ``FileNotFoundError`` for a missing one.
    """
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"image file(s) not found: {', '.join(missing[:5])}")
    transform = eval_transform_from_info(predictor.info)
    names = predictor.info.get("class_names")
    results: List[Prediction] = []
    for start in range(0, len(paths), batch_size):
        batch = np.stack([transform(load_rgb(p)) for p in paths[start:start + batch_size]])
        logits = predictor(batch).astype(np.float64)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        k = min(topk, probs.shape[1])
        for row in probs:
            best = np.argsort(-row, kind="stable")[:k]
            results.append([(int(i), names[i] if names else None, float(row[i])) for i in best])
    return results
