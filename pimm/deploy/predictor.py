"""Run an exported model (``pimm.deploy.export``) with Paddle Inference.

``InferenceModel`` loads the files into a Paddle Inference predictor: oneDNN kernels and graph
fusions (conv + batch norm + activation) on CPU, optionally TensorRT on GPU. On a 2-core CPU it
evaluates the MobileNetV3-style networks several times faster than dygraph (docs/BENCHMARKS.md),
with logits equal to float32 rounding. ``InferenceLayer`` puts it behind the ``paddle.nn.Layer``
interface for evaluation loops.

TensorRT follows Paddle 3's PIR route: the exported ``.json`` program is converted once by
``paddle.tensorrt.convert`` (TensorRT engines for batches of 1 to ``max_batch_size`` images) into
a temporary folder, which the predictor then loads; the legacy ``Config.enable_tensorrt_engine``
applies to the old ``.pdmodel`` programs only.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import paddle

from pimm.utils.runtime import available_cpus

from .export import exported_files, read_export_info

__all__ = ["InferenceModel", "InferenceLayer", "relative_difference", "PRECISIONS"]

DEVICES = ("cpu", "gpu")
PRECISIONS = ("fp32", "fp16")


def _tensorrt_program(prefix: str, input_shape: Sequence[int], max_batch_size: int, precision: str
                      ) -> Tuple[str, str]:
    """Convert the export at ``prefix`` with ``paddle.tensorrt`` into a temporary folder; returns
    the folder and the prefix of the converted program."""
    try:
        from paddle.tensorrt.export import Input, PrecisionMode, TensorRTConfig, convert
    except ImportError as err:
        raise ValueError("InferenceModel: tensorrt=True needs a Paddle build with TensorRT "
                         "(paddle.tensorrt, in paddlepaddle-gpu with TensorRT installed); use "
                         "tensorrt=False") from err
    channels, height, width = (int(v) for v in input_shape)
    shape = lambda batch: (batch, channels, height, width)  # noqa: E731
    spec = Input(min_input_shape=shape(1), optim_input_shape=shape(max_batch_size),
                 max_input_shape=shape(max_batch_size))
    folder = tempfile.mkdtemp(prefix="pimm_tensorrt_")
    converted = os.path.join(folder, "model")
    mode = PrecisionMode.FP16 if precision == "fp16" else PrecisionMode.FP32
    try:
        convert(prefix, TensorRTConfig(inputs=[spec], precision_mode=mode, save_model_dir=converted))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder, converted


class InferenceModel:
    """A Paddle Inference predictor of an exported model, called like the model.

    ``device``: 'cpu' (oneDNN unless ``onednn=False``, ``threads`` intra-op threads, all cores by
    default) or 'gpu' (``gpu_id``; ``precision`` 'fp32' or 'fp16'; ``tensorrt=True`` runs the
    program converted by ``paddle.tensorrt`` for batches of up to ``max_batch_size`` images).
    ``model(images)`` takes a float32 ``[N, C, H, W]`` numpy array or Paddle tensor and returns
    the logits as a numpy array.
    """

    def __init__(self, prefix: str, device: str = "cpu", threads: Optional[int] = None,
                 onednn: bool = True, gpu_id: int = 0, tensorrt: bool = False,
                 max_batch_size: int = 256, gpu_memory_mb: int = 512,
                 precision: str = "fp32") -> None:
        if device not in DEVICES:
            raise ValueError(f"InferenceModel: device {device!r} is not one of {DEVICES}")
        if precision not in PRECISIONS:
            raise ValueError(f"InferenceModel: precision {precision!r} is not one of {PRECISIONS}")
        has_gpu = paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
        if device == "gpu" and not has_gpu:
            raise ValueError("InferenceModel: device 'gpu' needs a CUDA build of Paddle and a "
                             "visible GPU; use device 'cpu'")
        if (tensorrt or precision != "fp32") and device != "gpu":
            raise ValueError("InferenceModel: TensorRT and fp16 run on GPU only; use device "
                             "'gpu', or tensorrt=False and precision 'fp32'")
        self.info = read_export_info(prefix)
        self.prefix = prefix
        self.device = device
        files = exported_files(prefix)
        program, params = files["program"], files["params"]
        if tensorrt:
            input_shape = self.info.get("input_shape")
            if not input_shape:
                raise ValueError(f"InferenceModel: tensorrt=True needs the input shape an export "
                                 f"records in {files['info']}; export again with tools/export_model.py")
            folder, converted = _tensorrt_program(prefix, input_shape, max_batch_size, precision)
            weakref.finalize(self, shutil.rmtree, folder, True)
            converted_files = exported_files(converted)
            program, params = converted_files["program"], converted_files["params"]
        config = paddle.inference.Config(program, params)
        config.disable_glog_info()
        if device == "gpu":
            half = paddle.inference.PrecisionType.Half
            config.enable_use_gpu(gpu_memory_mb, gpu_id,
                                  half if precision == "fp16" and not tensorrt
                                  else paddle.inference.PrecisionType.Float32)
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
