"""Export a model for deployment and run it with Paddle Inference.

``export_model`` traces a model with ``paddle.jit.to_static`` and writes ``<prefix>.json``
(program) and ``<prefix>.pdiparams`` (weights) with ``paddle.jit.save``, plus
``<prefix>.info.json``: what a caller needs to feed it (input size, preprocessing, class names).
``InferenceModel`` loads those files into a Paddle Inference predictor: oneDNN kernels and graph
fusions (conv + batch norm + activation) on CPU, optionally TensorRT on GPU. On a 2-core CPU it
evaluates the MobileNetV3-style networks several times faster than dygraph (docs/BENCHMARKS.md),
with logits equal to float32 rounding.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import paddle

from pimm.layers import layer_modes

from .file_io import atomic_write_text
from .runtime import available_cpus

__all__ = ["export_model", "InferenceModel", "InferenceLayer", "read_export_info", "exported_files",
           "relative_difference", "INFO_SUFFIX"]

INFO_SUFFIX = ".info.json"
_PROGRAM_SUFFIX = ".json"
_PARAMS_SUFFIX = ".pdiparams"
DEVICES = ("cpu", "gpu")


def exported_files(prefix: str) -> Dict[str, str]:
    """The paths ``export_model`` writes for ``prefix``: ``program``, ``params`` and ``info``."""
    return {"program": prefix + _PROGRAM_SUFFIX, "params": prefix + _PARAMS_SUFFIX,
            "info": prefix + INFO_SUFFIX}


def export_model(model: paddle.nn.Layer, prefix: str, image_size: Union[int, Sequence[int]],
                 in_chans: int = 3, info: Optional[Dict[str, Any]] = None) -> Dict[str, str]:
    """Write ``model`` (in eval mode) as a static program taking ``[N, in_chans, H, W]`` float32
    images with any batch size N; returns :func:`exported_files`.

    ``model.forward`` must take the images alone (wrap a model that needs more, such as a
    supernet and its path, in a layer). ``info`` is stored next to the program
    (``<prefix>.info.json``) together with the input shape; :class:`InferenceModel` returns it
    as ``.info``. The model is left as it was: training flags restored, dygraph forward.
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    folder = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(folder, exist_ok=True)
    flags = [(sub, sub.training) for sub in model.sublayers(include_self=True)]
    own_forward = "forward" in vars(model)
    model.eval()
    spec = [paddle.static.InputSpec([None, in_chans, height, width], "float32", "images")]
    try:
        with layer_modes(model, exporting=True):  # ops Paddle Inference fuses (pimm.layers.modes)
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
    record["input_shape"] = [in_chans, height, width]
    atomic_write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", files["info"])
    return files


def read_export_info(prefix: str) -> Dict[str, Any]:
    """The ``info`` dict stored by :func:`export_model` (with ``input_shape``)."""
    files = exported_files(prefix)
    missing = [path for path in (files["program"], files["params"]) if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(f"no exported model at prefix {prefix!r}: {', '.join(missing)} "
                                "missing; write one with tools/export_model.py (or "
                                "pimm.utils.inference.export_model)")
    if not os.path.isfile(files["info"]):
        return {}
    with open(files["info"], encoding="utf-8") as f:
        return json.load(f)


class InferenceModel:
    """A Paddle Inference predictor of an exported model, called like the model.

    ``device``: 'cpu' (oneDNN unless ``onednn=False``, ``threads`` intra-op threads, all cores by
    default) or 'gpu' (``gpu_id``; ``tensorrt=True`` builds TensorRT engines, float32, for the
    batch sizes up to ``max_batch_size``). ``model(images)`` takes a float32 ``[N, C, H, W]`` numpy
    array or Paddle tensor and returns the logits as a numpy array.
    """

    def __init__(self, prefix: str, device: str = "cpu", threads: Optional[int] = None,
                 onednn: bool = True, gpu_id: int = 0, tensorrt: bool = False,
                 max_batch_size: int = 256, gpu_memory_mb: int = 512) -> None:
        if device not in DEVICES:
            raise ValueError(f"InferenceModel: device {device!r} is not one of {DEVICES}")
        has_gpu = paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
        if device == "gpu" and not has_gpu:
            raise ValueError("InferenceModel: device 'gpu' needs a CUDA build of Paddle and a "
                             "visible GPU; use device 'cpu'")
        if tensorrt and device != "gpu":
            raise ValueError("InferenceModel: TensorRT runs on GPU only; use device 'gpu' or "
                             "tensorrt=False")
        self.info = read_export_info(prefix)
        self.prefix = prefix
        self.device = device
        files = exported_files(prefix)
        config = paddle.inference.Config(files["program"], files["params"])
        config.disable_glog_info()
        if device == "gpu":
            config.enable_use_gpu(gpu_memory_mb, gpu_id)
            if tensorrt:
                config.enable_tensorrt_engine(
                    workspace_size=1 << 30, max_batch_size=max_batch_size, min_subgraph_size=3,
                    precision_mode=paddle.inference.PrecisionType.Float32, use_static=False,
                    use_calib_mode=False)
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(int(threads or available_cpus()))
            if onednn:
                config.enable_onednn()
            else:
                config.disable_onednn()
        self._predictor = paddle.inference.create_predictor(config)
        self._output_names: List[str] = self._predictor.get_output_names()

    def run(self, images: Union[np.ndarray, paddle.Tensor]) -> paddle.Tensor:
        """The model's output for a float32 ``[N, C, H, W]`` batch, as a Paddle tensor."""
        if not isinstance(images, paddle.Tensor):
            images = paddle.to_tensor(np.ascontiguousarray(images, dtype=np.float32))
        expected = self.info.get("input_shape")
        if images.ndim != 4 or (expected and list(images.shape[1:]) != list(expected)):
            shape = ", ".join(map(str, expected or ["C", "H", "W"]))
            raise ValueError(f"InferenceModel {self.prefix}: expected images [N, {shape}], got "
                             f"{list(images.shape)}")
        return self._predictor.run([images])[0]

    def __call__(self, images: Union[np.ndarray, paddle.Tensor]) -> np.ndarray:
        return self.run(images).numpy()


class InferenceLayer(paddle.nn.Layer):
    """An :class:`InferenceModel` behind the ``paddle.nn.Layer`` interface, so evaluation loops
    written for dygraph models (``model.eval(); output = model(images)``) run it unchanged. It
    has no parameters and computes no gradients."""

    def __init__(self, predictor: InferenceModel) -> None:
        super().__init__()
        self.predictor = predictor
        self.eval()

    def forward(self, images: paddle.Tensor) -> paddle.Tensor:
        return self.predictor.run(images)


def relative_difference(actual: Union[np.ndarray, paddle.Tensor],
                        expected: Union[np.ndarray, paddle.Tensor]) -> float:
    """``max |actual - expected| / max |expected|``: how far exported logits are from dygraph's."""
    actual = actual.numpy() if isinstance(actual, paddle.Tensor) else np.asarray(actual)
    expected = expected.numpy() if isinstance(expected, paddle.Tensor) else np.asarray(expected)
    if actual.shape != expected.shape:
        raise ValueError(f"relative_difference: shapes differ, {actual.shape} vs {expected.shape}")
    if expected.size == 0:
        return 0.0
    largest_error = float(np.abs(actual.astype(np.float64) - expected).max())
    scale = float(np.abs(expected).max())
    return largest_error / scale if scale > 0 else largest_error
