"""Networks outside dygraph (Cream's and SPOS's child nets, DARTS networks, any pimm model): export
for Paddle Inference, class names, and top-k prediction on image files (the test mode's choice of
backend is ``lib.engine.test.select_test_model``).

An exported network is ``<prefix>.json`` + ``<prefix>.pdiparams`` (the program and weights,
``pimm.deploy.export_model``) and ``<prefix>.info.json``, which records what a caller needs: the
classes, the evaluation transform the network was validated with (by default Cream's: shorter side
to ``size / 0.875`` with bicubic resampling, centre crop, ImageNet mean/std; official SPOS nets:
bilinear and raw BGR 0-255), and the arch or the registered model name.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle

from lib.models.childnet import EVAL_INTERPOLATION
from pimm.data.dataset import load_rgb
from pimm.deploy import (InferenceModel, eval_preprocess, eval_transform_from_info, export_model,
                         relative_difference)

__all__ = ["LOGITS_TOLERANCE", "export_child_network", "exported_logits_difference",
           "read_class_names", "predict_files", "Prediction"]
#: the largest relative difference between exported and dygraph logits accepted
LOGITS_TOLERANCE = 1e-4


def export_child_network(model: paddle.nn.Layer, prefix: str, image_size: int,
                         arch: Any = None,
                         class_names: Optional[Sequence[str]] = None,
                         source: Optional[str] = None,
                         preprocess: Optional[Dict[str, Any]] = None,
                         model_name: Optional[str] = None) -> Dict[str, str]:
    """Export a network (weights already loaded) with its evaluation transform; returns the
    written files (``program``, ``params``, ``info``).

    ``preprocess`` is that transform (``pimm.deploy.eval_preprocess``;
    ``lib.engine.child.child_eval_preprocess`` of a config; default: a Cream child net's, bicubic);
    ``class_names`` (index order) let ``tools/infer.py`` print names; ``source`` records where the
    weights came from, ``arch`` (JSON-able: ``ChildSpec.arch_json``) or ``model_name`` what the
    network is.
    """
    info = {"arch": arch, "model": model_name, "source": source}
    preprocess = preprocess or eval_preprocess(image_size, interpolation=EVAL_INTERPOLATION)
    return export_model(model, prefix, image_size, class_names=class_names, info=info,
                        preprocess=preprocess)


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


def read_class_names(path: str, num_classes: Optional[int] = None) -> List[str]:
    """Class names from a text file, one per line in class-index order (e.g. ImageNet's
    ``synset_words.txt``: ``n01440764 tench, Tinca tinca``); blank lines at the end are ignored.
    With ``num_classes`` the count must match."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"class names file not found: {path}")
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f.read().rstrip().splitlines()]
    if not names or not all(names):
        raise ValueError(f"{path}: expected one non-empty class name per line")
    if num_classes is not None and len(names) != num_classes:
        raise ValueError(f"{path} has {len(names)} class names but the model has {num_classes} "
                         "classes: give one name per classifier output, in index order")
    return names


Prediction = List[Tuple[int, Optional[str], float]]  # (class index, name, probability), best first


def predict_files(predictor: InferenceModel, paths: Sequence[str], topk: int = 5,
                  batch_size: int = 16,
                  class_names: Optional[Sequence[str]] = None) -> List[Prediction]:
    """Top-``topk`` classes with softmax probabilities for each image file, in ``paths`` order,
    named by ``class_names`` (default: the names stored at export, if any).

    Raises ``pimm.data.ImageReadError`` naming a file that cannot be decoded, and
    ``FileNotFoundError`` for a missing one.
    """
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"image file(s) not found: {', '.join(missing[:5])}")
    transform = eval_transform_from_info(predictor.info)
    names = class_names or predictor.info.get("class_names")
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
