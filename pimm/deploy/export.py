"""Export a pimm model for deployment: a static program, its weights, and what a caller needs.

:func:`export_model` traces a model with ``paddle.jit.to_static`` (its layers in export mode,
``pimm.layers.modes``) and writes ``<prefix>.json`` (program) and ``<prefix>.pdiparams``
(weights) with ``paddle.jit.save``, plus ``<prefix>.info.json``: the input shape, the number of
classes and their names, and the evaluation preprocessing (:func:`eval_preprocess`, read back by
:func:`eval_transform_from_info`). ``pimm.deploy.predictor`` runs the result.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Sequence, Union

import paddle

from pimm.data import (DEFAULT_CROP_PCT, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, Compose,
                       transforms_imagenet_eval)
from pimm.layers import layer_modes
from pimm.utils.file_io import atomic_write_text

__all__ = ["export_model", "exported_files", "read_export_info", "eval_preprocess",
           "eval_transform_from_info", "INFO_SUFFIX"]

INFO_SUFFIX = ".info.json"
_PROGRAM_SUFFIX = ".json"
_PARAMS_SUFFIX = ".pdiparams"


def exported_files(prefix: str) -> Dict[str, str]:
    """The paths ``export_model`` writes for ``prefix``: ``program``, ``params`` and ``info``."""
    return {"program": prefix + _PROGRAM_SUFFIX, "params": prefix + _PARAMS_SUFFIX,
            "info": prefix + INFO_SUFFIX}


def eval_preprocess(image_size: Union[int, Sequence[int]], interpolation: str = "bilinear",
                    crop_pct: float = DEFAULT_CROP_PCT,
                    mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
                    std: Sequence[float] = IMAGENET_DEFAULT_STD,
                    max_pixel_value: float = 255.0, color_order: str = "rgb") -> Dict[str, Any]:
    """The ``preprocess`` entry of the info file: the evaluation transform of
    ``pimm.data.transforms_imagenet_eval`` (shorter side to ``image_size / crop_pct``, centre
    crop, normalisation, channel order) with these arguments; ``image_size`` is the side of a
    square crop or ``[height, width]``. A network trained on other input than ImageNet-normalised
    RGB (e.g. official SPOS: raw BGR 0-255) needs ``max_pixel_value`` and ``color_order`` here."""
    size = int(image_size) if isinstance(image_size, int) else [int(v) for v in image_size]
    return {"image_size": size, "interpolation": str(interpolation),
            "crop_pct": float(crop_pct), "mean": [float(v) for v in mean],
            "std": [float(v) for v in std], "max_pixel_value": float(max_pixel_value),
            "color_order": str(color_order)}


def eval_transform_from_info(info: Dict[str, Any]) -> Compose:
    """The per-image transform (PIL image -> normalised ``[3, H, W]`` array) recorded at export
    (files without ``max_pixel_value`` / ``color_order`` were exported for 0-255 RGB)."""
    pre = info.get("preprocess")
    if not pre:
        raise ValueError("the exported model has no 'preprocess' entry in its .info.json; export "
                         "it with tools/export_model.py")
    size = pre["image_size"]
    size = int(size) if isinstance(size, (int, float)) else tuple(int(v) for v in size)
    return transforms_imagenet_eval(size, crop_pct=float(pre["crop_pct"]),
                                    interpolation=str(pre["interpolation"]), mean=pre["mean"],
                                    std=pre["std"], max_pixel_value=float(pre.get("max_pixel_value", 255.0)),
                                    color_order=str(pre.get("color_order", "rgb")))


def export_model(model: paddle.nn.Layer, prefix: str, image_size: Union[int, Sequence[int]],
                 in_chans: int = 3, class_names: Optional[Sequence[str]] = None,
                 preprocess: Optional[Dict[str, Any]] = None,
                 info: Optional[Dict[str, Any]] = None) -> Dict[str, str]:
    """Write ``model`` (in eval mode) as a static program taking ``[N, in_chans, H, W]`` float32
    images with any batch size N; returns :func:`exported_files`.

    ``model.forward`` must take the images alone (wrap a model that needs more, such as a
    supernet and its path, in a layer). The info file records ``input_shape``, ``num_classes``
    (the model's ``num_classes`` attribute, None without one), ``class_names`` (index order;
    one per class), ``preprocess`` (default: :func:`eval_preprocess` of the image size) and the
    entries of ``info``. The model is left as it was: training flags and layer modes restored,
    dygraph forward.
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    num_classes = getattr(model, "num_classes", None)
    if class_names is not None and num_classes is not None and len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names given for a network with {num_classes} "
                         "classes; pass one name per classifier output")
    folder = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(folder, exist_ok=True)
    flags = [(sub, sub.training) for sub in model.sublayers(include_self=True)]
    own_forward = "forward" in vars(model)
    model.eval()
    spec = [paddle.static.InputSpec([None, in_chans, height, width], "float32", "images")]
    try:
        with layer_modes(model, exporting=True):  # the ops Paddle Inference fuses
            paddle.jit.save(paddle.jit.to_static(model, input_spec=spec, full_graph=True), prefix)
    finally:
        for sub, training in flags:
            sub.training = training
        # to_static installs the traced function as the instance's forward: later calls must
        # run the dygraph forward again (train mode, other shapes)
        if not own_forward:
            vars(model).pop("forward", None)
    files = exported_files(prefix)
    record = dict(info or {})
    record.update(input_shape=[in_chans, height, width], num_classes=num_classes,
                  class_names=list(class_names) if class_names is not None else None,
                  preprocess=preprocess or eval_preprocess(image_size))
    atomic_write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", files["info"])
    return files


def read_export_info(prefix: str) -> Dict[str, Any]:
    """The info dict stored by :func:`export_model`; empty when the info file is missing."""
    files = exported_files(prefix)
    missing = [path for path in (files["program"], files["params"]) if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(f"no exported model at prefix {prefix!r}: {', '.join(missing)} "
                                "missing; write one with tools/export_model.py (or "
                                "pimm.deploy.export_model)")
    if not os.path.isfile(files["info"]):
        return {}
    with open(files["info"], encoding="utf-8") as f:
        return json.load(f)
